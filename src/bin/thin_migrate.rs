//! `thin_migrate`: see man/thin_migrate.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_migrate")
}
