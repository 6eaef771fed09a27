//! Option groups shared by several tools, each declared, documented and
//! validated once; a tool's argument struct takes them with
//! `#[command(flatten)]`.

use clap::Args;

use crate::thin::model::open::SnapshotChoice;

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
