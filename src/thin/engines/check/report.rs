//! The report sink of thin_check: every finding goes through it, is printed
//! at once (stderr, respecting `-q` and `-v`), and is counted by class, so the
//! exit status is computed once at the end.

use std::fmt::Display;

use crate::progress::{self, Progress};

/// Whether non-fatal findings fail the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Non-fatal errors fail the check (default).
    Strict,
    /// `--ignore-non-fatal-errors`.
    IgnoreNonFatal,
}

pub use crate::progress::Verbosity;

/// Collects findings by class and prints them.
pub struct Report {
    verbosity: Verbosity,
    strictness: Strictness,
    fatal: u64,
    non_fatal: u64,
    warnings: u64,
    progress: Progress,
}

impl Report {
    /// A sink printing at `verbosity`.
    #[must_use]
    pub fn new(verbosity: Verbosity, strictness: Strictness) -> Report {
        Report {
            verbosity,
            strictness,
            fatal: 0,
            non_fatal: 0,
            warnings: 0,
            progress: Progress::new(if verbosity == Verbosity::Quiet {
                progress::Display::Quiet
            } else {
                progress::Display::Shown
            }),
        }
    }

    fn line(&self, level: Verbosity, msg: &dyn Display) {
        if self.verbosity >= level && self.verbosity != Verbosity::Quiet {
            self.progress.println(msg);
        }
    }

    /// A phase title or sub-title: a plain line, or the live progress line
    /// when stderr is a terminal.
    pub fn title(&mut self, msg: &str) {
        self.progress.phase(msg);
    }

    /// Ends the live progress line, if any.
    pub fn finish_progress(&self) {
        self.progress.finish();
    }

    /// A fatal error (exit 1, nothing repaired).
    pub fn fatal(&mut self, msg: impl Display) {
        self.fatal += 1;
        self.line(Verbosity::Normal, &msg);
    }

    /// A fatal condition that prints nothing (a closed stdout).
    pub fn fatal_silent(&mut self) {
        self.fatal += 1;
    }

    /// A non-fatal error (fails unless ignored or repaired).
    pub fn non_fatal(&mut self, msg: impl Display) {
        self.non_fatal += 1;
        self.line(Verbosity::Normal, &msg);
    }

    /// A warning: printed, never changes the exit status.
    pub fn warning(&mut self, msg: impl Display) {
        self.warnings += 1;
        self.line(Verbosity::Normal, &msg);
    }

    /// A plain message at the default level (repair notices).
    pub fn notice(&mut self, msg: impl Display) {
        self.line(Verbosity::Normal, &msg);
    }

    /// An information line (`-v`).
    pub fn info(&mut self, msg: impl Display) {
        self.line(Verbosity::Info, &msg);
    }

    /// True when debug lines are printed (to skip building them otherwise).
    #[must_use]
    pub fn debugging(&self) -> bool {
        self.verbosity >= Verbosity::Debug
    }

    /// A debug line (`-vv`).
    pub fn debug(&mut self, msg: impl Display) {
        self.line(Verbosity::Debug, &msg);
    }

    /// Number of fatal findings so far.
    #[must_use]
    pub fn fatal_count(&self) -> u64 {
        self.fatal
    }

    /// Number of warnings so far.
    #[must_use]
    pub fn warning_count(&self) -> u64 {
        self.warnings
    }

    /// True when the findings so far fail the check.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.verdict().failed()
    }

    /// The findings so far, by class.
    #[must_use]
    pub fn verdict(&self) -> super::Verdict {
        super::Verdict {
            fatal: self.fatal,
            non_fatal: self.non_fatal,
            warnings: self.warnings,
            strictness: self.strictness,
        }
    }

    /// The non-fatal policy.
    #[must_use]
    pub fn strictness(&self) -> Strictness {
        self.strictness
    }
}
