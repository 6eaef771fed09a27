//! What a tool shows on stderr besides its product: how verbose it is
//! ([`Verbosity`]), a sink for its warnings and information lines ([`Log`]),
//! and the progress display of long phases ([`Progress`]).
//!
//! When stderr is a terminal (and the tool is not quiet) a phase shows one
//! self-rewriting line: a spinner, the phase title and the elapsed time, and
//! any other stderr line is printed above it. Otherwise each title is printed
//! once as a plain line, which is what scripts and logs see.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How much a tool prints on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: nothing at all.
    Quiet,
    /// Titles, errors and warnings.
    Normal,
    /// `-v`: also information lines.
    Info,
    /// `-vv`: also debug lines.
    Debug,
}

impl Verbosity {
    /// The level of `-q` and a count of `-v`.
    #[must_use]
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (_, 0) => Verbosity::Normal,
            (_, 1) => Verbosity::Info,
            _ => Verbosity::Debug,
        }
    }

    /// Whether progress titles and bars are shown.
    #[must_use]
    pub fn display(self) -> Display {
        if self == Verbosity::Quiet {
            Display::Quiet
        } else {
            Display::Shown
        }
    }
}

/// Where an engine's warnings and information lines go: stderr, or memory
/// (so that tests can read them), filtered by a [`Verbosity`].
#[derive(Debug)]
pub struct Log {
    verbosity: Verbosity,
    captured: Option<std::sync::Mutex<Vec<String>>>,
}

impl Log {
    /// Lines go to stderr.
    #[must_use]
    pub fn stderr(verbosity: Verbosity) -> Self {
        Log {
            verbosity,
            captured: None,
        }
    }

    /// Lines are kept in memory.
    #[must_use]
    pub fn capture(verbosity: Verbosity) -> Self {
        Log {
            verbosity,
            captured: Some(std::sync::Mutex::new(Vec::new())),
        }
    }

    /// The level lines are filtered by.
    #[must_use]
    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// The lines captured so far.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.captured
            .as_ref()
            .map(|c| c.lock().map(|l| l.clone()).unwrap_or_default())
            .unwrap_or_default()
    }

    fn emit(&self, level: Verbosity, line: &dyn std::fmt::Display) {
        if self.verbosity < level || self.verbosity == Verbosity::Quiet {
            return;
        }
        match &self.captured {
            Some(c) => {
                if let Ok(mut l) = c.lock() {
                    l.push(line.to_string());
                }
            }
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    /// A warning or error line (shown unless quiet).
    pub fn warn(&self, line: impl std::fmt::Display) {
        self.emit(Verbosity::Normal, &line);
    }

    /// An information line (shown with `-v`).
    pub fn info(&self, line: impl std::fmt::Display) {
        self.emit(Verbosity::Info, &line);
    }

    /// A debug line (shown with `-vv`).
    pub fn debug(&self, line: impl std::fmt::Display) {
        self.emit(Verbosity::Debug, &line);
    }
}

/// Where phase titles go.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

/// Whether anything is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Titles (plain lines, or a live line on a terminal).
    Shown,
    /// `-q`: nothing.
    Quiet,
}

impl Progress {
    /// A progress display on stderr.
    #[must_use]
    pub fn new(display: Display) -> Progress {
        let quiet = display == Display::Quiet;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        Progress { bar, quiet }
    }

    /// Starts a phase named `title`.
    pub fn phase(&self, title: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(title.to_string());
                // Ticking starts with the first phase, so no empty line shows before it.
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            None if !self.quiet => {
                let _ = writeln!(std::io::stderr().lock(), "{title}");
            }
            None => {}
        }
    }

    /// Prints a line on stderr without disturbing the live line.
    pub fn println(&self, line: &dyn std::fmt::Display) {
        if self.quiet {
            return;
        }
        let print = || {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the live line (also done on drop).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
