//! `thin_metadata_pack`: see man/thin_metadata_pack.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_metadata_pack")
}
