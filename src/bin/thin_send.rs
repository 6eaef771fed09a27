//! `thin_send`: see man/thin_send.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::commands::send::command)
}
