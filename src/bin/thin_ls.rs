//! `thin_ls`: see man/thin_ls.8.

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::thin::ls::command)
}
