//! `thin_delta`: see man/thin_delta.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::delta::command)
}
