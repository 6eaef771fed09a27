//! `thin_metadata_unpack`: see man/thin_metadata_unpack.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_metadata_unpack")
}
