//! `thin_recv`: see man/thin_recv.8.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use super::send_recv::{
    catch_signals, parse_format, pick_mode, reraise_caught, stdin_file, Mode, StopOnSignal,
};
use crate::commands::exit::Outcome;
use crate::commands::run::{finish, run_with, usage_error};
use crate::pdata::sys::grow_pipe;
use crate::progress::{Display, Progress, Unit, Verbosity};
use crate::thin::engines::send_recv::apply::{apply, ApplyOptions, BaseCheck, Notices};
use crate::thin::engines::send_recv::live::LiveTarget;
use crate::thin::engines::send_recv::stream::Accept;
use crate::thin::engines::send_recv::target::{Target, TargetKind};

/// Apply a stream from stdin to a block device or a regular file.
#[derive(Parser, Debug)]
#[command(name = "thin_recv", disable_version_flag = true)]
struct Args {
    /// Allow stdin to be a terminal
    #[arg(short = 't', long = "allow-tty")]
    allow_tty: bool,
    /// Accepted stream formats: auto, 1.0, 1.1 or 2
    #[arg(
        long = "accept-stream-format",
        value_name = "FORMAT",
        default_value = "auto"
    )]
    accept_stream_format: String,
    /// The file recording what the target holds (default for a regular file: TARGET.thin-state)
    #[arg(long = "state", value_name = "FILE")]
    state: Option<PathBuf>,
    /// Apply an incremental stream without checking the target's base
    #[arg(long = "ignore-base")]
    ignore_base: bool,
    /// Print nothing but errors
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// The target: an LVM name (VG/LV, /dev/VG/LV), a block device, or a regular file (created when missing)
    #[arg(value_name = "TARGET")]
    targets: Vec<OsString>,
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Entry point of `thin_recv`.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    match pick_mode(args, Some(Mode::Receive)) {
        Ok((Mode::Send, rest)) => super::send::run_args(&rest),
        Ok((Mode::Receive, rest)) => run_args(&rest),
        Err(o) => o,
    }
}

/// Runs the receive mode on `args` (mode flags removed).
#[must_use]
pub fn run_args(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_recv", args, |a| {
        let accept = match a.accept_stream_format.as_str() {
            "auto" => Accept::Auto,
            f => match parse_format(f) {
                Some(f) => Accept::Only(f),
                None => {
                    return usage_error(&format!(
                        "unknown stream format specifier \"{f}\"; should be one of \"auto\", \"1.0\", \"1.1\", \"2\""
                    ))
                }
            },
        };
        let [target] = a.targets.as_slice() else {
            return usage_error("one positional argument expected");
        };
        if !a.allow_tty && std::io::stdin().is_terminal() {
            eprintln!("expecting a data stream on stdin (use --allow-tty to read a terminal)");
            return Outcome::Usage;
        }
        catch_signals();
        let outcome = finish(run(&a, target, accept), Verbosity::Normal);
        reraise_caught();
        outcome
    })
}

fn run(a: &Args, name: &std::ffi::OsStr, accept: Accept) -> anyhow::Result<()> {
    let live = LiveTarget::open(name)?;
    let applied = apply_to(a, &live.path, accept);
    let ended = live.finish();
    applied?;
    Ok(ended?)
}

fn apply_to(a: &Args, path: &std::path::Path, accept: Accept) -> anyhow::Result<()> {
    let mut target = Target::open(path)?;
    let state = a.state.clone().or_else(|| {
        (target.kind() == TargetKind::File).then(|| {
            let mut p = path.as_os_str().to_owned();
            p.push(".thin-state");
            PathBuf::from(p)
        })
    });
    let progress = Progress::new(if a.quiet {
        Display::Quiet
    } else {
        Display::Shown
    });
    let counter = progress.counter("receiving", None, Unit::Bytes);
    let opts = ApplyOptions {
        accept,
        state,
        base_check: if a.ignore_base {
            BaseCheck::Ignore
        } else {
            BaseCheck::Require
        },
        notices: if a.quiet {
            Notices::Suppress
        } else {
            Notices::Print
        },
        progress: &counter,
    };
    // Not a pipe (a file, a socket): left as it is.
    let _ = grow_pipe(&std::io::stdin(), super::send::PIPE_BYTES);
    let stdin = std::io::BufReader::with_capacity(1 << 20, StopOnSignal(stdin_file()?));
    let applied = apply(stdin, &mut target, &opts);
    progress.finish();
    let applied = applied?;
    if applied.format.is_none() && !a.quiet {
        eprintln!("empty input: nothing applied");
    }
    Ok(())
}
