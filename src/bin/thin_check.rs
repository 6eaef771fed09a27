//! `thin_check`: see man/thin_check.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::check::command)
}
