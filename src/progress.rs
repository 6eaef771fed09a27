//! What a tool shows on stderr besides its product: how verbose it is
//! ([`Verbosity`]), a sink for its warnings and information lines ([`Log`]),
//! and the progress display of long phases ([`Progress`]).
//!
//! When stderr is a terminal (and the tool is not quiet) a phase shows one
//! self-rewriting line: a spinner, the phase title and the elapsed time, and
//! any other stderr line is printed above it. Otherwise each title is printed
//! once as a plain line, which is what scripts and logs see.
//!
//! Long work that can count what it has done (bytes read, blocks packed,
//! leaves written) uses a [`Counter`] instead: on a terminal the live line
//! becomes a bar with the count, the rate and the time left; anywhere else
//! a counter prints nothing at all. Counters are advanced from a cheap atomic
//! add and redraw only when the count crosses a step (about a thousandth of
//! the total), so the work itself is not slowed.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// A progress display on stderr (live only when stderr is a terminal).
    #[must_use]
    pub fn new(display: Display) -> Progress {
        Progress::on(display, std::io::stderr().is_terminal())
    }

    /// A progress display that is live when `terminal` is true (and the
    /// display is not quiet), and plain lines otherwise.
    #[must_use]
    pub fn on(display: Display, terminal: bool) -> Progress {
        let quiet = display == Display::Quiet;
        let bar = (!quiet && terminal).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(spinner_style());
            bar
        });
        Progress { bar, quiet }
    }

    /// Starts a phase named `title`.
    pub fn phase(&self, title: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(spinner_style());
                bar.unset_length();
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

    /// Starts counted work named `title` that will reach `total` (when
    /// known) in `unit`s. On a terminal the live line shows a bar; otherwise
    /// (or when quiet) nothing is printed, neither now nor while counting.
    #[must_use]
    pub fn counter(&self, title: &str, total: Option<u64>, unit: Unit) -> Counter {
        let Some(bar) = &self.bar else {
            return Counter::hidden();
        };
        bar.set_style(counter_style(total.is_some(), unit));
        match total {
            Some(t) => bar.set_length(t),
            None => bar.unset_length(),
        }
        bar.set_position(0);
        bar.reset_eta();
        bar.set_message(title.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        let step = match (total, unit) {
            (Some(t), Unit::Bytes) => (t / 1000).max(1 << 20),
            (Some(t), Unit::Items(_)) => (t / 1000).max(1),
            (None, Unit::Bytes) => 4 << 20,
            (None, Unit::Items(_)) => 1024,
        };
        Counter {
            bar: Some(bar.clone()),
            done: AtomicU64::new(0),
            step,
        }
    }

    /// Removes the live line (also done on drop).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn counter_style(known_total: bool, unit: Unit) -> ProgressStyle {
    let template = match (known_total, unit) {
        (true, Unit::Bytes) => "{spinner} {msg} [{elapsed}] {bar:30} {bytes}/{total_bytes} \
             {binary_bytes_per_sec} ETA {eta}"
            .to_string(),
        (false, Unit::Bytes) => {
            "{spinner} {msg} [{elapsed}] {bytes} {binary_bytes_per_sec}".to_string()
        }
        (true, Unit::Items(name)) => format!(
            "{{spinner}} {{msg}} [{{elapsed}}] {{bar:30}} {{human_pos}}/{{human_len}} {name} \
             {{rate}} ETA {{eta}}"
        ),
        (false, Unit::Items(name)) => {
            format!("{{spinner}} {{msg}} [{{elapsed}}] {{human_pos}} {name} {{rate}}")
        }
    };
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", indicatif::HumanCount(state.per_sec() as u64));
            },
        )
        .progress_chars("=> ")
}

/// What a [`Counter`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (shown as KiB/MiB/GiB).
    Bytes,
    /// Things named by the string (`"blocks"`, `"leaves"`).
    Items(&'static str),
}

/// Counted work in progress (see [`Progress::counter`]). Shared by the
/// threads doing the work; hidden counters cost one branch per call.
#[derive(Debug)]
pub struct Counter {
    bar: Option<ProgressBar>,
    done: AtomicU64,
    step: u64,
}

impl Counter {
    /// A counter that shows nothing.
    #[must_use]
    pub fn hidden() -> Counter {
        Counter {
            bar: None,
            done: AtomicU64::new(0),
            step: u64::MAX,
        }
    }

    /// True when the counter draws a bar.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// Counts `n` more units done; redraws when a step is crossed.
    #[inline]
    pub fn add(&self, n: u64) {
        let Some(bar) = &self.bar else {
            return;
        };
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let after = before.saturating_add(n);
        if after / self.step != before / self.step {
            bar.set_position(after);
        }
    }

    /// Sets the total once it becomes known (a stream's header names the
    /// volume size): the bar then shows how far the work is, and an ETA.
    pub fn set_total(&self, total: u64, unit: Unit) {
        if let Some(bar) = &self.bar {
            bar.set_style(counter_style(true, unit));
            bar.set_length(total);
        }
    }

    /// The units counted so far (0 for a hidden counter).
    #[must_use]
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// Counts the bytes read through it into a [`Counter`].
pub struct CountingReader<'c, R> {
    inner: R,
    counter: &'c Counter,
}

impl<'c, R> CountingReader<'c, R> {
    /// Reads from `inner`, counting into `counter`.
    pub fn new(inner: R, counter: &'c Counter) -> Self {
        CountingReader { inner, counter }
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_off_a_terminal_are_hidden_and_cost_nothing() {
        for display in [Display::Shown, Display::Quiet] {
            let p = Progress::on(display, false);
            let c = p.counter("Restoring", Some(1 << 30), Unit::Bytes);
            assert!(!c.is_live());
            c.add(4096);
            // Hidden counters do not even count.
            assert_eq!(c.done(), 0);
        }
        let p = Progress::on(Display::Quiet, true);
        assert!(!p.counter("Packing", None, Unit::Items("blocks")).is_live());
    }

    #[test]
    fn counters_on_a_terminal_count_and_redraw_in_steps() {
        let p = Progress::on(Display::Shown, true);
        if let Some(bar) = &p.bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let c = p.counter("Packing", Some(10_000), Unit::Items("blocks"));
        assert!(c.is_live());
        assert_eq!(c.step, 10);
        for _ in 0..25 {
            c.add(1);
        }
        assert_eq!(c.done(), 25);
        // Position follows the count at step boundaries only.
        assert_eq!(p.bar.as_ref().map(ProgressBar::position), Some(20));
        p.phase("Next");
        assert_eq!(p.bar.as_ref().and_then(ProgressBar::length), None);
    }

    #[test]
    fn the_counting_reader_passes_bytes_through() {
        use std::io::Read;
        let p = Progress::on(Display::Shown, true);
        if let Some(bar) = &p.bar {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let c = p.counter("Reading", None, Unit::Bytes);
        let mut out = Vec::new();
        CountingReader::new(&b"<superblock/>"[..], &c)
            .read_to_end(&mut out)
            .unwrap_or_default();
        assert_eq!(out, b"<superblock/>");
        assert_eq!(c.done(), 13);
    }
}
