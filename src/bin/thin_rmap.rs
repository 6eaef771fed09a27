//! `thin_rmap`: see man/thin_rmap.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::rmap::command)
}
