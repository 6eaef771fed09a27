//! `thin_metadata_unpack`: see man/thin_metadata_unpack.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::pack::unpack_command)
}
