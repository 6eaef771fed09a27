//! `thin_check`: see man/thin_check.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_check")
}
