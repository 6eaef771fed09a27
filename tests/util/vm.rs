//! Test helpers that boot the real dm-thin target: Debian's kernel under qemu
//! (TCG), driven by `scripts/kernel-vm/run.sh` (see that script and
//! `scripts/kernel-vm/guest-lib.sh` for the guest side).
//!
//! Layers, lowest first:
//! - [`vm_enabled`]: call first in every VM test; `false` means skip (the
//!   VM tests run only with `THINTOOLS_VM_TESTS=1`; with it, a missing qemu
//!   is a test failure).
//! - [`Guest`]: one boot with a guest script, named disks, host binaries
//!   (e.g. our tools) and files; returns a [`GuestRun`] with the exit status,
//!   the console and the files the guest wrote to `$OUT`.
//! - [`Fixture`]: a committed kernel-written fixture (`fixtures/<name>/`): its
//!   `info`, `thins.reg` and `content.sha256`, and unpacking of its images.
//! - [`PoolBoot`]: boot the kernel with a metadata image (e.g. one made by our
//!   thin_restore) and a data image, activate the pool and every thin, hash
//!   every thin's content (copied to a dump disk, hashed on the host), run
//!   more guest commands (e.g. writes) with everything active, and shut the
//!   pool down cleanly so that the metadata image can be checked afterwards.
//! - [`parse_dump`]: the mappings of a thin_dump XML document (defs and refs
//!   expanded), for assertions on dumps.
//!
//! Guest time: boot to script start takes a few seconds; the VM assets are
//! built into `.vm-cache/` (or `$THINTOOLS_VM_CACHE`) on first use (needs
//! `apt-get download`, about 30 s).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util;

/// One VM at a time per test process: the machines have 2 cores, and
/// concurrent TCG guests slow each other down towards the timeouts.
static VM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The repository's `scripts/kernel-vm/` directory.
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kernel-vm")
}

/// The switch that turns the VM tests on (`scripts/test.sh` and CI set it).
pub const VM_SWITCH: &str = "THINTOOLS_VM_TESTS";

/// Whether VM tests should run: only when `THINTOOLS_VM_TESTS=1`. Without the
/// switch the test says on stderr (past the test harness's capture, so that a
/// plain `cargo test` shows it) that it was skipped and why. With the switch
/// a missing qemu is a failure: a VM test must not pass silently on a machine
/// that cannot run it.
pub fn vm_enabled() -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a VM test");
    if std::env::var(VM_SWITCH).map_or(true, |v| v != "1") {
        // Written to the stream itself: libtest captures only print!/eprint!.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: boots the kernel under qemu; set {VM_SWITCH}=1 to run it \
             (scripts/test.sh does)"
        );
        return false;
    }
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{test}: {VM_SWITCH}=1 but qemu-system-x86_64 is not installed: this test boots the \
         real kernel under qemu. Install it with scripts/kernel-vm/setup.sh (or \
         scripts/setup.sh), or unset {VM_SWITCH} to skip the VM tests"
    );
    true
}

/// One boot of the VM: a guest script plus disks, binaries and files.
#[derive(Clone, Debug)]
pub struct Guest {
    script: String,
    disks: Vec<(String, PathBuf, bool)>,
    bins: Vec<PathBuf>,
    files: Vec<(PathBuf, String)>,
    env: Vec<(String, String)>,
    timeout_s: u64,
    out_mib: u64,
}

impl Guest {
    /// A boot running `script` (busybox sh; start it with `. /job/lib.sh` to
    /// use the guest library).
    pub fn new(script: impl Into<String>) -> Self {
        Guest {
            script: script.into(),
            disks: Vec::new(),
            bins: Vec::new(),
            files: Vec::new(),
            env: Vec::new(),
            timeout_s: 240,
            out_mib: 64,
        }
    }
    /// Attaches a raw image as a virtio disk: `/dev/disk/<name>` in the guest.
    /// Disks are `/dev/vda`, `/dev/vdb`, ... in the order added.
    pub fn disk(mut self, name: &str, image: &Path) -> Self {
        self.disks
            .push((name.to_string(), image.to_path_buf(), false));
        self
    }
    /// Like [`Guest::disk`], for a disk without discard support.
    pub fn disk_nodiscard(mut self, name: &str, image: &Path) -> Self {
        self.disks
            .push((name.to_string(), image.to_path_buf(), true));
        self
    }
    /// Makes a host executable available as `/opt/bin/<file name>` (on the
    /// guest's PATH), with its shared libraries and dynamic loader.
    pub fn bin(mut self, path: &Path) -> Self {
        self.bins.push(path.to_path_buf());
        self
    }
    /// One of our built tools, e.g. `tool("thin_dump")`.
    pub fn tool(self, name: &str) -> Self {
        self.bin(&util::bin(name))
    }
    /// Copies a host file into the guest at `dst` (absolute path).
    pub fn file(mut self, src: &Path, dst: &str) -> Self {
        self.files.push((src.to_path_buf(), dst.to_string()));
        self
    }
    /// Exports a variable to the guest script.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
    /// Kills qemu after this many seconds of wall time (default 240).
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout_s = secs;
        self
    }
    /// Size of the disk carrying `$OUT` back (default 64 MiB).
    pub fn out_mib(mut self, mib: u64) -> Self {
        self.out_mib = mib;
        self
    }

    /// Boots, runs the script, waits. `work` receives `script.sh` and `out/`.
    pub fn run(&self, work: &Path) -> GuestRun {
        let script = work.join("script.sh");
        fs::write(&script, &self.script).expect("write guest script");
        let out = work.join("out");
        let mut cmd = Command::new(harness_dir().join("run.sh"));
        cmd.arg("--quiet")
            .arg("--out")
            .arg(&out)
            .arg("--timeout")
            .arg(self.timeout_s.to_string())
            .arg("--out-mib")
            .arg(self.out_mib.to_string());
        for (name, path, nodiscard) in &self.disks {
            let mut spec = format!("{name}={}", path.display());
            if *nodiscard {
                spec.push_str(",nodiscard");
            }
            cmd.arg("--disk").arg(spec);
        }
        for b in &self.bins {
            cmd.arg("--bin").arg(b);
        }
        for (src, dst) in &self.files {
            cmd.arg("--file").arg(format!("{}={dst}", src.display()));
        }
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(&script).stdin(Stdio::null());
        let res = {
            let _one_at_a_time = VM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            cmd.output().expect("spawn scripts/kernel-vm/run.sh")
        };
        let console = fs::read_to_string(out.join("console.log"))
            .unwrap_or_default()
            .replace('\r', "");
        let guest_seconds = console.lines().rev().find_map(|l| {
            l.strip_prefix("THINTOOLS-VM-END ")
                .and_then(|r| r.split_whitespace().find_map(|f| f.strip_prefix("uptime=")))
                .and_then(|t| t.parse().ok())
        });
        GuestRun {
            status: res.status.code().unwrap_or(-1),
            harness_stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
            out,
            console,
            guest_seconds,
        }
    }
}

/// The result of one boot.
#[derive(Debug)]
pub struct GuestRun {
    /// The guest script's exit status; 124 = timeout, 125 = no end marker
    /// (panic/oops), 126 = harness error.
    pub status: i32,
    /// What run.sh printed (asset building, errors, timings).
    pub harness_stderr: String,
    /// Host directory holding `console.log` and the guest's `$OUT` files.
    pub out: PathBuf,
    /// The serial console (kernel messages and the script's output).
    pub console: String,
    /// Guest uptime at the end marker.
    pub guest_seconds: Option<f64>,
}

impl GuestRun {
    /// Panics with the console tail unless the guest script exited 0.
    pub fn expect_ok(&self) -> &Self {
        assert_eq!(self.status, 0, "guest failed\n{}", self.describe());
        self
    }
    /// The last 60 console lines and the harness messages.
    pub fn describe(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "status {}\n--- harness\n{}--- console (tail)\n{tail}",
            self.status, self.harness_stderr
        )
    }
    /// The guest library's progress notes (`### ...` lines of `note`).
    pub fn notes(&self) -> Vec<&str> {
        self.console
            .lines()
            .filter(|l| l.starts_with("### ") || l.starts_with("THINTOOLS-VM-"))
            .collect()
    }
    /// Path of a file the guest wrote to `$OUT`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
    /// Panics unless the guest step `step` wrote 0 to `$OUT/<step>.rc`,
    /// showing its `<step>.err` and the console tail.
    pub fn expect_step_ok(&self, step: &str) {
        let read = |n: &str| self.read(n).trim().to_string();
        assert_eq!(
            read(&format!("{step}.rc")),
            "0",
            "{step}: {}\n{}",
            read(&format!("{step}.err")),
            self.describe()
        );
    }
    /// Contents of a file the guest wrote to `$OUT` (panics when missing).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("guest file {name}: {e}\n{}", self.describe()))
    }
}

/// A thin device as listed in `thins.reg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThinReg {
    pub id: u32,
    /// Table length in 512-byte sectors (the pool does not store sizes).
    pub sectors: u64,
    /// External origin device path in the guest (`/dev/disk/<name>`), if any.
    pub origin: Option<String>,
}

/// Parses `thins.reg` text: `<id> <sectors> <origin|->` per line.
pub fn parse_thins_reg(text: &str) -> Vec<ThinReg> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            ThinReg {
                id: f[0].parse().expect("thins.reg id"),
                sectors: f[1].parse().expect("thins.reg size"),
                origin: f.get(2).filter(|o| **o != "-").map(|o| o.to_string()),
            }
        })
        .collect()
}

/// Parses `content.sha256` text into `dev_id -> (size bytes, sha256)`.
pub fn parse_content(text: &str) -> BTreeMap<u32, (u64, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().expect("content id"),
                (f[1].parse().expect("content size"), f[2].to_string()),
            )
        })
        .collect()
}

/// A committed kernel-written fixture, `fixtures/<name>/` (see fixtures/README.md).
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    /// `info` as key/value pairs.
    pub info: BTreeMap<String, String>,
    pub thins: Vec<ThinReg>,
    /// `dev_id -> (size bytes, sha256)` of each thin's content.
    pub content: BTreeMap<u32, (u64, String)>,
}

impl Fixture {
    /// Loads `fixtures/<name>/` (panics when absent).
    pub fn load(name: &str) -> Self {
        let dir = util::fixtures_dir().join(name);
        let read = |f: &str| {
            fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("fixture {name}/{f}: {e}"))
        };
        let info = read("info")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fixture {
            name: name.to_string(),
            thins: parse_thins_reg(&read("thins.reg")),
            content: parse_content(&read("content.sha256")),
            info,
            dir,
        }
    }
    /// A numeric `info` value.
    pub fn num(&self, key: &str) -> u64 {
        self.info
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("fixture {}: no numeric info {key}", self.name))
    }
    /// Data block size in sectors.
    pub fn block_size(&self) -> u64 {
        self.num("data_block_size")
    }
    /// Pool features the fixture's pool was created with (without `read_only`).
    pub fn features(&self) -> String {
        self.info.get("features").cloned().unwrap_or_default()
    }
    /// Unpacks `<image>.img.zst` (e.g. "meta", "data", "origin") into `dir`,
    /// giving `dir/<fixture>_<image>.img`.
    pub fn unpack(&self, image: &str, dir: &Path) -> PathBuf {
        util::unpack_fixture(&format!("{}/{image}.img.zst", self.name), dir)
    }
    /// Names of the images other than meta and data (external origins).
    pub fn extra_images(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .expect("fixture dir")
            .filter_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                let base = n.strip_suffix(".img.zst")?.to_string();
                (base != "meta" && base != "data").then_some(base)
            })
            .collect();
        v.sort();
        v
    }
}

/// Boots the kernel on a metadata image and a data image, activates the pool
/// and every listed thin, hashes every thin, optionally runs more guest
/// commands, and shuts everything down cleanly (see the module docs).
#[derive(Clone, Debug)]
pub struct PoolBoot {
    meta: PathBuf,
    data: PathBuf,
    block_size: u64,
    thins: Vec<ThinReg>,
    extra: Vec<(String, PathBuf)>,
    features: String,
    read_only: bool,
    after: String,
    bins: Vec<PathBuf>,
    timeout_s: u64,
}

/// What a [`PoolBoot`] gives back.
#[derive(Debug)]
pub struct PoolBootResult {
    pub run: GuestRun,
    /// `dev_id -> (size bytes, sha256)` of each thin as read through the
    /// kernel right after activation (before the `then` commands).
    pub hashes: BTreeMap<u32, (u64, String)>,
}

impl PoolBoot {
    /// A pool over `meta` and `data` with this data block size (sectors).
    pub fn new(meta: &Path, data: &Path, block_size: u64) -> Self {
        PoolBoot {
            meta: meta.to_path_buf(),
            data: data.to_path_buf(),
            block_size,
            thins: Vec::new(),
            extra: Vec::new(),
            features: String::new(),
            read_only: false,
            after: String::new(),
            bins: Vec::new(),
            timeout_s: 300,
        }
    }
    /// The fixture's pool: its data image and external origins unpacked into
    /// `work`, its thins, block size and features, with `meta` as metadata
    /// (e.g. the output of our thin_restore on the fixture's dump).
    pub fn from_fixture(fx: &Fixture, meta: &Path, work: &Path) -> Self {
        let data = fx.unpack("data", work);
        let mut pb = PoolBoot::new(meta, &data, fx.block_size())
            .thins(&fx.thins)
            .features(&fx.features());
        for name in fx.extra_images() {
            let img = fx.unpack(&name, work);
            pb.extra.push((name, img));
        }
        pb
    }
    /// Thins to activate (and hash).
    pub fn thins(mut self, thins: &[ThinReg]) -> Self {
        self.thins = thins.to_vec();
        self
    }
    /// Pool features, space separated (e.g. "ignore_discard").
    pub fn features(mut self, f: &str) -> Self {
        self.features = f.to_string();
        self
    }
    /// Activates the pool with the `read_only` feature (metadata unchanged).
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }
    /// Another disk, e.g. an external origin named in `thins`.
    pub fn disk(mut self, name: &str, image: &Path) -> Self {
        self.extra.push((name.to_string(), image.to_path_buf()));
        self
    }
    /// Guest commands run after hashing, while the pool and every thin are
    /// active (guest library functions: `put ID GEN CHUNK COUNT`, `trim`,
    /// `snap_new`, `pool_msg`, ...). Output files go to `$OUT`.
    pub fn then(mut self, script: &str) -> Self {
        self.after = script.to_string();
        self
    }
    /// A host executable for the guest (see [`Guest::bin`]).
    pub fn bin(mut self, path: &Path) -> Self {
        self.bins.push(path.to_path_buf());
        self
    }
    /// Wall-time limit (default 300 s).
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout_s = secs;
        self
    }

    /// The guest script this boot runs.
    pub fn script(&self) -> String {
        let mut s = String::from(". /job/lib.sh\n");
        let mut features = self.features.clone();
        if self.read_only {
            features.push_str(" read_only");
        }
        s.push_str(&format!("pool_start {} 0 {}\n", self.block_size, features));
        s.push_str("cat > \"$REG\" <<'THINS'\n");
        for t in &self.thins {
            s.push_str(&format!(
                "{} {} {}\n",
                t.id,
                t.sectors,
                t.origin.as_deref().unwrap_or("-")
            ));
        }
        s.push_str("THINS\n");
        s.push_str("while read -r id size origin; do thin_up \"$id\"; done < \"$REG\"\n");
        s.push_str("dump_thins\n");
        s.push_str("pool_status | tee \"$OUT/status-active.txt\"\n");
        s.push_str(&self.after);
        s.push('\n');
        s.push_str("pool_status | tee \"$OUT/status-end.txt\"\n");
        s.push_str("for d in $(dmsetup ls | awk '$1 ~ /^thin/ { print $1 }'); do show dmsetup remove \"$d\"; done\n");
        s.push_str("pool_stop\n");
        s
    }

    /// Boots and returns the hashes; panics (with the console) if the guest fails.
    pub fn run(&self, work: &Path) -> PoolBootResult {
        let dump = work.join("dump.img");
        let dump_mib: u64 = self
            .thins
            .iter()
            .map(|t| (t.sectors * 512).div_ceil(1 << 20))
            .sum::<u64>()
            + 1;
        let f = fs::File::create(&dump).expect("create dump disk");
        f.set_len(dump_mib << 20).expect("size dump disk");
        drop(f);
        let mut g = Guest::new(self.script())
            .timeout(self.timeout_s)
            .disk("meta", &self.meta)
            .disk("data", &self.data);
        for (name, img) in &self.extra {
            g = g.disk(name, img);
        }
        g = g.disk("dump", &dump);
        for b in &self.bins {
            g = g.bin(b);
        }
        let run = g.run(work);
        run.expect_ok();
        let hashes = hash_dump(&dump, &run.read("dump.idx"));
        let _ = fs::remove_file(&dump);
        PoolBootResult { run, hashes }
    }
}

/// Hashes the thins a guest copied to a dump disk, from `dump.idx` lines
/// `<id> <offset> <size> <origin>`: `dev_id -> (size, sha256)`.
pub fn hash_dump(dump: &Path, idx: &str) -> BTreeMap<u32, (u64, String)> {
    let mut img = fs::File::open(dump).expect("open dump disk");
    let mut out = BTreeMap::new();
    for line in idx.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id: u32 = f[0].parse().expect("dump.idx id");
        let off: u64 = f[1].parse().expect("dump.idx offset");
        let size: u64 = f[2].parse().expect("dump.idx size");
        img.seek(SeekFrom::Start(off)).expect("seek dump disk");
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sha256sum");
        {
            let mut stdin = child.stdin.take().expect("sha256sum stdin");
            let mut left = size;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                img.read_exact(&mut buf[..n]).expect("read dump disk");
                stdin.write_all(&buf[..n]).expect("feed sha256sum");
                left -= n as u64;
            }
        }
        let res = child.wait_with_output().expect("sha256sum");
        let sum = String::from_utf8_lossy(&res.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        out.insert(id, (size, sum));
    }
    out
}

/// One mapping of a dump: virtual block -> (data block, time).
pub type Mappings = BTreeMap<u64, (u64, u32)>;

/// A thin device of a dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpDevice {
    /// The `mapped_blocks` attribute (details tree value).
    pub mapped_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    pub mappings: Mappings,
}

/// The content of a thin_dump XML document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub time: u32,
    pub transaction: u64,
    pub data_block_size: u64,
    pub nr_data_blocks: u64,
    pub devices: BTreeMap<u32, DumpDevice>,
}

fn attr<T: std::str::FromStr>(line: &str, name: &str) -> Option<T> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let end = start + line[start..].find('"')?;
    line[start..end].parse().ok()
}

/// Parses thin_dump XML (ours or upstream's): `<def>`s are expanded into the
/// devices that `<ref>` them. Panics on lines it does not understand.
pub fn parse_dump(xml: &str) -> Dump {
    let mut dump = Dump::default();
    let mut defs: BTreeMap<String, Mappings> = BTreeMap::new();
    enum Cur {
        None,
        Def(String),
        Dev(u32),
    }
    let mut cur = Cur::None;
    for raw in xml.lines() {
        let line = raw.trim();
        let add =
            |m: Mappings, cur: &Cur, defs: &mut BTreeMap<String, Mappings>, dump: &mut Dump| {
                match cur {
                    Cur::Def(n) => defs.entry(n.clone()).or_default().extend(m),
                    Cur::Dev(d) => dump.devices.get_mut(d).expect("device").mappings.extend(m),
                    Cur::None => panic!("mapping outside a device: {line}"),
                }
            };
        if line.starts_with("<superblock") {
            dump.time = attr(line, "time").unwrap_or(0);
            dump.transaction = attr(line, "transaction").unwrap_or(0);
            dump.data_block_size = attr(line, "data_block_size").unwrap_or(0);
            dump.nr_data_blocks = attr(line, "nr_data_blocks").unwrap_or(0);
        } else if line.starts_with("<def") {
            let name: String = attr(line, "name").expect("def name");
            defs.entry(name.clone()).or_default();
            cur = Cur::Def(name);
        } else if line.starts_with("<device") {
            let id: u32 = attr(line, "dev_id").expect("dev_id");
            dump.devices.insert(
                id,
                DumpDevice {
                    mapped_blocks: attr(line, "mapped_blocks").unwrap_or(0),
                    transaction: attr(line, "transaction").unwrap_or(0),
                    creation_time: attr(line, "creation_time").unwrap_or(0),
                    snap_time: attr(line, "snap_time").unwrap_or(0),
                    mappings: Mappings::new(),
                },
            );
            cur = Cur::Dev(id);
        } else if line.starts_with("<range_mapping") {
            let o: u64 = attr(line, "origin_begin").expect("origin_begin");
            let d: u64 = attr(line, "data_begin").expect("data_begin");
            let n: u64 = attr(line, "length").expect("length");
            let t: u32 = attr(line, "time").unwrap_or(0);
            add(
                (0..n).map(|i| (o + i, (d + i, t))).collect(),
                &cur,
                &mut defs,
                &mut dump,
            );
        } else if line.starts_with("<single_mapping") {
            let o: u64 = attr(line, "origin_block").expect("origin_block");
            let d: u64 = attr(line, "data_block").expect("data_block");
            let t: u32 = attr(line, "time").unwrap_or(0);
            add(
                std::iter::once((o, (d, t))).collect(),
                &cur,
                &mut defs,
                &mut dump,
            );
        } else if line.starts_with("<ref") {
            let name: String = attr(line, "name").expect("ref name");
            let m = defs
                .get(&name)
                .unwrap_or_else(|| panic!("ref to unknown def {name}"))
                .clone();
            add(m, &cur, &mut defs, &mut dump);
        } else if line.starts_with("</def") || line.starts_with("</device") {
            cur = Cur::None;
        } else if line.is_empty() || line.starts_with("</superblock") {
        } else {
            panic!("unexpected thin_dump line: {line}");
        }
    }
    dump
}
