//! What `thin_send` and `thin_recv` share: one program with two names, as
//! LINBIT's thin-send-recv. `-s/--send` or
//! `-r/--receive` picks the mode; without either, the name does.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use crate::commands::exit::Outcome;
use crate::pdata::sys;

/// The mode the program runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `thin_send`.
    Send,
    /// `thin_recv`.
    Receive,
}

/// Prints the `-a/--about` text.
pub fn about() {
    println!(
        "thin_send / thin_recv (thintools {})\n\
         Send a thin volume, or the difference between two snapshots, as a stream; apply it elsewhere.\n\
         Reads and writes the stream formats of LINBIT thin-send-recv (1.0, 1.1) and its own (2).\n\
         License: GPLv3 or later",
        crate::commands::VERSION
    );
}

/// Scans `args` (before `--`) for `-s/--send`, `-r/--receive`, `-v` and `-a`
/// (which act as soon as they are seen, as upstream's do) and returns the
/// mode with the mode flags removed; `Err` when the run is over.
///
/// # Errors
/// The outcome after `-v`/`-a`, or a usage error for both or no mode.
pub fn pick_mode(
    args: &[OsString],
    by_name: Option<Mode>,
) -> Result<(Mode, Vec<OsString>), Outcome> {
    let (mut send, mut recv) = (false, false);
    let mut rest = Vec::with_capacity(args.len());
    let mut after_dashes = false;
    for a in args {
        if after_dashes {
            rest.push(a.clone());
            continue;
        }
        match a.to_str() {
            Some("--") => {
                after_dashes = true;
                rest.push(a.clone());
            }
            Some("-s" | "--send") => send = true,
            Some("-r" | "--receive") => recv = true,
            Some("-v") => {
                println!("{}", crate::commands::VERSION);
                return Err(Outcome::Success);
            }
            Some("-a" | "--about") => {
                about();
                return Err(Outcome::Success);
            }
            _ => rest.push(a.clone()),
        }
    }
    let mode = match (send, recv, by_name) {
        (true, false, _) => Mode::Send,
        (false, true, _) => Mode::Receive,
        (false, false, Some(m)) => m,
        _ => return Err(crate::commands::run::usage_error("use --send or --receive")),
    };
    Ok((mode, rest))
}

/// Entry point of the multi-call name `thin_send_recv`.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    match pick_mode(args, None) {
        Ok((Mode::Send, rest)) => super::send::run_args(&rest),
        Ok((Mode::Receive, rest)) => super::recv::run_args(&rest),
        Err(o) => o,
    }
}

/// Parses `--accept-stream-format` / `--format` values.
#[must_use]
pub fn parse_format(s: &str) -> Option<crate::thin::engines::send_recv::stream::Format> {
    use crate::thin::engines::send_recv::stream::Format;
    match s {
        "1.0" => Some(Format::V1_0),
        "1.1" => Some(Format::V1_1),
        "2" | "2.0" => Some(Format::V2),
        _ => None,
    }
}

/// The signals both modes catch (LINBIT's list): each ends the run through
/// its clean-up (the metadata snapshot released, an activated LV
/// deactivated, the receiver's state recorded) and is then re-raised.
pub const CAUGHT_SIGNALS: &[libc::c_int] = &[
    libc::SIGABRT,
    libc::SIGALRM,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGPIPE,
    libc::SIGPWR,
    libc::SIGQUIT,
    libc::SIGSEGV,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

/// Catches [`CAUGHT_SIGNALS`] so that a blocked read or write returns.
pub fn catch_signals() {
    let _ = sys::catch_signals_interrupting(CAUGHT_SIGNALS);
}

/// Re-raises a caught signal, once everything is cleaned up.
pub fn reraise_caught() {
    if let Some(sig) = sys::pending_signal() {
        sys::reraise(sig);
    }
}

/// A reader or writer that fails once a caught signal is pending, so that
/// a run blocked on its stream unwinds (std retries `EINTR` by calling it
/// again).
pub struct StopOnSignal<T>(pub T);

fn stopped() -> io::Result<()> {
    match sys::pending_signal() {
        Some(sig) => Err(io::Error::other(format!(
            "interrupted by {}",
            sys::signal_name(sig)
        ))),
        None => Ok(()),
    }
}

impl<T: Write> Write for StopOnSignal<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        stopped()?;
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        stopped()?;
        self.0.flush()
    }
}

impl<T: Read> Read for StopOnSignal<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        stopped()?;
        self.0.read(buf)
    }
}

/// stdout as a plain file (one write(2) per call, no line buffering).
///
/// # Errors
/// The dup failure.
pub fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// stdin as a plain file.
///
/// # Errors
/// The dup failure.
pub fn stdin_file() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}
