//! `thin_merge`: see man/thin_merge.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_merge")
}
