//! Progress display for long phases.
//!
//! When stderr is a terminal (and the tool is not quiet) a phase shows one
//! self-rewriting line: a spinner, the phase title and the elapsed time, and
//! any other stderr line is printed above it. Otherwise each title is printed
//! once as a plain line, which is what scripts and logs see.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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
