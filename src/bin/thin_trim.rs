//! `thin_trim`: see man/thin_trim.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::trim::command)
}
