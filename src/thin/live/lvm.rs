//! LVM volume names, resolved through lvm2's own commands the way LINBIT's
//! thin-send-recv resolves them: `lvs` says what a name is (volume group,
//! LV, thin pool, dm path, thin id, attributes), and `lvchange` activates an
//! inactive LV (thin snapshots carry the activation-skip flag) for the
//! length of a run. The commands run without a shell, their output kept off
//! our stdout (which may carry a stream).
//!
//! Which names go to lvm2 at all is decided by [`classify`]: device-mapper
//! paths (`/dev/mapper/NAME`, `/dev/dm-N`) never do, `VG/LV` and
//! `/dev/VG/LV` do.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The columns asked of `lvs`, in this order (LINBIT's query).
pub const LVS_FIELDS: &str = "vg_name,lv_name,pool_lv,lv_dm_path,thin_id,lv_attr";

/// What a volume name on a command line is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeName {
    /// A device path, resolved through device-mapper (`/dev/mapper/NAME`,
    /// `/dev/dm-N`, or any other path).
    Path(PathBuf),
    /// An LVM name (`VG/LV` or `/dev/VG/LV`), resolved through `lvs`.
    Lvm(String),
}

/// True for a name lvm2 accepts for a VG or an LV.
fn lvm_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}

/// Classifies a volume argument: `/dev/mapper/…` and `/dev/dm-N` are device
/// paths; `VG/LV` and `/dev/VG/LV` (two valid LVM words) are LVM names;
/// anything else is a path.
#[must_use]
pub fn classify(arg: &OsStr) -> VolumeName {
    let path = || VolumeName::Path(PathBuf::from(arg));
    let Some(s) = arg.to_str() else {
        return path();
    };
    if s.starts_with("/dev/mapper/") || s.starts_with("/dev/dm-") {
        return path();
    }
    let rest = s.strip_prefix("/dev/").unwrap_or(s);
    if rest.starts_with('/') {
        return path();
    }
    match rest.split_once('/') {
        Some((vg, lv))
            if lvm_word(vg) && lvm_word(lv) && !matches!(vg, "disk" | "block" | "md") =>
        {
            VolumeName::Lvm(s.to_string())
        }
        _ => path(),
    }
}

/// One LV as `lvs` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LvInfo {
    /// The name asked about.
    pub name: String,
    /// Volume group.
    pub vg: String,
    /// LV name.
    pub lv: String,
    /// Its thin pool, for a thin LV.
    pub pool: Option<String>,
    /// Its device-mapper path (`/dev/mapper/VG-LV`).
    pub dm_path: PathBuf,
    /// Its thin device id, for a thin LV.
    pub thin_id: Option<u64>,
    /// The attribute string (`Vwi-a-tz--`).
    pub attr: String,
}

impl LvInfo {
    /// `VG/LV`.
    #[must_use]
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }

    /// Active (attribute 5 is `a`).
    #[must_use]
    pub fn active(&self) -> bool {
        self.attr.as_bytes().get(4) == Some(&b'a')
    }
}

/// Failures of the lvm2 commands.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// The command could not be started.
    #[error("{name}: running {cmd}: {cause}")]
    Spawn {
        /// The LV.
        name: String,
        /// The command.
        cmd: &'static str,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The command failed (its messages went to stderr).
    #[error("{name}: {cmd} failed with exit status {status}")]
    Failed {
        /// The LV.
        name: String,
        /// The command.
        cmd: &'static str,
        /// Its exit status (-1: killed by a signal).
        status: i32,
    },
    /// Output we do not understand.
    #[error("{name}: unexpected lvs output '{text}'")]
    Parse {
        /// The LV.
        name: String,
        /// The output.
        text: String,
    },
}

/// Parses the first line of `lvs --noheadings --separator '|' -o
/// LVS_FIELDS` (whitespace-separated columns are accepted too). None when
/// it does not have the six columns, a dm path, an attribute string of at
/// least five characters and a numeric (or empty) thin id.
#[must_use]
pub fn parse_lvs_line(name: &str, out: &str) -> Option<LvInfo> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = if line.contains('|') {
        line.split('|').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    };
    let [vg, lv, pool, dm_path, thin_id, attr] = f.as_slice() else {
        return None;
    };
    if vg.is_empty() || lv.is_empty() || !dm_path.starts_with('/') || attr.len() < 5 {
        return None;
    }
    let thin_id = match *thin_id {
        "" => None,
        s => Some(s.parse().ok()?),
    };
    Some(LvInfo {
        name: name.to_string(),
        vg: (*vg).to_string(),
        lv: (*lv).to_string(),
        pool: (!pool.is_empty()).then(|| (*pool).to_string()),
        dm_path: PathBuf::from(dm_path),
        thin_id,
        attr: (*attr).to_string(),
    })
}

/// Our stderr, for a child's stdout: lvm2's chatter must not reach a stream.
fn stderr_for_child() -> Stdio {
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

fn lvm_command(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("LVM_SUPPRESS_FD_WARNINGS", "1").stdin(Stdio::null());
    c
}

/// Asks `lvs` about `name`.
///
/// # Errors
/// lvs missing or failing, or output we do not understand.
pub fn lvs(name: &str) -> Result<LvInfo, LvmError> {
    let out = lvm_command("lvs")
        .args(["--noheadings", "--separator", "|", "-o", LVS_FIELDS, name])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|cause| LvmError::Spawn {
            name: name.to_string(),
            cmd: "lvs",
            cause,
        })?;
    if !out.status.success() {
        return Err(LvmError::Failed {
            name: name.to_string(),
            cmd: "lvs",
            status: out.status.code().unwrap_or(-1),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_lvs_line(name, &text).ok_or_else(|| LvmError::Parse {
        name: name.to_string(),
        text: text.trim().to_string(),
    })
}

/// True when `lvs` can be run at all (lvm2 is installed); asked once.
#[must_use]
pub fn lvm_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        lvm_command("lvs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn lvchange(lv: &LvInfo, args: &[&str]) -> Result<(), LvmError> {
    let status = lvm_command("lvchange")
        .args(args)
        .arg(lv.full_name())
        .stdout(stderr_for_child())
        .status()
        .map_err(|cause| LvmError::Spawn {
            name: lv.full_name(),
            cmd: "lvchange",
            cause,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(LvmError::Failed {
            name: lv.full_name(),
            cmd: "lvchange",
            status: status.code().unwrap_or(-1),
        })
    }
}

/// An LV we activated, deactivated again when this ends (also on drop).
#[derive(Debug)]
pub struct Activation {
    lv: Option<LvInfo>,
}

impl Activation {
    /// Activates `lv` when it is inactive (ignoring its activation-skip
    /// flag); None when it was active already.
    ///
    /// # Errors
    /// lvchange failing, or the dm path missing afterwards.
    pub fn ensure(lv: &LvInfo) -> Result<Option<Activation>, LvmError> {
        if lv.active() {
            return Ok(None);
        }
        lvchange(lv, &["--ignoreactivationskip", "--activate", "y"])?;
        let a = Activation {
            lv: Some(lv.clone()),
        };
        if !Path::new(&lv.dm_path).exists() {
            return Err(LvmError::Failed {
                name: lv.full_name(),
                cmd: "lvchange --activate y (no device node appeared)",
                status: 0,
            });
        }
        Ok(Some(a))
    }

    /// Deactivates the LV again.
    ///
    /// # Errors
    /// lvchange failing.
    pub fn end(mut self) -> Result<(), LvmError> {
        match self.lv.take() {
            Some(lv) => lvchange(&lv, &["--activate", "n"]),
            None => Ok(()),
        }
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        if let Some(lv) = self.lv.take() {
            let _ = lvchange(&lv, &["--activate", "n"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lvm(s: &str) -> VolumeName {
        VolumeName::Lvm(s.to_string())
    }
    fn path(s: &str) -> VolumeName {
        VolumeName::Path(PathBuf::from(s))
    }

    #[test]
    fn names_are_classified_like_a_user_means_them() {
        let c = |s: &str| classify(OsStr::new(s));
        assert_eq!(c("vg/lv"), lvm("vg/lv"));
        assert_eq!(c("/dev/vg1/snap-2.x"), lvm("/dev/vg1/snap-2.x"));
        assert_eq!(c("/dev/mapper/vg-lv"), path("/dev/mapper/vg-lv"));
        assert_eq!(c("/dev/dm-3"), path("/dev/dm-3"));
        assert_eq!(c("/dev/disk/data"), path("/dev/disk/data"));
        assert_eq!(c("/tmp/x/y"), path("/tmp/x/y"));
        assert_eq!(c("./img"), path("./img"));
        assert_eq!(c("../a"), path("../a"));
        assert_eq!(c("backup.img"), path("backup.img"));
        assert_eq!(c("a/b/c"), path("a/b/c"));
        assert_eq!(c("vg/-x"), path("vg/-x"));
        assert_eq!(c("//dev/vg/lv"), path("//dev/vg/lv"));
    }

    #[test]
    fn lvs_lines_parse_with_either_separator() {
        let i = parse_lvs_line("vg/s1", "  vg|s1|pool|/dev/mapper/vg-s1|2|Vwi---tz-k\n").unwrap();
        assert_eq!(
            (i.vg.as_str(), i.lv.as_str(), i.pool.as_deref(), i.thin_id),
            ("vg", "s1", Some("pool"), Some(2))
        );
        assert!(!i.active());
        assert_eq!(i.full_name(), "vg/s1");
        let j = parse_lvs_line("x", "  vg s1 pool /dev/mapper/vg-s1 2 Vwi-a-tz--").unwrap();
        assert!(j.active());
        let linear = parse_lvs_line("vg/l", "  vg|l||/dev/mapper/vg-l||-wi-a-----").unwrap();
        assert_eq!((linear.pool, linear.thin_id), (None, None));
        assert_eq!(
            parse_lvs_line("x", "  vg l /dev/mapper/vg-l -wi-a-----"),
            None
        );
        assert_eq!(parse_lvs_line("x", "vg|l|p|/dev/mapper/vg-l|z|Vwi-a"), None);
        assert_eq!(parse_lvs_line("x", ""), None);
    }
}
