//! `thin_shrink`: see man/thin_shrink.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_shrink")
}
