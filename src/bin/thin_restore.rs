//! `thin_restore`: see man/thin_restore.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::restore::command)
}
