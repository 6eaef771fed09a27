//! `thin_trim`: see man/thin_trim.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_trim")
}
