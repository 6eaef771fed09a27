//! `thin_rmap`: see man/thin_rmap.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_rmap")
}
