//! What a receiving target holds, kept in a small text file beside it
//! (`--state FILE`; docs/stream-format.md, "Target state"):
//!
//! ```text
//! thintools-recv-state 1
//! holds <identity>|unknown
//! pending <source> <base>|none <applied offset>
//! ```
//!
//! `holds` names the volume the target equals after the last complete
//! stream; `pending` (only while a stream is unfinished) names the stream
//! being applied and the offset below which all of it is on disk. The file is
//! replaced atomically (written beside, synced, renamed, directory synced).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::stream::Identity;

const FIRST_LINE: &str = "thintools-recv-state 1";

/// A stream that was started on the target and not finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfinished {
    /// The stream's source.
    pub source: Identity,
    /// Its base (incremental streams).
    pub base: Option<Identity>,
    /// Everything of the stream below this byte offset is on the target.
    pub applied: u64,
}

impl Unfinished {
    /// The resume token for `thin_send --resume`: `SOURCE:BASE|none:OFFSET`.
    #[must_use]
    pub fn token(&self) -> String {
        let base = self
            .base
            .map_or_else(|| "none".to_owned(), |b| b.to_string());
        format!("{}:{base}:{}", self.source, self.applied)
    }

    /// Parses a token made by [`Self::token`].
    #[must_use]
    pub fn parse_token(s: &str) -> Option<Unfinished> {
        let mut it = s.trim().split(':');
        let source = Identity::parse(it.next()?)?;
        let base = match it.next()? {
            "none" => None,
            b => Some(Identity::parse(b)?),
        };
        let applied = it.next()?.parse().ok()?;
        it.next().is_none().then_some(Unfinished {
            source,
            base,
            applied,
        })
    }
}

/// The content of a state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// The volume the target equals, when known.
    pub holds: Option<Identity>,
    /// An unfinished stream.
    pub pending: Option<Unfinished>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the file.
    #[error("state file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        cause: io::Error,
    },
    /// Content that is not a state file.
    #[error("state file {path}: line {line}: not a thintools receiver state")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// Reads `path`; a missing file is the empty state (nothing known).
///
/// # Errors
/// A read error or content that does not parse.
pub fn load(path: &Path) -> Result<TargetState, StateError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TargetState::default()),
        Err(cause) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                cause,
            })
        }
    };
    parse(&text).map_err(|line| StateError::Parse {
        path: path.to_owned(),
        line,
    })
}

fn parse(text: &str) -> Result<TargetState, usize> {
    let mut lines = text.lines();
    if lines.next() != Some(FIRST_LINE) {
        return Err(1);
    }
    let mut st = TargetState::default();
    for (i, l) in lines.enumerate() {
        let line = i + 2;
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["holds", "unknown"] => st.holds = None,
            ["holds", id] => st.holds = Some(Identity::parse(id).ok_or(line)?),
            ["pending", s, b, a] => {
                let token = format!("{s}:{b}:{a}");
                st.pending = Some(Unfinished::parse_token(&token).ok_or(line)?);
            }
            [] => {}
            _ => return Err(line),
        }
    }
    Ok(st)
}

fn render(st: &TargetState) -> String {
    let mut s = format!("{FIRST_LINE}\n");
    match st.holds {
        Some(h) => s.push_str(&format!("holds {h}\n")),
        None => s.push_str("holds unknown\n"),
    }
    if let Some(p) = st.pending {
        let base = p.base.map_or_else(|| "none".to_owned(), |b| b.to_string());
        s.push_str(&format!("pending {} {base} {}\n", p.source, p.applied));
    }
    s
}

/// Replaces `path` with `st`, durably.
///
/// # Errors
/// Any I/O error on the file or its directory.
pub fn save(path: &Path, st: &TargetState) -> Result<(), StateError> {
    let io = |cause| StateError::Io {
        path: path.to_owned(),
        cause,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(render(st).as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_token_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.state");
        assert_eq!(load(&p).unwrap(), TargetState::default());
        let st = TargetState {
            holds: Some(Identity([1; 16])),
            pending: Some(Unfinished {
                source: Identity([2; 16]),
                base: Some(Identity([1; 16])),
                applied: 65536,
            }),
        };
        save(&p, &st).unwrap();
        assert_eq!(load(&p).unwrap(), st);
        let token = st.pending.unwrap().token();
        assert_eq!(
            token,
            "02020202020202020202020202020202:01010101010101010101010101010101:65536"
        );
        assert_eq!(Unfinished::parse_token(&token), st.pending);
        assert_eq!(Unfinished::parse_token("zz:none:1"), None);
        fs::write(&p, "thintools-recv-state 1\nholds 12\n").unwrap();
        assert_eq!(
            load(&p).unwrap_err().to_string(),
            format!(
                "state file {}: line 2: not a thintools receiver state",
                p.display()
            )
        );
    }
}
