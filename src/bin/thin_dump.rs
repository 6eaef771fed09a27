//! `thin_dump`: see man/thin_dump.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_dump")
}
