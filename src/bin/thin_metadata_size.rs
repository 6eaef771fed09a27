//! `thin_metadata_size`: see man/thin_metadata_size.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::metadata_size::command)
}
