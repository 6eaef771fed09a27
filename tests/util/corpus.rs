//! The reference corpus (`corpus-sample`): each sample's metadata image with
//! the commands upstream 1.3.3 was run with (`expected/COMMANDS`) and their
//! exact stdout and stderr. Tools' tests replay the commands and compare.

use std::path::{Path, PathBuf};

use super::fixtures::{corpus_dir, unzstd};
use super::run;

/// One reference command of the corpus: sample, command name, arguments with
/// META replaced by the unpacked image.
pub struct CorpusCase {
    pub sample: String,
    pub name: String,
    pub tool: String,
    pub args: Vec<String>,
    pub expected_dir: PathBuf,
}

/// Every corpus command whose name starts with `prefix`, images unpacked into
/// `tmp`. Empty when the corpus is absent.
pub fn corpus_cases(prefix: &str, tmp: &Path) -> Vec<CorpusCase> {
    let Some(dir) = corpus_dir() else {
        eprintln!("corpus absent: skipping {prefix} corpus comparisons");
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut samples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("expected/COMMANDS").is_file())
        .collect();
    samples.sort();
    for s in samples {
        let sample = s.file_name().unwrap().to_string_lossy().into_owned();
        let commands = std::fs::read_to_string(s.join("expected/COMMANDS")).unwrap();
        let mut image: Option<PathBuf> = None;
        for line in commands.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, cmd)) = line.split_once('\t') else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let img = image
                .get_or_insert_with(|| {
                    unzstd(&s.join("meta.img.zst"), &tmp.join(format!("{sample}.img")))
                })
                .clone();
            let mut words = cmd.split_whitespace();
            let tool = words.next().unwrap().to_string();
            let args = words
                .map(|w| {
                    if w == "META" {
                        img.to_string_lossy().into_owned()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            out.push(CorpusCase {
                sample: sample.clone(),
                name: name.to_string(),
                tool,
                args,
                expected_dir: s.join("expected"),
            });
        }
    }
    out
}

/// Runs every case and asserts stdout (and stderr when `compare_stderr`) are
/// byte-identical to the expected files, with exit 0.
pub fn assert_corpus_identical(prefix: &str, compare_stderr: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let cases = corpus_cases(prefix, tmp.path());
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let r = run(&c.tool, &args);
        r.expect_code(0);
        let want = std::fs::read(c.expected_dir.join(format!("{}.stdout", c.name))).unwrap();
        assert!(
            r.out.stdout == want,
            "{} {}: stdout differs from 1.3.3\n{}\n--- expected\n{}",
            c.sample,
            c.name,
            r.describe(),
            String::from_utf8_lossy(&want)
        );
        if compare_stderr {
            let want = std::fs::read(c.expected_dir.join(format!("{}.stderr", c.name))).unwrap();
            assert_eq!(
                r.stderr(),
                String::from_utf8_lossy(&want),
                "{} {}",
                c.sample,
                c.name
            );
        }
    }
}
