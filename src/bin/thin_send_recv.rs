//! `thin_send_recv`: the one program behind thin_send and thin_recv (man/thin_send.8).

fn main() -> std::process::ExitCode {
    thintools::cli::tool_main(thintools::commands::send_recv::command)
}
