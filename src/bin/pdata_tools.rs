//! `pdata_tools`: the multi-call binary (man/pdata_tools.8). Runs the tool
//! named by the basename of argv[0], else by the basename of argv[1].

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use thintools::commands::exit::{exit_code, Outcome};
use thintools::commands::{find, Tool, TOOLS, VERSION};

fn lookup(arg: &OsString) -> Option<&'static Tool> {
    find(Path::new(arg).file_name()?.to_str()?)
}

fn usage(mut w: impl Write) {
    let _ = writeln!(w, "Usage: pdata_tools <command> <args>\n\nCommands:");
    for tool in TOOLS {
        let _ = writeln!(w, "  {}", tool.name);
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(tool) = args.first().and_then(lookup) {
        return exit_code((tool.run)(&args[1..]));
    }
    if let Some(tool) = args.get(1).and_then(lookup) {
        return exit_code((tool.run)(&args[2..]));
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("-h" | "--help") => {
            usage(std::io::stdout().lock());
            return exit_code(Outcome::Success);
        }
        Some("-V" | "--version") => {
            println!("{VERSION}");
            return exit_code(Outcome::Success);
        }
        _ => {}
    }
    if let Some(name) = args.get(1) {
        eprintln!("unrecognised command '{}'", name.to_string_lossy());
    }
    usage(std::io::stderr().lock());
    exit_code(Outcome::Usage)
}
