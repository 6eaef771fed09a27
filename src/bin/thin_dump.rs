//! `thin_dump`: see man/thin_dump.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::dump::command)
}
