//! The thin_ls table: fields, cell values, pretty sizes and column layout.

use std::io::{self, Write};

use crate::thin::engines::ls::count::DeviceCounts;
use crate::thin::model::open::DeviceEntry;

/// One column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Device id.
    Dev,
    /// Transaction id at creation.
    Transaction,
    /// Creation time.
    CreateTime,
    /// Time of the last snapshot.
    SnapTime,
    /// Mappings, in blocks.
    MappedBlocks,
    /// Exclusive mappings, in blocks.
    ExclusiveBlocks,
    /// Shared mappings, in blocks.
    SharedBlocks,
    /// Highest mapped thin block.
    HighestBlock,
    /// Mappings, in sectors.
    MappedSectors,
    /// Exclusive mappings, in sectors.
    ExclusiveSectors,
    /// Shared mappings, in sectors.
    SharedSectors,
    /// Last sector of the highest mapped block.
    HighestSector,
    /// Mappings, in bytes.
    MappedBytes,
    /// Exclusive mappings, in bytes.
    ExclusiveBytes,
    /// Shared mappings, in bytes.
    SharedBytes,
    /// Last byte of the highest mapped block.
    HighestByte,
    /// Mappings, pretty-printed size.
    Mapped,
    /// Exclusive mappings, pretty-printed size.
    Exclusive,
    /// Shared mappings, pretty-printed size.
    Shared,
    /// Highest mapped byte, pretty-printed.
    HighestMapped,
}

const NAMES: &[(&str, Field)] = &[
    ("DEV", Field::Dev),
    ("TRANSACTION", Field::Transaction),
    ("CREATE_TIME", Field::CreateTime),
    ("SNAP_TIME", Field::SnapTime),
    ("MAPPED_BLOCKS", Field::MappedBlocks),
    ("EXCLUSIVE_BLOCKS", Field::ExclusiveBlocks),
    ("SHARED_BLOCKS", Field::SharedBlocks),
    ("HIGHEST_BLOCK", Field::HighestBlock),
    ("MAPPED_SECTORS", Field::MappedSectors),
    ("EXCLUSIVE_SECTORS", Field::ExclusiveSectors),
    ("SHARED_SECTORS", Field::SharedSectors),
    ("HIGHEST_SECTOR", Field::HighestSector),
    ("MAPPED_BYTES", Field::MappedBytes),
    ("EXCLUSIVE_BYTES", Field::ExclusiveBytes),
    ("SHARED_BYTES", Field::SharedBytes),
    ("HIGHEST_BYTE", Field::HighestByte),
    ("MAPPED", Field::Mapped),
    ("EXCLUSIVE", Field::Exclusive),
    ("SHARED", Field::Shared),
    ("HIGHEST_MAPPED", Field::HighestMapped),
];

impl Field {
    /// The column title.
    #[must_use]
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    /// Parses a comma-separated list; `Err` holds the first unknown name.
    ///
    /// # Errors
    /// The first name that is not a field.
    pub fn parse_list(s: &str) -> Result<Vec<Field>, String> {
        s.split(',')
            .map(|name| {
                NAMES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| *f)
                    .ok_or_else(|| name.to_string())
            })
            .collect()
    }

    /// True for fields that need the mapping trees walked.
    #[must_use]
    pub fn needs_counting(self) -> bool {
        !matches!(
            self,
            Field::Dev | Field::Transaction | Field::CreateTime | Field::SnapTime
        )
    }

    /// The cell text for one device; `bs` is the data block size in sectors.
    #[must_use]
    pub fn cell(self, d: &DeviceEntry, c: &DeviceCounts, bs: u64) -> String {
        let sectors = |blocks: u64| blocks.saturating_mul(bs);
        let bytes = |blocks: u64| sectors(blocks).saturating_mul(512);
        let end = c.highest.saturating_add(1);
        let value = match self {
            Field::Dev => d.id,
            Field::Transaction => d.details.transaction_id,
            Field::CreateTime => u64::from(d.details.creation_time),
            Field::SnapTime => u64::from(d.details.snapshotted_time),
            Field::MappedBlocks => c.mapped,
            Field::ExclusiveBlocks => c.exclusive(),
            Field::SharedBlocks => c.shared,
            Field::HighestBlock => c.highest,
            Field::MappedSectors => sectors(c.mapped),
            Field::ExclusiveSectors => sectors(c.exclusive()),
            Field::SharedSectors => sectors(c.shared),
            Field::HighestSector => sectors(end).saturating_sub(1),
            Field::MappedBytes | Field::Mapped => bytes(c.mapped),
            Field::ExclusiveBytes | Field::Exclusive => bytes(c.exclusive()),
            Field::SharedBytes | Field::Shared => bytes(c.shared),
            Field::HighestByte | Field::HighestMapped => bytes(end).saturating_sub(1),
        };
        match self {
            Field::Mapped | Field::Exclusive | Field::Shared | Field::HighestMapped => {
                pretty_size(value)
            }
            _ => value.to_string(),
        }
    }
}

/// A byte count as thin_ls prints it: `0b`, `1792KiB`, `8MiB`, ...
#[must_use]
pub fn pretty_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["b", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = if bytes == 0 {
        0
    } else {
        (bytes.ilog2() / 10).saturating_sub(1)
    };
    let mut m = bytes >> (10 * i);
    if m > 8192 {
        m = (m + 512) / 1024;
        i += 1;
    }
    let unit = UNITS[usize::try_from(i).unwrap_or(6).min(6)];
    format!("{m}{unit}")
}

/// Rows of cells, laid out when rendered.
pub struct Table<'f> {
    fields: &'f [Field],
    bs: u64,
    rows: Vec<Vec<String>>,
}

impl<'f> Table<'f> {
    /// An empty table with these columns; `bs` is the data block size in sectors.
    #[must_use]
    pub fn new(fields: &'f [Field], bs: u64) -> Self {
        Table {
            fields,
            bs,
            rows: Vec::new(),
        }
    }

    /// Adds the header row.
    pub fn push_header(&mut self) {
        self.rows
            .push(self.fields.iter().map(|f| f.name().to_string()).collect());
    }

    /// Adds one device's row.
    pub fn push_row(&mut self, d: &DeviceEntry, c: &DeviceCounts) {
        let row = self.fields.iter().map(|f| f.cell(d, c, self.bs)).collect();
        self.rows.push(row);
    }

    /// Writes every row: each cell right-justified to its column's width and
    /// followed by one space.
    ///
    /// # Errors
    /// Write failures.
    pub fn render(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut widths = vec![0usize; self.fields.len()];
        for row in &self.rows {
            for (wd, cell) in widths.iter_mut().zip(row) {
                *wd = (*wd).max(cell.len());
            }
        }
        for row in &self.rows {
            for (wd, cell) in widths.iter().zip(row) {
                write!(w, "{cell:>wd$} ")?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_sizes_follow_the_spec_examples() {
        assert_eq!(pretty_size(0), "0b");
        assert_eq!(pretty_size(1_835_008), "1792KiB");
        assert_eq!(pretty_size(4_194_304), "4096KiB");
        assert_eq!(pretty_size(8 * 1024 * 1024 + 1024), "8MiB");
        assert_eq!(pretty_size(25_165_824), "24MiB");
        assert_eq!(pretty_size(1023), "1023b");
        assert_eq!(pretty_size(5 << 40), "5120GiB");
        assert_eq!(pretty_size(u64::MAX), "16EiB");
    }

    #[test]
    fn unknown_field_is_named() {
        assert_eq!(Field::parse_list("DEV,FOO,BAR"), Err("FOO".to_string()));
        assert_eq!(
            Field::parse_list("DEV,EXCLUSIVE_BYTES"),
            Ok(vec![Field::Dev, Field::ExclusiveBytes])
        );
    }
}
