//! `thin_metadata_pack`: see man/thin_metadata_pack.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::pack::pack_command)
}
