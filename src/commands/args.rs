//! Option groups shared by several tools, each declared, documented and
//! validated once; a tool's argument struct takes them with
//! `#[command(flatten)]`.

use clap::{ArgAction, Args};

use crate::progress;
use crate::thin::ir::Overrides;
use crate::thin::model::open::SnapshotChoice;
use crate::thin::model::superblock::valid_data_block_size;

/// `-m/--metadata-snap[=BLOCKNR]`: read the metadata snapshot instead of the
/// live trees. A glued short value (`-m5`) is accepted too (see
/// [`crate::commands::run::glue_optional_short`]).
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct MetadataSnap {
    /// Use the metadata snapshot (at BLOCKNR, or the one the superblock holds)
    #[arg(
        short = 'm',
        long = "metadata-snap",
        value_name = "BLOCKNR",
        num_args = 0..=1,
        require_equals = true
    )]
    pub metadata_snap: Option<Option<u64>>,
}

impl MetadataSnap {
    /// Which superblock the tool reads.
    #[must_use]
    pub fn choice(self) -> SnapshotChoice {
        match self.metadata_snap {
            None => SnapshotChoice::Live,
            Some(None) => SnapshotChoice::Held,
            Some(Some(nr)) => SnapshotChoice::At(nr),
        }
    }

    /// True when a snapshot was asked for.
    #[must_use]
    pub fn is_set(self) -> bool {
        self.metadata_snap.is_some()
    }
}

/// `-q/--quiet` and `-v/--verbose`: how much a tool prints on stderr.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct Verbosity {
    /// Print nothing on stderr; only the exit status tells the result
    #[arg(short = 'q', long = "quiet", action = ArgAction::SetTrue, overrides_with = "quiet")]
    pub quiet: bool,
    /// More detail on stderr (repeat for debug output)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl Verbosity {
    /// The level the engines filter their messages by.
    #[must_use]
    pub fn level(self) -> progress::Verbosity {
        progress::Verbosity::from_flags(self.quiet, self.verbose)
    }
}

/// `--transaction-id`, `--data-block-size`, `--nr-data-blocks`: superblock
/// values given on the command line for the metadata a tool writes or prints.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct SuperblockOverrides {
    /// Replace the data block size (sectors; 128..=2097152, a multiple of 128)
    #[arg(long, value_name = "SECTORS", value_parser = parse_data_block_size)]
    pub data_block_size: Option<u32>,
    /// Make the data device at least NUM blocks
    #[arg(long, value_name = "NUM")]
    pub nr_data_blocks: Option<u64>,
    /// Make the transaction id at least NUM
    #[arg(long, value_name = "NUM")]
    pub transaction_id: Option<u64>,
}

impl SuperblockOverrides {
    /// The values in the form the engines apply them.
    #[must_use]
    pub fn values(self) -> Overrides {
        Overrides {
            transaction_id: self.transaction_id,
            data_block_size: self.data_block_size,
            nr_data_blocks: self.nr_data_blocks,
        }
    }
}

/// Parses a data block size in sectors: 128..=2097152 and a multiple of 128,
/// the sizes the kernel accepts.
///
/// # Errors
/// `invalid data block size`, or the integer parse error.
pub fn parse_data_block_size(s: &str) -> Result<u32, String> {
    let v: u64 = s
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if !valid_data_block_size(v) {
        return Err("invalid data block size".to_string());
    }
    u32::try_from(v).map_err(|e| e.to_string())
}
