//! `thin_delta`: see man/thin_delta.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_delta")
}
