//! `thin_metadata_size`: see man/thin_metadata_size.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_metadata_size")
}
