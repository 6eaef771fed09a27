//! The source thin as the metadata describes it: opening the metadata (the
//! live superblock of an inactive pool or image, or the held metadata
//! snapshot of a live pool), finding a thin, and making its copy plan.

use std::collections::BTreeMap;
use std::path::Path;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::diff::{diff_trees, last_key};
use crate::pdata::btree::node::NodeError;
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::{open_metadata, Access, FileDevice, OpenError, Sharing};
use crate::thin::engines::copy::plan::{
    full_plan, mapped_runs, DeltaExtents, Gaps, Plan, PlanError,
};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::{
    choose_superblock, read_details, read_top_level, OpenSnapError, SnapshotChoice,
};
use crate::thin::model::superblock::Superblock;

/// Failures opening the source metadata or finding a thin in it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The metadata device could not be opened.
    #[error("metadata device {path}: {source}")]
    Open {
        /// Its path.
        path: String,
        /// Why.
        source: OpenError,
    },
    /// The superblock could not be read.
    #[error("metadata device {path}: {source}")]
    Superblock {
        /// Its path.
        path: String,
        /// Why.
        source: OpenSnapError,
    },
    /// The top-level mapping tree is damaged.
    #[error("metadata device {path}: top-level mapping tree: {source}")]
    Devices {
        /// Its path.
        path: String,
        /// Why.
        source: NodeError,
    },
    /// The device details tree is damaged.
    #[error("metadata device {path}: device details tree: {source}")]
    Details {
        /// Its path.
        path: String,
        /// Why.
        source: NodeError,
    },
    /// The thin is not in the metadata read.
    #[error("thin device {id} is not in the {where_}")]
    NoSuchThin {
        /// The id asked for.
        id: u64,
        /// "metadata" or "metadata snapshot".
        where_: &'static str,
    },
    /// Building the plan failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Opened metadata and its thins.
pub struct SourceMetadata {
    /// The metadata device, read-only.
    pub dev: FileDevice,
    /// The superblock read (live or snapshot).
    pub sb: Superblock,
    /// Thin id → mapping tree root.
    pub roots: BTreeMap<u64, BlockNr>,
    snapshot: bool,
    path: String,
}

impl SourceMetadata {
    /// Opens `path` read-only and reads the superblock `choice` names: the
    /// live one (with O_EXCL: an inactive pool) or the held snapshot (without:
    /// the pool is live).
    ///
    /// # Errors
    /// A [`SourceError`].
    pub fn open(path: &Path, choice: SnapshotChoice) -> Result<SourceMetadata, SourceError> {
        let shown = path.display().to_string();
        let sharing = if choice == SnapshotChoice::Live {
            Sharing::Exclusive
        } else {
            Sharing::LiveSnapshot
        };
        let dev =
            open_metadata(path, Access::ReadOnly, sharing).map_err(|source| SourceError::Open {
                path: shown.clone(),
                source,
            })?;
        let chosen = choose_superblock(&dev, choice).map_err(|source| SourceError::Superblock {
            path: shown.clone(),
            source,
        })?;
        let sb = chosen.sb;
        let mut walker = Walker::new(&dev);
        let roots = read_top_level(&mut walker, sb.mapping_root).map_err(|source| {
            SourceError::Devices {
                path: shown.clone(),
                source,
            }
        })?;
        drop(walker);
        Ok(SourceMetadata {
            dev,
            sb,
            roots,
            snapshot: choice != SnapshotChoice::Live,
            path: shown,
        })
    }

    /// Data block size in bytes.
    #[must_use]
    pub fn block_bytes(&self) -> u64 {
        u64::from(self.sb.data_block_size) * 512
    }

    /// The mapping root of thin `id`.
    ///
    /// # Errors
    /// `NoSuchThin`.
    pub fn root_of(&self, id: u64) -> Result<BlockNr, SourceError> {
        self.roots.get(&id).copied().ok_or(SourceError::NoSuchThin {
            id,
            where_: if self.snapshot {
                "metadata snapshot"
            } else {
                "metadata"
            },
        })
    }

    /// Bytes up to the end of the last mapped block of thin `id` (the size
    /// used when no other size is known), from the tree's rightmost path.
    ///
    /// # Errors
    /// An unknown thin or a damaged node on that path.
    pub fn mapped_end(&self, id: u64) -> Result<u64, SourceError> {
        let root = self.root_of(id)?;
        let last =
            last_key(&self.dev, root, MAPPING_VALUE_SIZE).map_err(|source| PlanError::Tree {
                thin: id,
                root,
                source,
            })?;
        Ok(last.map_or(0, |k| {
            k.saturating_add(1).saturating_mul(self.block_bytes())
        }))
    }

    /// The details (transaction, times, mapped count) of thin `id`.
    ///
    /// # Errors
    /// A damaged details tree, or a thin it does not list.
    pub fn details(&self, id: u64) -> Result<DeviceDetails, SourceError> {
        let mut walker = Walker::new(&self.dev);
        let all = read_details(&mut walker, self.sb.details_root).map_err(|source| {
            SourceError::Details {
                path: self.path.clone(),
                source,
            }
        })?;
        all.get(&id).copied().ok_or(SourceError::NoSuchThin {
            id,
            where_: "device details tree",
        })
    }

    /// The plan copying thin `id` whole into a volume of `size_bytes`: every
    /// mapped run, and the gaps as `gaps` says.
    ///
    /// # Errors
    /// An unknown thin or a damaged mapping tree.
    pub fn full_plan(&self, id: u64, size_bytes: u64, gaps: Gaps) -> Result<Plan, SourceError> {
        let runs = mapped_runs(&self.dev, id, self.root_of(id)?)?;
        let block_bytes = self.block_bytes();
        let nr = size_bytes.div_ceil(block_bytes);
        Ok(Plan {
            block_bytes,
            size_bytes,
            extents: full_plan(&runs, nr, gaps),
        })
    }

    /// The plan taking a destination holding thin `base` to thin `id`: the
    /// delta walk of the two mapping trees, which skips the subtrees they
    /// share without reading them. `origin` says whether unmapped blocks read
    /// from an external origin.
    ///
    /// # Errors
    /// An unknown thin or a damaged mapping tree.
    pub fn delta_plan(
        &self,
        base: u64,
        id: u64,
        size_bytes: u64,
        origin: bool,
    ) -> Result<Plan, SourceError> {
        let base_root = self.root_of(base)?;
        let root = self.root_of(id)?;
        let block_bytes = self.block_bytes();
        let mut extents = DeltaExtents::new(size_bytes.div_ceil(block_bytes), origin);
        diff_trees(&self.dev, base_root, root, MAPPING_VALUE_SIZE, |d| {
            extents.push(d);
        })
        .map_err(|source| PlanError::Delta {
            base,
            thin: id,
            source,
        })?;
        Ok(Plan {
            block_bytes,
            size_bytes,
            extents: extents.finish(),
        })
    }
}
