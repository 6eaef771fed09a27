//! `thin_merge`: see man/thin_merge.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::commands::merge::command)
}
