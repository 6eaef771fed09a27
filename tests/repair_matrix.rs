//! The damage matrix of docs/repair.md, measured: every kernel-written
//! fixture damaged each way of [`Damage::ALL`], repaired by ours
//! (in-process, as `thin_dump --repair`) and, when present, by the reference
//! binary's `thin_dump --repair`. A mapping counts as recovered only when the
//! original pool has it (same device, virtual block and data block); a
//! mapping the original does not have counts against the repair, and those
//! pointing at a data block the original maps at another virtual block (a
//! block reused since the copy they came from) are shown apart.
//!
//! `scripts/repair-matrix.sh` prints the table; the test asserts ours is at
//! least the reference in every cell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use thintools::thin::ir::xml::read::read_xml;
use thintools::thin::ir::{DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit};

use crate::repair::{layout, repair, repair_with, Damage};
use crate::util::fixtures::{fixture_names, shared};
use crate::util::fixtures_dir;
use crate::util::image::Image;

/// Every mapping of a dump: device → virtual block → data block.
#[derive(Debug, Default)]
pub struct Mappings(pub BTreeMap<u64, BTreeMap<u64, u64>>);

/// Collects the mappings of an XML document, `<def>`/`<ref>` expanded.
#[derive(Default)]
struct Collector {
    out: Mappings,
    defs: HashMap<u64, Vec<Map>>,
    def: Option<(u64, Vec<Map>)>,
    dev: Option<u64>,
}

impl Collector {
    fn add(&mut self, m: &Map) {
        let Some(dev) = self.dev else { return };
        let maps = self.out.0.entry(dev).or_default();
        for i in 0..m.len {
            maps.insert(m.thin_begin + i, m.data_begin + i);
        }
    }
}

impl MetadataVisitor for Collector {
    fn superblock_begin(&mut self, _: &SuperblockInfo) -> Result<Visit, IrError> {
        Ok(Visit::Continue)
    }
    fn superblock_end(&mut self) -> Result<Visit, IrError> {
        Ok(Visit::Continue)
    }
    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
        self.def = Some((name, Vec::new()));
        Ok(Visit::Continue)
    }
    fn def_end(&mut self) -> Result<Visit, IrError> {
        if let Some((name, maps)) = self.def.take() {
            self.defs.insert(name, maps);
        }
        Ok(Visit::Continue)
    }
    fn device_begin(&mut self, dev: &DeviceInfo) -> Result<Visit, IrError> {
        self.dev = Some(dev.dev_id);
        self.out.0.entry(dev.dev_id).or_default();
        Ok(Visit::Continue)
    }
    fn device_end(&mut self) -> Result<Visit, IrError> {
        self.dev = None;
        Ok(Visit::Continue)
    }
    fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
        match &mut self.def {
            Some((_, maps)) => maps.push(*m),
            None => self.add(m),
        }
        Ok(Visit::Continue)
    }
    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
        for m in self.defs.get(&name).cloned().unwrap_or_default() {
            self.add(&m);
        }
        Ok(Visit::Continue)
    }
    fn eof(&mut self) -> Result<Visit, IrError> {
        Ok(Visit::Continue)
    }
}

/// The mappings of the XML document `xml`.
pub fn mappings_of(xml: &str) -> Mappings {
    let mut c = Collector::default();
    read_xml(xml.as_bytes(), &mut c).expect("a repair's XML reads back");
    c.out
}

/// How much of an original pool a repair gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Devices of the original that are in the output.
    pub devices: usize,
    /// Mappings the original has, exactly.
    pub recovered: u64,
    /// Mappings the original does not have.
    pub extra: u64,
    /// Of `extra`, those whose data block the original maps at another
    /// virtual block.
    pub reused: u64,
}

impl Score {
    /// Recovered mappings minus those that are not in the original.
    #[must_use]
    pub fn net(&self) -> i64 {
        i64::try_from(self.recovered).unwrap() - i64::try_from(self.extra).unwrap()
    }

    fn cell(&self) -> String {
        let mut s = self.recovered.to_string();
        if self.extra > 0 {
            let _ = write!(
                s,
                " (+{} not in the pool, {} reused)",
                self.extra, self.reused
            );
        }
        s
    }
}

/// Scores `got` against `original`.
pub fn score(original: &Mappings, got: &Mappings) -> Score {
    let places: HashMap<u64, BTreeSet<u64>> = {
        let mut m: HashMap<u64, BTreeSet<u64>> = HashMap::new();
        for maps in original.0.values() {
            for (&v, &d) in maps {
                m.entry(d).or_default().insert(v);
            }
        }
        m
    };
    let mut s = Score::default();
    for (dev, maps) in &got.0 {
        let orig = original.0.get(dev);
        s.devices += usize::from(orig.is_some());
        for (v, d) in maps {
            if orig.and_then(|o| o.get(v)) == Some(d) {
                s.recovered += 1;
            } else {
                s.extra += 1;
                s.reused += u64::from(places.get(d).is_some_and(|p| p.iter().any(|w| w != v)));
            }
        }
    }
    s
}

/// The reference `thin_dump` (upstream 1.3.3, multi-call by its name):
/// `THINTOOLS_REFERENCE` names the multi-call binary, else the shared
/// reference folder's; linked as `thin_dump` into `tmp`.
fn reference_dump(tmp: &Path) -> Option<PathBuf> {
    let bin = match std::env::var_os("THINTOOLS_REFERENCE") {
        Some(p) => PathBuf::from(p),
        None => shared("reference")?.join("pdata_tools-1.3.3"),
    };
    if !bin.is_file() {
        return None;
    }
    let link = tmp.join("thin_dump");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&bin, &link).ok()?;
    Some(link)
}

/// The reference's `thin_dump --repair` of `img`, started in the background
/// (its output goes to a file beside the image, named after `tag`).
struct ReferenceRun {
    child: std::process::Child,
    out: PathBuf,
}

impl ReferenceRun {
    fn start(bin: &Path, tmp: &Path, tag: &str, img: &Image, dbs: Option<u32>) -> Self {
        let input = tmp.join(format!("{tag}.meta"));
        let out = tmp.join(format!("{tag}.xml"));
        std::fs::write(&input, &img.bytes).unwrap();
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("--repair").arg(&input);
        if let Some(b) = dbs {
            cmd.args(["--data-block-size", &b.to_string()]);
        }
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("run the reference thin_dump");
        ReferenceRun { child, out }
    }

    /// Its XML, or None when it failed.
    fn finish(mut self) -> Option<String> {
        let ok = self.child.wait().expect("wait for the reference").success();
        ok.then(|| std::fs::read_to_string(&self.out).unwrap())
    }
}

/// One row of the matrix.
pub struct Row {
    pub fixture: String,
    pub damage: Damage,
    pub devices: usize,
    pub mappings: u64,
    pub ours: Option<Score>,
    pub reference: Option<Option<Score>>,
}

impl Row {
    fn line(&self) -> String {
        let show = |s: &Option<Score>| match s {
            Some(s) => format!("{} / {} | {}", s.devices, self.devices, s.cell()),
            None => "fails | fails".to_string(),
        };
        let reference = match &self.reference {
            Some(r) => show(r),
            None => "absent | absent".to_string(),
        };
        format!(
            "| {} | {:?} | {} | {} | {} |",
            self.fixture,
            self.damage,
            show(&self.ours),
            reference,
            self.mappings
        )
    }
}

/// Measures every cell of the matrix, ours and (when present) the
/// reference's; the reference runs on all damages of a fixture at once.
pub fn measure() -> (Vec<Row>, bool) {
    let tmp = tempfile::tempdir().unwrap();
    let bin = reference_dump(tmp.path());
    let mut rows = Vec::new();
    for name in fixture_names() {
        let img0 = Image::load_zst(&fixtures_dir().join(&name).join("meta.img.zst"));
        let original = mappings_of(repair(&img0).xml());
        let dbs = u32::try_from(img0.u64_at(0, 336) & 0xffff_ffff).unwrap();
        let l = layout(&img0);
        let mut cells = Vec::new();
        for (i, d) in Damage::ALL.into_iter().enumerate() {
            let mut img = Image {
                bytes: img0.bytes.clone(),
            };
            if !d.apply(&mut img, &l) {
                continue;
            }
            let dbs = d.needs_block_size().then_some(dbs);
            let run = bin
                .as_ref()
                .map(|b| ReferenceRun::start(b, tmp.path(), &i.to_string(), &img, dbs));
            cells.push((d, img, dbs, run));
        }
        for (d, img, dbs, run) in cells {
            let ours = repair_with(&img, |o| o.data_block_size = dbs);
            let ours = ours.result.ok().map(|x| score(&original, &mappings_of(&x)));
            let reference = run.map(|r| r.finish().map(|x| score(&original, &mappings_of(&x))));
            rows.push(Row {
                fixture: name.clone(),
                damage: d,
                devices: original.0.len(),
                mappings: original.0.values().map(|m| m.len() as u64).sum(),
                ours,
                reference,
            });
        }
    }
    (rows, bin.is_some())
}

/// The matrix as the markdown table of docs/repair.md.
pub fn table(rows: &[Row], with_reference: bool) -> String {
    let mut t = String::new();
    if !with_reference {
        t.push_str("reference thin_dump absent: measuring ours only\n\n");
    }
    t.push_str(
        "| fixture | damage | devices (ours) | mappings (ours) | devices (1.3.3) \
         | mappings (1.3.3) | original mappings |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&r.line());
        t.push('\n');
    }
    t
}

/// Prints the table (`scripts/repair-matrix.sh`) and holds ours to at least
/// the reference in every cell: devices, mappings of the original, and
/// those minus the mappings the original does not have.
#[test]
fn repair_matrix_ours_at_least_the_reference() {
    let (rows, with_reference) = measure();
    println!("{}", table(&rows, with_reference));
    let mut worse = Vec::new();
    for r in &rows {
        let ours = r
            .ours
            .unwrap_or_else(|| panic!("{} {:?}: ours fails", r.fixture, r.damage));
        if let Some(Some(theirs)) = r.reference {
            if ours.devices < theirs.devices
                || ours.recovered < theirs.recovered
                || ours.net() < theirs.net()
            {
                worse.push(r.line());
            }
        }
    }
    assert!(
        worse.is_empty(),
        "ours below the reference:\n{}",
        worse.join("\n")
    );
}

/// The scoring rule on a small case: exact mappings count, others count
/// against, and a data block the original maps at another virtual block is
/// reused.
#[test]
fn a_mapping_counts_only_when_the_original_has_it() {
    let original = Mappings(BTreeMap::from([
        (1, BTreeMap::from([(0, 10), (1, 11)])),
        (2, BTreeMap::from([(0, 20)])),
    ]));
    let got = Mappings(BTreeMap::from([
        (1, BTreeMap::from([(0, 10), (1, 20), (2, 30), (3, 11)])),
        (3, BTreeMap::new()),
    ]));
    let s = score(&original, &got);
    assert_eq!(
        s,
        Score {
            devices: 1,
            recovered: 1,
            extra: 3,
            reused: 2
        }
    );
    assert_eq!(s.net(), -2);
}
