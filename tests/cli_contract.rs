//! The command-line contract every tool shares (-V, -h, usage errors, exit
//! codes, man pages), as
//! one plain table: each row is a rule, run over every tool it applies to.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::fixtures::unzstd;
use crate::util::man;
use crate::util::{bin, corpus_dir, fixtures_dir, run, sha256_file, Run};

/// How a tool takes its input, which decides the argument template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    /// Binary metadata as the positional argument (plus fixed options).
    Positional(&'static [&'static str]),
    /// Binary metadata as `-i`, with an output `-o`.
    InOut,
    /// `--metadata-dev`, with a data file.
    Trim,
    /// XML as `-i`, with an output `-o`.
    Xml,
    /// A pack file as `-i`, with an output `-o`.
    Pack,
    /// XML as `-i`, an output `-o`, a data file and a size (thin_shrink).
    Shrink,
    /// No input file.
    None,
    /// The multi-call binary itself.
    MultiCall,
}

/// One tool: its name, input style, whether it must never write its input.
struct Tool {
    name: &'static str,
    input: Input,
    read_only: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "thin_check",
        input: Input::Positional(&[]),
        read_only: true,
    },
    Tool {
        name: "thin_dump",
        input: Input::Positional(&[]),
        read_only: true,
    },
    Tool {
        name: "thin_delta",
        input: Input::Positional(&["--thin1", "1", "--thin2", "1"]),
        read_only: true,
    },
    Tool {
        name: "thin_ls",
        input: Input::Positional(&[]),
        read_only: true,
    },
    Tool {
        name: "thin_rmap",
        input: Input::Positional(&["--region", "0..10"]),
        read_only: true,
    },
    Tool {
        name: "thin_repair",
        input: Input::InOut,
        read_only: true,
    },
    Tool {
        name: "thin_restore",
        input: Input::Xml,
        read_only: false,
    },
    Tool {
        name: "thin_shrink",
        input: Input::Shrink,
        read_only: true,
    },
    Tool {
        name: "thin_trim",
        input: Input::Trim,
        read_only: true,
    },
    Tool {
        name: "thin_metadata_pack",
        input: Input::InOut,
        read_only: true,
    },
    Tool {
        name: "thin_metadata_unpack",
        input: Input::Pack,
        read_only: false,
    },
    Tool {
        name: "thin_metadata_size",
        input: Input::None,
        read_only: false,
    },
    Tool {
        name: "pdata_tools",
        input: Input::MultiCall,
        read_only: false,
    },
];

/// One rule of the contract.
struct Row {
    name: &'static str,
    applies: fn(&Tool) -> bool,
    check: fn(&Tool, &Scratch) -> Result<(), String>,
}

const ROWS: &[Row] = &[
    Row {
        name: "--help",
        applies: |_| true,
        check: help,
    },
    Row {
        name: "-V",
        applies: |_| true,
        check: version,
    },
    // pdata_tools answers an unknown first argument with its usage text
    // (pdata_tools_dispatches_by_name).
    Row {
        name: "bad option",
        applies: |t| t.input != Input::MultiCall,
        check: bad_option,
    },
    Row {
        name: "missing input",
        applies: has_input,
        check: missing_input,
    },
    Row {
        name: "directory input",
        applies: has_input,
        check: directory_input,
    },
    Row {
        name: "tiny input",
        applies: binary_input,
        check: tiny_input,
    },
    Row {
        name: "XML given for binary",
        applies: binary_input,
        check: xml_input,
    },
    Row {
        name: "input unchanged",
        applies: |t| t.read_only,
        check: input_unchanged,
    },
    Row {
        // pdata_tools has no options of its own beyond -h and -V.
        name: "long flags in man page",
        applies: |t| t.input != Input::MultiCall,
        check: man_page,
    },
];

fn has_input(t: &Tool) -> bool {
    !matches!(t.input, Input::None | Input::MultiCall)
}

fn binary_input(t: &Tool) -> bool {
    matches!(t.input, Input::Positional(_) | Input::InOut | Input::Trim)
}

/// Files shared by the rows.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.path("tiny"), [0u8; 4095]).unwrap();
        let xml = "<superblock uuid=\"\" time=\"0\" transaction=\"1\" version=\"2\" \
                   data_block_size=\"128\" nr_data_blocks=\"100\">\n</superblock>\n";
        let mut padded = xml.as_bytes().to_vec();
        padded.resize(8192, b' ');
        std::fs::write(s.path("xml"), padded).unwrap();
        std::fs::write(s.path("zeroed"), vec![0u8; 40960]).unwrap();
        std::fs::create_dir(s.path("dir")).unwrap();
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh output file (restore/repair need an existing one of 40960 bytes).
    fn output(&self) -> PathBuf {
        let p = self.path("out");
        std::fs::write(&p, vec![0u8; 40960]).unwrap();
        p
    }

    /// The argument vector running `t` on `input`.
    fn args(&self, t: &Tool, input: &Path) -> Vec<String> {
        let i = input.to_str().unwrap().to_string();
        let mut a: Vec<String> = Vec::new();
        match t.input {
            Input::Positional(extra) => {
                a.extend(extra.iter().map(|s| (*s).to_string()));
                a.push(i);
            }
            Input::InOut | Input::Xml | Input::Pack => {
                let out = self.output();
                if matches!(t.name, "thin_metadata_pack" | "thin_metadata_unpack") {
                    // These create their output.
                    std::fs::remove_file(&out).unwrap();
                }
                a.extend(["-i".into(), i, "-o".into(), out.to_str().unwrap().into()]);
            }
            Input::Trim => {
                let d = self.path("data");
                std::fs::write(&d, vec![0u8; 4096]).unwrap();
                a.extend([
                    "--metadata-dev".into(),
                    i,
                    "--data-dev".into(),
                    d.to_str().unwrap().into(),
                ]);
            }
            Input::Shrink => {
                let (d, o) = (self.path("data"), self.path("out.xml"));
                std::fs::write(&d, vec![0u8; 4096]).unwrap();
                a.extend(["-i".into(), i, "-o".into(), o.to_str().unwrap().into()]);
                a.extend(["--data".into(), d.to_str().unwrap().into()]);
                a.extend(["--nr-blocks".into(), "1".into()]);
            }
            Input::None | Input::MultiCall => {}
        }
        a
    }

    fn run(&self, t: &Tool, input: &Path) -> Run {
        let a = self.args(t, input);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        run(t.name, &refs)
    }
}

fn expect(r: &Run, code: i32, stderr: &str) -> Result<(), String> {
    if r.code() == code && r.stderr() == stderr && r.stdout().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "want exit {code} and stderr {stderr:?}\n{}",
            r.describe()
        ))
    }
}

fn help(t: &Tool, _: &Scratch) -> Result<(), String> {
    let r = run(t.name, &["--help"]);
    let out = r.stdout();
    if r.code() == 0 && out.contains("Usage:") && r.stderr().is_empty() {
        Ok(())
    } else {
        Err(r.describe())
    }
}

fn version(t: &Tool, _: &Scratch) -> Result<(), String> {
    let want = format!("{}\n", env!("CARGO_PKG_VERSION"));
    let mut cases = vec![&["-V"][..], &["--version"]];
    if t.input != Input::MultiCall {
        // -V wins over any other argument error.
        cases.push(&["--no-such-flag", "-V"]);
    }
    for args in cases {
        let r = run(t.name, args);
        if r.code() != 0 || r.stdout() != want || !r.stderr().is_empty() {
            return Err(r.describe());
        }
    }
    Ok(())
}

fn bad_option(t: &Tool, _: &Scratch) -> Result<(), String> {
    let r = run(t.name, &["--no-such-flag"]);
    let e = r.stderr();
    if r.code() == 2
        && e.starts_with("error: unexpected argument '--no-such-flag' found")
        && e.ends_with("For more information, try '--help'.\n")
        && r.stdout().is_empty()
    {
        Ok(())
    } else {
        Err(r.describe())
    }
}

fn missing_input(t: &Tool, s: &Scratch) -> Result<(), String> {
    let p = s.path("no-such-file");
    let r = s.run(t, &p);
    expect(
        &r,
        1,
        &format!("Couldn't find input file '{}'\n", p.display()),
    )
}

fn directory_input(t: &Tool, s: &Scratch) -> Result<(), String> {
    let p = s.path("dir");
    let r = s.run(t, &p);
    expect(
        &r,
        1,
        &format!("Not a block device or regular file '{}'.\n", p.display()),
    )
}

fn tiny_input(t: &Tool, s: &Scratch) -> Result<(), String> {
    let r = s.run(t, &s.path("tiny"));
    expect(
        &r,
        1,
        "Metadata device/file too small.  Is this binary metadata?\n",
    )
}

fn xml_input(t: &Tool, s: &Scratch) -> Result<(), String> {
    let r = s.run(t, &s.path("xml"));
    expect(
        &r,
        1,
        "This looks like XML.  This tool only supports the binary metadata format.\n",
    )
}

/// Valid kernel-written metadata images: two fixtures (one with a held
/// metadata snapshot), else the shared corpus.
fn valid_images(s: &Scratch) -> Vec<PathBuf> {
    let mut zsts: Vec<PathBuf> = ["b-full-thin", "f-held-metasnap"]
        .iter()
        .map(|n| fixtures_dir().join(n).join("meta.img.zst"))
        .filter(|p| p.exists())
        .collect();
    if zsts.is_empty() {
        if let Some(c) = corpus_dir() {
            zsts.push(c.join("b-full-thin/meta.img.zst"));
        }
    }
    zsts.iter()
        .enumerate()
        .map(|(i, z)| {
            let dst = s.path(&format!("valid{i}"));
            unzstd(z, &dst)
        })
        .collect()
}

fn input_unchanged(t: &Tool, s: &Scratch) -> Result<(), String> {
    let mut inputs = valid_images(s);
    inputs.extend([s.path("zeroed"), s.path("tiny"), s.path("xml")]);
    for input in inputs {
        let before = sha256_file(&input);
        let r = s.run(t, &input);
        if sha256_file(&input) != before {
            return Err(format!(
                "input {} changed\n{}",
                input.display(),
                r.describe()
            ));
        }
        if r.code() == -1 {
            return Err(format!("killed by a signal\n{}", r.describe()));
        }
    }
    Ok(())
}

/// Every long option clap defines for the tool is in its man page.
fn man_page(t: &Tool, _: &Scratch) -> Result<(), String> {
    let flags = man::long_flags(t.name).ok_or(format!("{} is not in commands::TOOLS", t.name))?;
    if flags.is_empty() {
        return Err("clap defines no long options".to_string());
    }
    let missing = man::missing_from_page(t.name)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("man/{}.8 does not mention {missing:?}", t.name))
    }
}

#[test]
fn every_tool_follows_the_common_contract() {
    let s = Scratch::new();
    let mut failures = Vec::new();
    for row in ROWS {
        for t in TOOLS.iter().filter(|t| (row.applies)(t)) {
            if let Err(e) = (row.check)(t, &s) {
                failures.push(format!("[{}] {}: {e}", row.name, t.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// pdata_tools runs a tool named by argv[0]'s or argv[1]'s basename.
#[test]
fn pdata_tools_dispatches_by_name() {
    let want = "1064 sectors\n";
    let size_args = ["-b", "128", "-s", "2097152", "-m", "1"];
    let mut a = vec!["thin_metadata_size"];
    a.extend(size_args);
    let r = run("pdata_tools", &a);
    r.expect_code(0);
    assert_eq!(r.stdout(), want);
    a[0] = "/usr/sbin/thin_metadata_size";
    let r = run("pdata_tools", &a);
    r.expect_code(0);
    assert_eq!(r.stdout(), want);

    // Installed as a symlink named after the tool.
    let dir = tempfile::tempdir().unwrap();
    for name in thintools::commands::TOOLS.iter().map(|t| t.name) {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(bin("pdata_tools"), &link).unwrap();
        for args in [&["-V"][..], &["--help"], &["--no-such-flag"]] {
            let via_link = Command::new(&link).args(args).output().unwrap();
            let direct = Command::new(bin(name)).args(args).output().unwrap();
            assert_eq!(via_link, direct, "{name} {args:?} through a symlink");
        }
    }
    let out = Command::new(dir.path().join("thin_metadata_size"))
        .args(size_args)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    // Every tool is dispatched, and messages never depend on argv[0].
    for name in thintools::commands::TOOLS.iter().map(|t| t.name) {
        let direct = run(name, &["--no-such-flag"]);
        let multi = run("pdata_tools", &[name, "--no-such-flag"]);
        assert_eq!(direct.code(), multi.code(), "{name}");
        assert_eq!(direct.stderr(), multi.stderr(), "{name}");
    }

    let r = run("pdata_tools", &[]);
    r.expect_code(2);
    assert!(
        r.stderr()
            .starts_with("Usage: pdata_tools <command> <args>\n"),
        "{}",
        r.describe()
    );
    let r = run("pdata_tools", &["cache_check", "x"]);
    r.expect_code(2);
    assert!(r
        .stderr()
        .starts_with("unrecognised command 'cache_check'\nUsage: pdata_tools <command> <args>\n"));
    for name in ["thin_check", "thin_trim", "thin_metadata_unpack"] {
        assert!(r.stderr().contains(&format!("  {name}\n")), "{name} listed");
    }
}
