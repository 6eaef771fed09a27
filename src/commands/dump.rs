//! `thin_dump`: the command line, on the engine in [`crate::thin::engines::dump`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::commands::args::{MetadataSnap, SuperblockOverrides, Verbosity};
use crate::commands::exit::Outcome;
use crate::commands::run::{glue_optional_short, report_error, run_with};
use crate::progress;
use crate::progress::{Log, Progress};
use crate::thin::engines::dump::{dump, DumpError, DumpOptions, Format, Mappings, SharedLeaves};

/// Output format (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    // thin_dump XML (the default; thin_restore reads it). The variants carry
    // no doc comments so that --help lists the values on one line.
    Xml,
    // Indented text for people.
    #[value(name = "human_readable")]
    HumanReadable,
}

/// Command line of thin_dump.
#[derive(Parser, Debug)]
#[command(
    name = "thin_dump",
    version = crate::commands::VERSION,
    about = "Dump thin-provisioning metadata as XML or human-readable text",
    max_term_width = 100
)]
struct Args {
    #[command(flatten)]
    overrides: SuperblockOverrides,

    /// Dump only this device (repeatable)
    #[arg(long = "dev-id", value_name = "ID", action = ArgAction::Append)]
    dev_id: Vec<u64>,

    /// Write every device's mappings in full, without <def>/<ref> sharing
    #[arg(long)]
    expand_shared: bool,

    /// Output format
    #[arg(
        short = 'f',
        long,
        value_enum,
        default_value = "xml",
        value_name = "FORMAT"
    )]
    format: FormatArg,

    #[command(flatten)]
    snap: MetadataSnap,

    /// Write to this file instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    #[command(flatten)]
    verbosity: Verbosity,

    /// Find the trees of damaged metadata and dump what can be salvaged
    #[arg(
        short = 'r',
        long,
        action = ArgAction::SetTrue,
        overrides_with = "repair",
        conflicts_with = "metadata_snap"
    )]
    repair: bool,

    /// List devices with their details but no mappings
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "skip_mappings")]
    skip_mappings: bool,

    /// Binary metadata: a file or block device
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl From<Args> for DumpOptions {
    fn from(a: Args) -> Self {
        DumpOptions {
            input: a.input,
            output: a.output,
            format: match a.format {
                FormatArg::Xml => Format::Xml,
                FormatArg::HumanReadable => Format::HumanReadable,
            },
            snapshot: a.snap.choice(),
            dev_ids: (!a.dev_id.is_empty()).then(|| a.dev_id.into_iter().collect()),
            mappings: if a.skip_mappings {
                Mappings::Skip
            } else {
                Mappings::Dump
            },
            shared: if a.expand_shared {
                SharedLeaves::Expanded
            } else {
                SharedLeaves::DefRef
            },
            overrides: a.overrides.values(),
            quiet: a.verbosity.quiet,
            verbose: a.verbosity.verbose,
        }
    }
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_dump", &args, |a| {
        let repair = a.repair;
        let opts = DumpOptions::from(a);
        if repair {
            return dump_repaired(&opts);
        }
        let log = Log::stderr(opts.verbosity());
        let progress = Progress::new(opts.verbosity().display());
        match dump(&opts, &log, &progress) {
            Ok(report) if report.complete() => Outcome::Success,
            Ok(_) => Outcome::Failure,
            Err(e) => report(e, opts.quiet),
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Prints `e` (nothing for a broken pipe or when quiet).
fn report(e: DumpError, quiet: bool) -> Outcome {
    if e.is_broken_pipe() {
        return Outcome::Failure;
    }
    report_error(
        &anyhow::Error::from(e),
        progress::Verbosity::from_flags(quiet, 0),
    )
}

/// `--repair`: the repair engine plans the pool, then emits it into the
/// writer `-f` asks for.
fn dump_repaired(opts: &DumpOptions) -> Outcome {
    match repaired_document(opts) {
        Ok(()) => Outcome::Success,
        Err(e) => match e.downcast::<DumpError>() {
            Ok(d) => report(d, opts.quiet),
            Err(e) => report_error(&e, progress::Verbosity::from_flags(opts.quiet, 0)),
        },
    }
}

fn repaired_document(opts: &DumpOptions) -> anyhow::Result<()> {
    use crate::pdata::io::{open_metadata, Access, Sharing};
    use crate::thin::engines::dump::open_destination;
    use crate::thin::engines::repair::{self, LeafSharing, RepairError, RepairOptions};
    use crate::thin::ir::{human::HumanWriter, xml::write::XmlWriter};
    let dev = open_metadata(&opts.input, Access::ReadOnly, Sharing::Exclusive)?;
    let ropts = RepairOptions {
        transaction_id: opts.overrides.transaction_id,
        data_block_size: opts.overrides.data_block_size,
        nr_data_blocks: opts.overrides.nr_data_blocks,
        log: Log::stderr(opts.verbosity()),
    };
    let mut pool = repair::plan(&dev, &ropts)?;
    if let Some(ids) = &opts.dev_ids {
        pool.retain_devices(ids);
    }
    if opts.mappings == Mappings::Skip {
        pool.drop_mappings();
    }
    let sharing = match opts.shared {
        SharedLeaves::DefRef => LeafSharing::DefRef,
        SharedLeaves::Expanded => LeafSharing::Expanded,
    };
    let out = open_destination(opts)?;
    let done = match opts.format {
        Format::Xml => repair::emit_repaired(&dev, &pool, sharing, &mut XmlWriter::new(out)),
        Format::HumanReadable => {
            repair::emit_repaired(&dev, &pool, sharing, &mut HumanWriter::new(out))
        }
    };
    // Emission errors are worded as thin_dump's own.
    done.map_err(|e| match e {
        RepairError::Leaf(leaf) => DumpError::Node(leaf).into(),
        RepairError::Sink(ir) => DumpError::Ir(ir).into(),
        other => other.into(),
    })
}
