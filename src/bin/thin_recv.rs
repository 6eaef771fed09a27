//! `thin_recv`: see man/thin_recv.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::commands::recv::command)
}
