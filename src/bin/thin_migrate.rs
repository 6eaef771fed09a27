//! `thin_migrate`: see man/thin_migrate.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::commands::migrate::command)
}
