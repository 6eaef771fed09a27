//! `thin_ls`: see man/thin_ls.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_ls")
}
