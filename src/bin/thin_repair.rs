//! `thin_repair`: see man/thin_repair.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::repair::command)
}
