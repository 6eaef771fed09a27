//! `thin_repair`: see man/thin_repair.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_repair")
}
