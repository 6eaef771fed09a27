//! `thin_send`: see man/thin_send.8.

use std::ffi::OsString;
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{CommandFactory, Parser};

use super::send_recv::{
    catch_signals, parse_format, pick_mode, reraise_caught, stdout_file, Mode, StopOnSignal,
};
use crate::commands::args::MetadataSnap;
use crate::commands::exit::Outcome;
use crate::commands::run::{finish, glue_optional_short, run_with, usage_error};
use crate::pdata::sys::grow_pipe;
use crate::progress::{Display, Progress, Unit, Verbosity};
use crate::thin::engines::send_recv::live::LiveSend;
use crate::thin::engines::send_recv::plan::{plan_offline, Holes, OfflineSource, Plan};
use crate::thin::engines::send_recv::send::{data_bytes, send, SendOptions};
use crate::thin::engines::send_recv::state::Unfinished;
use crate::thin::engines::send_recv::stream::writer::Compression;
use crate::thin::engines::send_recv::stream::Format;

/// What stdout's pipe is grown to: one DATA buffer of the sender.
pub const PIPE_BYTES: usize = 1 << 20;

/// Write a thin volume, or the difference between two, as a stream on stdout.
#[derive(Parser, Debug)]
#[command(name = "thin_send", disable_version_flag = true)]
struct Args {
    /// Allow stdout to be a terminal
    #[arg(short = 't', long = "allow-tty")]
    allow_tty: bool,
    /// Accepted for compatibility; has no effect when sending
    #[arg(long = "accept-stream-format", value_name = "FORMAT")]
    accept_stream_format: Option<String>,
    /// Stream format: 1.0, 1.1 (LINBIT's, the default) or 2 (ours)
    #[arg(long = "format", value_name = "FORMAT", default_value = "1.1")]
    format: String,
    /// Compress DATA records with zstd (format 2), at LEVEL (default 3)
    #[arg(long = "compress", value_name = "LEVEL", num_args = 0..=1, require_equals = true, default_missing_value = "3")]
    compress: Option<i32>,
    /// Send only what the receiver has not applied (format 2; the token thin_recv printed or stored)
    #[arg(long = "resume", value_name = "TOKEN")]
    resume: Option<String>,
    /// Metadata device or image of the pool (offline send)
    #[arg(long = "metadata-dev", value_name = "PATH", requires_all = ["data_dev", "thin_id"])]
    metadata_dev: Option<PathBuf>,
    /// Data device or image of the pool (offline send)
    #[arg(long = "data-dev", value_name = "PATH")]
    data_dev: Option<PathBuf>,
    /// The thin device to send (offline send)
    #[arg(long = "thin-id", value_name = "ID")]
    thin_id: Option<u64>,
    /// Send only the difference from this thin device (offline incremental send)
    #[arg(long = "base-id", value_name = "ID")]
    base_id: Option<u64>,
    #[command(flatten)]
    metadata_snap: MetadataSnap,
    /// Volume size in bytes (offline send; default: up to the last mapped block)
    #[arg(long = "size", value_name = "BYTES")]
    size: Option<u64>,
    /// Print nothing but errors
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// VOL, or SNAP1 SNAP2: LVM names (VG/LV, /dev/VG/LV) or dm paths (/dev/mapper/NAME, /dev/dm-N)
    #[arg(value_name = "VOLUME")]
    volumes: Vec<OsString>,
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Entry point of `thin_send`.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    match pick_mode(args, Some(Mode::Send)) {
        Ok((Mode::Send, rest)) => run_args(&rest),
        Ok((Mode::Receive, rest)) => super::recv::run_args(&rest),
        Err(o) => o,
    }
}

/// Runs the send mode on `args` (mode flags removed).
#[must_use]
pub fn run_args(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_send", &args, |a| {
        if let Some(f) = &a.accept_stream_format {
            if f != "auto" && parse_format(f).is_none() {
                return usage_error(&format!(
                    "unknown stream format specifier \"{f}\"; should be one of \"auto\", \"1.0\", \"1.1\", \"2\""
                ));
            }
        }
        let Some(format) = parse_format(&a.format) else {
            return usage_error(&format!(
                "unknown --format \"{}\"; should be 1.0, 1.1 or 2",
                a.format
            ));
        };
        if format != Format::V2 && (a.compress.is_some() || a.resume.is_some()) {
            return usage_error("--compress and --resume need --format 2");
        }
        if a.metadata_dev.is_none() {
            if a.volumes.is_empty() || a.volumes.len() > 2 {
                return usage_error("one or two positional arguments expected, or --metadata-dev");
            }
            if a.data_dev.is_some()
                || a.thin_id.is_some()
                || a.base_id.is_some()
                || a.size.is_some()
            {
                return usage_error("--data-dev, --thin-id, --base-id and --size go with --metadata-dev, not with volume names");
            }
        } else if !a.volumes.is_empty() {
            return usage_error("volume names and --metadata-dev exclude each other");
        }
        if !a.allow_tty && std::io::stdout().is_terminal() {
            eprintln!("not writing the data stream onto a terminal (use --allow-tty for that)");
            return Outcome::Usage;
        }
        catch_signals();
        let outcome = finish(run(&a, format), Verbosity::Normal);
        reraise_caught();
        outcome
    })
}

fn run(a: &Args, format: Format) -> anyhow::Result<()> {
    let holes = if format == Format::V2 {
        Holes::Unmap
    } else {
        Holes::Skip
    };
    let Some(metadata) = &a.metadata_dev else {
        return run_live(a, format, holes);
    };
    let (Some(data_dev), Some(thin_id)) = (&a.data_dev, a.thin_id) else {
        return Err(anyhow!("--metadata-dev needs --data-dev and --thin-id"));
    };
    let src = OfflineSource {
        metadata,
        snapshot: a.metadata_snap.choice(),
        thin_id,
        base_id: a.base_id,
        volume_size: a.size,
    };
    let plan = plan_offline(&src, holes)?;
    let data = File::open(data_dev).with_context(|| format!("{}", data_dev.display()))?;
    send_plan(a, format, &plan, &data)
}

/// Sends from live volumes (LVM names or dm paths), holding a metadata
/// snapshot of their pool for the run.
fn run_live(a: &Args, format: Format, holes: Holes) -> anyhow::Result<()> {
    let volumes: Vec<&std::ffi::OsStr> = a.volumes.iter().map(OsString::as_os_str).collect();
    let mut note = |m: String| {
        if !a.quiet {
            eprintln!("thin_send: {m}");
        }
    };
    let live = LiveSend::open(&volumes, holes, &mut note)?;
    let sent = send_plan(a, format, &live.plan, &live.data);
    let ended = live.finish();
    sent?;
    Ok(ended?)
}

/// The offset a `--resume` token says the receiver has applied up to,
/// checked against the plan's identities.
fn resume_offset(a: &Args, plan: &Plan) -> anyhow::Result<u64> {
    let Some(t) = &a.resume else {
        return Ok(0);
    };
    let u = Unfinished::parse_token(t)
        .ok_or_else(|| anyhow!("--resume {t}: not a resume token (SOURCE:BASE:OFFSET)"))?;
    if u.source != plan.source || u.base != plan.base {
        return Err(anyhow!(
            "--resume: the token is for source {} base {}, this stream is source {} base {}",
            u.source,
            u.base.map_or_else(|| "none".into(), |b| b.to_string()),
            plan.source,
            plan.base.map_or_else(|| "none".into(), |b| b.to_string()),
        ));
    }
    Ok(u.applied)
}

fn send_plan(a: &Args, format: Format, plan: &Plan, data: &File) -> anyhow::Result<()> {
    let resume_from = resume_offset(a, plan)?;
    let progress = Progress::new(if a.quiet {
        Display::Quiet
    } else {
        Display::Shown
    });
    let counter = progress.counter("sending", Some(data_bytes(plan, resume_from)), Unit::Bytes);
    // Not a pipe (a file, a socket): left as it is, and written to.
    let stdout = stdout_file()?;
    let is_pipe = grow_pipe(&stdout, PIPE_BYTES).is_ok();
    let opts = SendOptions {
        format,
        compression: a.compress.map_or(Compression::None, Compression::Zstd),
        resume_from,
        progress: &counter,
        pipe_out: is_pipe.then(|| stdout.as_fd()),
    };
    let out = std::io::BufWriter::with_capacity(1 << 20, StopOnSignal(stdout_file()?));
    let (_, sent) = send(plan, data, out, &opts)?;
    progress.finish();
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "thin_send: {} records, {} data bytes, {} stream bytes",
            sent.counts.records, sent.data_bytes, sent.stream_bytes
        );
    }
    Ok(())
}
