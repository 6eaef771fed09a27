//! Exit codes, defined once for every tool.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | runtime failure: damage found, I/O error, invalid input, refused overwrite, broken pipe |
//! | 2 | usage error |

use std::process::ExitCode;

/// How a tool run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Success,
    /// A runtime failure (the message was already printed).
    Failure,
    /// A command-line usage error.
    Usage,
}

impl Outcome {
    /// The process exit code for this outcome.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage => 2,
        }
    }
}

/// Maps an outcome to the process exit code.
#[must_use]
pub fn exit_code(outcome: Outcome) -> ExitCode {
    ExitCode::from(outcome.code())
}
