//! The receiver: applies a stream to a [`Target`].
//!
//! Records are applied as they arrive, each only after its checksum (format
//! 2) was verified. With a state file, a format 2 stream is first checked
//! against what the target holds (an incremental stream needs its base; a
//! resumed one needs the unfinished stream it continues), the stream is
//! recorded as unfinished before the first write, progress is recorded at
//! checkpoints (target synced first), and only after the end record checked
//! out and the target was synced is the source recorded as held.

use std::io::Read;
use std::path::PathBuf;

use super::state::{self, StateError, TargetState, Unfinished};
use super::stream::reader::StreamReader;
use super::stream::{Accept, Counts, Event, Format, Identity, StreamError, StreamHeader};
use super::target::{Target, TargetError};
use crate::progress::{Counter, Unit};

/// Progress is made durable (target synced, state file updated) after at
/// least this many bytes of target range were applied since the last time.
const CHECKPOINT_BYTES: u64 = 256 << 20;

/// Whether an incremental stream's base is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseCheck {
    /// Refuse a base the state file does not name.
    Require,
    /// Apply without checking (`--ignore-base`).
    Ignore,
}

/// Whether notices about fallbacks (zeros written where a discard or hole
/// punch was not supported) go to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notices {
    /// Print them.
    Print,
    /// Keep quiet (`-q`).
    Suppress,
}

/// How to receive.
#[derive(Clone, Debug)]
pub struct ApplyOptions<'a> {
    /// Accepted formats.
    pub accept: Accept,
    /// The state file, if any.
    pub state: Option<PathBuf>,
    /// Base checking.
    pub base_check: BaseCheck,
    /// Fallback notices.
    pub notices: Notices,
    /// Counts the volume bytes up to the end of the last record applied
    /// (its total, for format 2, set from the header's volume size).
    pub progress: &'a Counter,
}

/// What a successful receive did.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The format (None for empty input).
    pub format: Option<Format>,
    /// Records read.
    pub counts: Counts,
    /// Stream bytes read.
    pub stream_bytes: u64,
    /// Format 2's header.
    pub header: Option<StreamHeader>,
}

/// A receive that failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The stream is damaged or incomplete.
    #[error("{error}{}", resume_hint(.resume))]
    Stream {
        /// What was wrong.
        error: Box<StreamError>,
        /// Where a resumed stream may start, when known.
        resume: Option<Unfinished>,
    },
    /// The target failed.
    #[error("{error}{}", resume_hint(.resume))]
    Target {
        /// What failed.
        error: Box<TargetError>,
        /// Where a resumed stream may start, when known.
        resume: Option<Unfinished>,
    },
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// An incremental stream whose base the target does not hold.
    #[error("the stream is incremental against {base}, but the target holds {}; refusing to apply it", holds_text(.holds))]
    WrongBase {
        /// The stream's base.
        base: Identity,
        /// What the target holds.
        holds: Option<Identity>,
    },
    /// An incremental stream and no state to check its base against.
    #[error("the stream is incremental against {0}, but there is no --state file to check the target against (give --state FILE, or --ignore-base)")]
    NoState(Identity),
    /// A resumed stream that does not continue the unfinished one.
    #[error("the stream resumes {got} at offset {from}, but the target {}", unfinished_text(.pending))]
    BadResume {
        /// The stream's source.
        got: Identity,
        /// Its resume offset.
        from: u64,
        /// The target's unfinished stream.
        pending: Option<Unfinished>,
    },
    /// Another stream is unfinished on the target.
    #[error("the target has an unfinished stream of {} (resume it with token {}), refusing an incremental stream of {got}", .pending.source, .pending.token())]
    OtherUnfinished {
        /// The unfinished stream.
        pending: Unfinished,
        /// This stream's source.
        got: Identity,
    },
}

fn resume_hint(r: &Option<Unfinished>) -> String {
    r.map_or_else(String::new, |u| {
        format!(
            "\nthe target is incomplete; resume with: thin_send --resume {} ...",
            u.token()
        )
    })
}

fn holds_text(h: &Option<Identity>) -> String {
    h.map_or_else(|| "an unknown volume".to_owned(), |i| i.to_string())
}

fn unfinished_text(p: &Option<Unfinished>) -> String {
    match p {
        None => "has no unfinished stream".to_owned(),
        Some(u) => format!("has {} applied up to offset {}", u.source, u.applied),
    }
}

/// Checks a format 2 header against the target's state.
///
/// # Errors
/// The refusal.
pub fn check_header(
    h: &StreamHeader,
    st: &TargetState,
    base_check: BaseCheck,
    have_state: bool,
) -> Result<(), RecvError> {
    if h.resume_from > 0 {
        let ok = st.pending.is_some_and(|p| {
            p.source == h.source && p.base == h.base && p.applied >= h.resume_from
        });
        if !ok && base_check == BaseCheck::Require {
            return Err(RecvError::BadResume {
                got: h.source,
                from: h.resume_from,
                pending: st.pending,
            });
        }
        return Ok(());
    }
    let (Some(base), BaseCheck::Require) = (h.base, base_check) else {
        return Ok(());
    };
    if !have_state {
        return Err(RecvError::NoState(base));
    }
    match st.pending {
        Some(p) if p.source == h.source && p.base == h.base => Ok(()),
        Some(p) => Err(RecvError::OtherUnfinished {
            pending: p,
            got: h.source,
        }),
        None if st.holds == Some(base) => Ok(()),
        // The target already equals the stream's source (the stream was
        // applied, but whoever ran it did not learn so): every record sets
        // its range to the source's content, so applying it again changes
        // nothing, and a rerun may complete.
        None if st.holds == Some(h.source) => Ok(()),
        None => Err(RecvError::WrongBase {
            base,
            holds: st.holds,
        }),
    }
}

struct Session<'t> {
    target: &'t mut Target,
    state_path: Option<PathBuf>,
    state: TargetState,
    pending: Option<Unfinished>,
    since_checkpoint: u64,
}

impl Session<'_> {
    fn target_err(&self, e: TargetError) -> RecvError {
        RecvError::Target {
            error: Box::new(e),
            resume: self.pending,
        }
    }

    fn save(&mut self) -> Result<(), RecvError> {
        if let Some(p) = &self.state_path {
            state::save(p, &self.state)?;
        }
        Ok(())
    }

    fn begin(&mut self, h: Option<StreamHeader>, opts: &ApplyOptions) -> Result<(), RecvError> {
        let Some(h) = h else {
            // Formats 1.x name nothing: what the target holds is unknown now.
            self.state = TargetState::default();
            return self.save();
        };
        check_header(&h, &self.state, opts.base_check, self.state_path.is_some())?;
        opts.progress
            .set_total(h.volume_size.saturating_sub(h.resume_from), Unit::Bytes);
        self.target
            .fit(h.volume_size)
            .map_err(|e| self.target_err(e))?;
        let applied = h.resume_from;
        self.pending = Some(Unfinished {
            source: h.source,
            base: h.base,
            applied,
        });
        self.state.pending = self.pending;
        self.save()
    }

    /// Records that everything below `end` is applied; syncs and saves at
    /// checkpoints.
    fn advance(&mut self, end: u64, len: u64) -> Result<(), RecvError> {
        let Some(p) = &mut self.pending else {
            return Ok(());
        };
        p.applied = end;
        self.since_checkpoint += len;
        if self.since_checkpoint >= CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), RecvError> {
        self.since_checkpoint = 0;
        if self.pending.is_none() || self.state_path.is_none() {
            return Ok(());
        }
        self.target.sync().map_err(|e| self.target_err(e))?;
        self.state.pending = self.pending;
        self.save()
    }

    /// After a failure: makes what was applied durable so the token holds.
    fn salvage(&mut self) -> Option<Unfinished> {
        let p = self.pending?;
        if self.target.sync().is_err() {
            return None;
        }
        if self.state_path.is_some() {
            self.state.pending = Some(p);
            if self.save().is_err() {
                return None;
            }
        }
        Some(p)
    }
}

/// Applies the stream read from `input` to `target`.
///
/// # Errors
/// A damaged or incomplete stream, a refused base, a target or state failure.
/// The target is then not complete; a format 2 error carries the resume point.
pub fn apply(
    input: impl Read,
    target: &mut Target,
    opts: &ApplyOptions,
) -> Result<Applied, RecvError> {
    let state = match &opts.state {
        Some(p) => state::load(p)?,
        None => TargetState::default(),
    };
    let mut s = Session {
        target,
        state_path: opts.state.clone(),
        state,
        pending: None,
        since_checkpoint: 0,
    };
    let mut r = StreamReader::new(input, opts.accept);
    let result = run(&mut r, &mut s, opts);
    match result {
        Ok(()) => {}
        Err(RecvError::Stream { error, .. }) => {
            let resume = s.salvage();
            return Err(RecvError::Stream { error, resume });
        }
        Err(RecvError::Target { error, .. }) => {
            let resume = s.salvage();
            return Err(RecvError::Target { error, resume });
        }
        Err(e) => return Err(e),
    }
    s.target.sync().map_err(|e| s.target_err(e))?;
    if r.format().is_some() {
        s.state.holds = s.pending.map(|p| p.source);
        s.state.pending = None;
        s.save()?;
    }
    Ok(Applied {
        format: r.format(),
        counts: r.counts(),
        stream_bytes: r.position(),
        header: r.header().copied(),
    })
}

fn run<R: Read>(
    r: &mut StreamReader<R>,
    s: &mut Session,
    opts: &ApplyOptions,
) -> Result<(), RecvError> {
    let stream_err = |e| RecvError::Stream {
        error: Box::new(e),
        resume: None,
    };
    // The counter shows how far into the volume the stream got.
    let mut shown = 0u64;
    while let Some(ev) = r.next_event().map_err(stream_err)? {
        let done = match ev {
            Event::Begin { header, .. } => {
                s.begin(header, opts)?;
                None
            }
            Event::Data { offset, bytes } => {
                let len = bytes.len() as u64;
                s.target
                    .write(offset, bytes)
                    .map(|()| (offset, len))
                    .map(Some)
                    .map_err(|e| s.target_err(e))?
            }
            Event::Zero { offset, len } => {
                s.target.zero(offset, len).map_err(|e| s.target_err(e))?;
                Some((offset, len))
            }
            Event::Unmap { offset, len } => {
                s.target.unmap(offset, len).map_err(|e| s.target_err(e))?;
                Some((offset, len))
            }
            Event::End => None,
        };
        for n in s.target.take_notices() {
            if opts.notices == Notices::Print {
                eprintln!("{n}");
            }
        }
        if let Some((offset, len)) = done {
            let base = r.header().map_or(0, |h| h.resume_from);
            let at = (offset + len).saturating_sub(base);
            if at > shown {
                opts.progress.add(at - shown);
                shown = at;
            }
            s.advance(offset + len, len)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base: Option<Identity>, resume_from: u64) -> StreamHeader {
        StreamHeader {
            volume_size: 1 << 20,
            granularity: 65536,
            source: Identity([2; 16]),
            base,
            resume_from,
        }
    }

    #[test]
    fn base_and_resume_rules() {
        let a = Identity([1; 16]);
        let b = Identity([9; 16]);
        let holds_a = TargetState {
            holds: Some(a),
            pending: None,
        };
        let req = BaseCheck::Require;
        // Full streams go anywhere; incremental ones need their base.
        check_header(&header(None, 0), &TargetState::default(), req, false).unwrap();
        check_header(&header(Some(a), 0), &holds_a, req, true).unwrap();
        let e = check_header(&header(Some(b), 0), &holds_a, req, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the stream is incremental against 09090909090909090909090909090909, but the target \
             holds 01010101010101010101010101010101; refusing to apply it"
        );
        assert!(matches!(
            check_header(&header(Some(a), 0), &holds_a, req, false),
            Err(RecvError::NoState(_))
        ));
        check_header(&header(Some(b), 0), &holds_a, BaseCheck::Ignore, false).unwrap();
        // A target that already holds the stream's source takes it again.
        let holds_source = TargetState {
            holds: Some(Identity([2; 16])),
            pending: None,
        };
        check_header(&header(Some(b), 0), &holds_source, req, true).unwrap();
        // An unfinished stream: the same stream may restart or resume up to
        // where it got; another incremental stream is refused.
        let pending = TargetState {
            holds: Some(a),
            pending: Some(Unfinished {
                source: Identity([2; 16]),
                base: Some(a),
                applied: 4096,
            }),
        };
        check_header(&header(Some(a), 0), &pending, req, true).unwrap();
        check_header(&header(Some(a), 4096), &pending, req, true).unwrap();
        let e = check_header(&header(Some(a), 8192), &pending, req, true).unwrap_err();
        assert!(e.to_string().ends_with("applied up to offset 4096"), "{e}");
        let other = StreamHeader {
            source: Identity([3; 16]),
            ..header(Some(a), 0)
        };
        assert!(matches!(
            check_header(&other, &pending, req, true),
            Err(RecvError::OtherUnfinished { .. })
        ));
    }
}
