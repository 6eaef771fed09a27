//! What every command shares: argument pre-scanning (`-V`/`-h` win over any
//! other argument error), clap error mapping, runtime error printing and
//! broken-pipe handling.

use std::ffi::OsString;
use std::io::{self, Write};

use clap::Parser;

use crate::commands::exit::Outcome;
use crate::commands::VERSION;
use crate::progress::Verbosity;

/// Parses `args` (without argv[0]) for `tool`. `-V/--version` and `-h/--help`
/// win over every other argument error. On `Err` the outcome to exit with has
/// already been reported.
///
/// # Errors
/// `Outcome::Success` after help or version, `Outcome::Usage` on bad arguments.
pub fn parse_args<T: Parser>(tool: &str, args: &[OsString]) -> Result<T, Outcome> {
    let mut help = false;
    for a in args {
        if a == "--" {
            break;
        }
        match a.to_str() {
            Some("-V" | "--version") => {
                println!("{VERSION}");
                return Err(Outcome::Success);
            }
            Some("-h" | "--help") => help = true,
            _ => {}
        }
    }
    let mut argv: Vec<OsString> = Vec::with_capacity(args.len() + 1);
    argv.push(tool.into());
    if help {
        argv.push("--help".into());
    } else {
        argv.extend(args.iter().cloned());
    }
    match T::try_parse_from(argv) {
        Ok(t) => Ok(t),
        Err(e) => {
            let _ = e.print();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Err(Outcome::Success)
                }
                _ => Err(Outcome::Usage),
            }
        }
    }
}

/// Prints a usage error the way clap does and returns `Outcome::Usage`.
#[must_use]
pub fn usage_error(msg: &str) -> Outcome {
    eprintln!("error: {msg}\n\nFor more information, try '--help'.");
    Outcome::Usage
}

/// True when `err` (or anything in its chain) is a broken pipe.
#[must_use]
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Reports a runtime error: one bare line per message (`{:#}` joins context),
/// nothing for a broken pipe, nothing at [`Verbosity::Quiet`].
#[must_use]
pub fn report_error(err: &anyhow::Error, level: Verbosity) -> Outcome {
    if level != Verbosity::Quiet && !is_broken_pipe(err) {
        let mut e = io::stderr().lock();
        let _ = writeln!(e, "{err:#}");
    }
    Outcome::Failure
}

/// The outcome of a run that returned `r`: success, or the error reported
/// (at `level`) and a failure.
#[must_use]
pub fn finish<E: Into<anyhow::Error>>(r: Result<(), E>, level: Verbosity) -> Outcome {
    match r {
        Ok(()) => Outcome::Success,
        Err(e) => report_error(&e.into(), level),
    }
}

/// Parses with [`parse_args`] and runs `run` on success.
pub fn run_with<T, F>(tool: &str, args: &[OsString], run: F) -> Outcome
where
    T: Parser,
    F: FnOnce(T) -> Outcome,
{
    match parse_args::<T>(tool, args) {
        Ok(opts) => run(opts),
        Err(o) => o,
    }
}

/// Rewrites a glued optional value of a short flag (`-m5` → `-m=5`) so that
/// clap's `require_equals` parsing accepts it.
#[must_use]
pub fn glue_optional_short(args: &[OsString], flag: char) -> Vec<OsString> {
    let prefix = format!("-{flag}");
    args.iter()
        .map(|a| match a.to_str() {
            Some(s)
                if s.len() > 2
                    && s.starts_with(&prefix)
                    && !s[2..].starts_with('=')
                    && s[2..].chars().all(|c| c.is_ascii_digit() || c == '+') =>
            {
                OsString::from(format!("{prefix}={}", &s[2..]))
            }
            _ => a.clone(),
        })
        .collect()
}

/// A buffered stdout for a tool's product.
#[must_use]
pub fn stdout_writer() -> io::BufWriter<io::Stdout> {
    io::BufWriter::with_capacity(1 << 20, io::stdout())
}
