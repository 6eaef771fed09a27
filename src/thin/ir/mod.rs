//! The intermediate representation shared by dump, restore and repair.
//!
//! A metadata source (the binary reader, the XML reader, the repair engine)
//! drives a [`MetadataVisitor`]; sinks are the XML writer, the human-readable
//! writer and the binary metadata writer. Events arrive in document order:
//! `superblock_begin`, any `def_begin`..`def_end` groups, then devices in
//! ascending id, each `device_begin`, mappings and refs, `device_end`; then
//! `superblock_end` and `eof`.

pub mod channel;
pub mod emit;
pub mod error;
pub mod human;
pub mod metadata_writer;
pub mod sharing_plan;
pub mod text;
pub mod xml;

pub use error::IrError;

/// Superblock values carried by the IR (what thin_dump prints).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuperblockInfo {
    /// Always empty in practice.
    pub uuid: String,
    /// Snapshot time counter.
    pub time: u32,
    /// Transaction id.
    pub transaction: u64,
    /// Superblock flags (printed only when non-zero).
    pub flags: u32,
    /// On-disk version.
    pub version: u32,
    /// Sectors per data block.
    pub data_block_size: u32,
    /// Data space map size (0 for a metadata snapshot).
    pub nr_data_blocks: u64,
    /// Metadata snapshot location, if any (never printed).
    pub metadata_snap: Option<u64>,
}

/// Superblock values given on the command line for the metadata a tool
/// writes or prints: the transaction id and the data space size can only be
/// raised, the data block size is replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The result is the larger of this and the value found.
    pub transaction_id: Option<u64>,
    /// Replaces the value found (already validated).
    pub data_block_size: Option<u32>,
    /// The result is the larger of this and the value found.
    pub nr_data_blocks: Option<u64>,
}

impl Overrides {
    /// Applies the overrides to `sb`.
    pub fn apply(&self, sb: &mut SuperblockInfo) {
        if let Some(t) = self.transaction_id {
            sb.transaction = sb.transaction.max(t);
        }
        if let Some(s) = self.data_block_size {
            sb.data_block_size = s;
        }
        if let Some(n) = self.nr_data_blocks {
            sb.nr_data_blocks = sb.nr_data_blocks.max(n);
        }
    }
}

/// Device values carried by the IR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device id.
    pub dev_id: u64,
    /// Mapped blocks as recorded in the details tree.
    pub mapped_blocks: u64,
    /// Transaction id at creation.
    pub transaction: u64,
    /// Creation time.
    pub creation_time: u32,
    /// Time of the last snapshot.
    pub snap_time: u32,
}

/// A run of mappings: `len` consecutive thin blocks from `thin_begin` map to
/// consecutive data blocks from `data_begin`, all written at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Map {
    /// First thin (virtual) block.
    pub thin_begin: u64,
    /// First data block.
    pub data_begin: u64,
    /// Mapping time.
    pub time: u32,
    /// Number of blocks (≥ 1).
    pub len: u64,
}

/// What a visitor asks of the source after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// Go on.
    Continue,
    /// Stop emitting (e.g. the sink has all it wants).
    Stop,
}

/// A sink of metadata events.
pub trait MetadataVisitor {
    /// Start of the document.
    ///
    /// # Errors
    /// Sink failure (I/O, invalid value, out of space).
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit, IrError>;
    /// End of the document.
    ///
    /// # Errors
    /// Sink failure.
    fn superblock_end(&mut self) -> Result<Visit, IrError>;
    /// Start of a shared group of mappings named `name`.
    ///
    /// # Errors
    /// Sink failure.
    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError>;
    /// End of the current shared group.
    ///
    /// # Errors
    /// Sink failure.
    fn def_end(&mut self) -> Result<Visit, IrError>;
    /// Start of a device.
    ///
    /// # Errors
    /// Sink failure.
    fn device_begin(&mut self, dev: &DeviceInfo) -> Result<Visit, IrError>;
    /// End of the current device.
    ///
    /// # Errors
    /// Sink failure.
    fn device_end(&mut self) -> Result<Visit, IrError>;
    /// A run of mappings inside a def or device.
    ///
    /// # Errors
    /// Sink failure.
    fn map(&mut self, m: &Map) -> Result<Visit, IrError>;
    /// A reference to a shared group inside a device.
    ///
    /// # Errors
    /// Sink failure.
    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError>;
    /// End of input: flush.
    ///
    /// # Errors
    /// Sink failure.
    fn eof(&mut self) -> Result<Visit, IrError>;
}

/// A sink whose mapping runs can be rendered on worker threads.
///
/// Runs inside one group of leaves are independent of each other once they
/// are known, so the dump engine renders the runs of many leaves in parallel
/// into fragments and then splices the fragments into the output in document
/// order. Text sinks render bytes; other sinks can simply keep the runs (see
/// [`RunList`]).
pub trait ChunkSink: MetadataVisitor {
    /// Consecutive runs in rendered form.
    type Fragment: Send + Default;

    /// An empty fragment for the runs of `nr_leaves` leaves (a capacity hint).
    fn fragment(nr_leaves: usize) -> Self::Fragment {
        let _ = nr_leaves;
        Self::Fragment::default()
    }

    /// Appends run `m` to `frag`. Runs on worker threads, so it must not
    /// depend on the sink's state.
    fn render(frag: &mut Self::Fragment, m: &Map);

    /// Writes a fragment at the current position, as if each run in it had
    /// been passed to [`MetadataVisitor::map`] in order.
    ///
    /// # Errors
    /// Sink failure.
    fn splice(&mut self, frag: Self::Fragment) -> Result<Visit, IrError>;
}

/// Adapts any [`MetadataVisitor`] to [`ChunkSink`]: fragments are lists of
/// runs, replayed through `map` in order.
pub struct RunList<V>(pub V);

impl<V: MetadataVisitor> MetadataVisitor for RunList<V> {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> Result<Visit, IrError> {
        self.0.superblock_begin(sb)
    }
    fn superblock_end(&mut self) -> Result<Visit, IrError> {
        self.0.superblock_end()
    }
    fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
        self.0.def_begin(name)
    }
    fn def_end(&mut self) -> Result<Visit, IrError> {
        self.0.def_end()
    }
    fn device_begin(&mut self, dev: &DeviceInfo) -> Result<Visit, IrError> {
        self.0.device_begin(dev)
    }
    fn device_end(&mut self) -> Result<Visit, IrError> {
        self.0.device_end()
    }
    fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
        self.0.map(m)
    }
    fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
        self.0.ref_shared(name)
    }
    fn eof(&mut self) -> Result<Visit, IrError> {
        self.0.eof()
    }
}

impl<V: MetadataVisitor> ChunkSink for RunList<V> {
    type Fragment = Vec<Map>;

    fn render(frag: &mut Vec<Map>, m: &Map) {
        frag.push(*m);
    }

    fn splice(&mut self, frag: Vec<Map>) -> Result<Visit, IrError> {
        for m in &frag {
            if self.0.map(m)? == Visit::Stop {
                return Ok(Visit::Stop);
            }
        }
        Ok(Visit::Continue)
    }
}

impl Map {
    /// True when `next` continues this run: it starts right after it in both
    /// the thin and the data space and was written at the same time.
    #[must_use]
    pub fn continued_by(&self, next: &Map) -> bool {
        self.time == next.time
            && self.thin_begin.checked_add(self.len) == Some(next.thin_begin)
            && self.data_begin.checked_add(self.len) == Some(next.data_begin)
    }
}
