//! `thin_send_recv`: see man/thin_send.8 and man/thin_recv.8.

fn main() -> std::process::ExitCode {
    thintools::commands::tool_main("thin_send_recv")
}
