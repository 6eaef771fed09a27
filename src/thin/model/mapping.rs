//! Mapping values: `block_time = (data_block << 24) | time`.

use crate::pdata::low_u32;

/// Bits of `time` in a mapping value.
pub const TIME_BITS: u32 = 24;
/// Largest mapping time + 1.
pub const TIME_LIMIT: u64 = 1 << TIME_BITS;
/// Largest data block + 1.
pub const DATA_BLOCK_LIMIT: u64 = 1 << 40;

/// Size of one value of a device's mapping tree (key = virtual block): a
/// packed `block_time`.
pub const MAPPING_VALUE_SIZE: u32 = 8;
/// Size of one value of the top-level tree (key = device id): the root block
/// of that device's mapping tree.
pub const TOP_LEVEL_VALUE_SIZE: u32 = 8;

/// One mapping value, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTime {
    /// Data block.
    pub block: u64,
    /// Time the mapping was written.
    pub time: u32,
}

impl BlockTime {
    /// Decodes a leaf value.
    #[must_use]
    pub fn unpack(v: u64) -> BlockTime {
        BlockTime {
            block: v >> TIME_BITS,
            time: low_u32(v & (TIME_LIMIT - 1)),
        }
    }

    /// Encodes; `None` when a field does not fit.
    #[must_use]
    pub fn pack(&self) -> Option<u64> {
        (self.block < DATA_BLOCK_LIMIT && u64::from(self.time) < TIME_LIMIT)
            .then(|| (self.block << TIME_BITS) | u64::from(self.time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack() {
        let bt = BlockTime {
            block: 832,
            time: 1,
        };
        assert_eq!(BlockTime::unpack(bt.pack().unwrap()), bt);
        assert_eq!(
            BlockTime {
                block: 1 << 40,
                time: 0
            }
            .pack(),
            None
        );
        assert_eq!(
            BlockTime {
                block: 0,
                time: 1 << 24
            }
            .pack(),
            None
        );
    }
}
