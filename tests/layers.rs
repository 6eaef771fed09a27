//! The layering rules of the crate, checked on its source: dependencies point
//! down only (`commands → thin → pdata`), and `unsafe` lives in one module.
//!
//! - `src/pdata/**` names neither `crate::thin` nor `crate::commands`;
//! - `src/thin/**` names none of `crate::commands`, `clap`, `anyhow`,
//!   `Outcome`, `ExitCode`;
//! - no file but `src/pdata/sys.rs` contains the `unsafe` keyword.
//!
//! Comments are ignored: a rule may be described in prose anywhere.

use std::path::{Path, PathBuf};

/// Names a file under `dir` must not use.
struct Rule {
    dir: &'static str,
    banned: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        dir: "src/pdata",
        banned: &["crate::thin", "crate::commands"],
    },
    Rule {
        dir: "src/thin",
        banned: &["crate::commands", "clap", "anyhow", "Outcome", "ExitCode"],
    },
];

/// The one file allowed to contain `unsafe`.
const SYS: &str = "src/pdata/sys.rs";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The line without its `//` comment (a `//` inside a string literal also
/// ends the scan, which can only hide a name, never invent one).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// True when `name` occurs in `code` as a whole path or word (not as part
/// of a longer identifier such as `unsafe_code` or `OutcomeKind`).
fn names(code: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(name).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + name.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Every violation in `text` (the contents of `rel`), as `rel:line: what`.
fn violations(rel: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let banned: Vec<&str> = RULES
        .iter()
        .filter(|r| rel.starts_with(&format!("{}/", r.dir)))
        .flat_map(|r| r.banned.iter().copied())
        .collect();
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        for name in &banned {
            if names(code, name) {
                out.push(format!("{rel}:{}: names `{name}`", n + 1));
            }
        }
        if rel != SYS && names(code, "unsafe") {
            out.push(format!("{rel}:{}: `unsafe` outside {SYS}", n + 1));
        }
    }
    out
}

#[test]
fn the_scanner_finds_what_it_must_and_nothing_else() {
    let pdata = "use crate::thin::model::superblock::X;\n// crate::thin in a comment\n";
    assert_eq!(
        violations("src/pdata/writer.rs", pdata),
        vec!["src/pdata/writer.rs:1: names `crate::thin`"]
    );
    let thin = "use clap::Parser;\nfn f() -> Outcome {}\nlet x = unsafe { y };\n\
                #![deny(unsafe_code)]\nstruct OutcomeKind;\nlet clapper = 1;\n";
    assert_eq!(
        violations("src/thin/engines/x.rs", thin),
        vec![
            "src/thin/engines/x.rs:1: names `clap`",
            "src/thin/engines/x.rs:2: names `Outcome`",
            "src/thin/engines/x.rs:3: `unsafe` outside src/pdata/sys.rs",
        ]
    );
    assert!(violations(SYS, "let x = unsafe { y };").is_empty());
    // The command layer may use clap and anyhow, but not unsafe.
    assert_eq!(
        violations("src/commands/x.rs", "use clap::Parser;\nunsafe fn f() {}\n"),
        vec!["src/commands/x.rs:2: `unsafe` outside src/pdata/sys.rs"]
    );
}

#[test]
fn lower_layers_name_no_higher_one_and_unsafe_stays_in_sys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.iter().any(|f| f.ends_with(SYS)), "{SYS} is missing");
    let mut found = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        found.extend(violations(&rel, &text));
    }
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}
