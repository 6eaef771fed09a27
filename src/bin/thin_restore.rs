//! `thin_restore`: see man/thin_restore.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_restore")
}
