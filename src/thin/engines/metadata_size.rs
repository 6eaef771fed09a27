//! thin_metadata_size: estimates the metadata device size a pool needs.
//!
//! The estimate counts one superblock, one mapping-tree leaf per 126 data
//! blocks and one block per thin device, capped at the largest metadata device
//! the kernel uses (4,161,600 blocks).

use std::fmt;

use crate::pdata::space_map::MAX_METADATA_BLOCKS;
/// Mappings per leaf assumed by the estimate.
const MAPPINGS_PER_LEAF: u64 = 126;
/// Size of a metadata block in bytes.
const METADATA_BLOCK_BYTES: u64 = 4096;
/// Smallest data block size (and its granularity), in bytes.
const BLOCK_GRANULE: u64 = 64 * 1024;
/// Largest data block size, in bytes.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// A size unit accepted on input and by `-u`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Bytes in one unit.
    pub bytes: u64,
    /// One-letter name used by `-n=short`.
    pub letter: char,
    /// Long name, singular (printed with an `s`).
    pub long: &'static str,
    /// Every accepted spelling.
    spellings: &'static [&'static str],
}

const fn unit(
    bytes: u64,
    letter: char,
    long: &'static str,
    spellings: &'static [&'static str],
) -> Unit {
    Unit {
        bytes,
        letter,
        long,
        spellings,
    }
}

const KI: u64 = 1024;
const K: u64 = 1000;

/// Every unit: binary multiples, then decimal ones.
pub const UNITS: &[Unit] = &[
    unit(1, 'b', "byte", &["b", "byte"]),
    unit(512, 's', "sector", &["s", "sector"]),
    unit(KI, 'k', "kibibyte", &["k", "KiB", "kibibyte"]),
    unit(KI * KI, 'm', "mebibyte", &["m", "MiB", "mebibyte"]),
    unit(KI * KI * KI, 'g', "gibibyte", &["g", "GiB", "gibibyte"]),
    unit(
        KI * KI * KI * KI,
        't',
        "tebibyte",
        &["t", "TiB", "tebibyte"],
    ),
    unit(
        KI * KI * KI * KI * KI,
        'p',
        "pebibyte",
        &["p", "PiB", "pebibyte"],
    ),
    unit(
        KI * KI * KI * KI * KI * KI,
        'e',
        "exbibyte",
        &["e", "EiB", "exbibyte"],
    ),
    unit(K, 'K', "kilobyte", &["K", "kB", "kilobyte"]),
    unit(K * K, 'M', "megabyte", &["M", "MB", "megabyte"]),
    unit(K * K * K, 'G', "gigabyte", &["G", "GB", "gigabyte"]),
    unit(K * K * K * K, 'T', "terabyte", &["T", "TB", "terabyte"]),
    unit(K * K * K * K * K, 'P', "petabyte", &["P", "PB", "petabyte"]),
    unit(
        K * K * K * K * K * K,
        'E',
        "exabyte",
        &["E", "EB", "exabyte"],
    ),
];

/// The default unit for sizes without a suffix and for output.
pub const SECTOR: Unit = UNITS[1];

/// Why a size or unit argument was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The suffix names no unit.
    #[error("Invalid unit specifier")]
    BadUnit,
    /// No digits, or a malformed number.
    #[error("{0}")]
    BadNumber(String),
    /// The size does not fit in 64 bits of bytes.
    #[error("value out of bounds")]
    OutOfBounds,
}

/// Parses a unit name (case-sensitive).
///
/// # Errors
/// `SizeError::BadUnit` for an unknown name.
pub fn parse_unit(s: &str) -> Result<Unit, SizeError> {
    UNITS
        .iter()
        .find(|u| u.spellings.contains(&s))
        .copied()
        .ok_or(SizeError::BadUnit)
}

/// Parses `<digits>[unit]` (no unit = sectors) into bytes.
///
/// # Errors
/// A malformed number, an unknown unit, or a size beyond `u64` bytes.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let body = s.strip_prefix('+').unwrap_or(s);
    let split = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    let (digits, suffix) = body.split_at(split);
    let unit = if suffix.is_empty() {
        SECTOR
    } else {
        parse_unit(suffix)?
    };
    let n: u64 = match digits.parse() {
        Ok(n) => n,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            return Err(SizeError::OutOfBounds)
        }
        Err(e) => return Err(SizeError::BadNumber(e.to_string())),
    };
    n.checked_mul(unit.bytes).ok_or(SizeError::OutOfBounds)
}

/// Validated inputs of the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Data block size in bytes.
    pub block_bytes: u64,
    /// Pool size in bytes.
    pub pool_bytes: u64,
    /// Maximum number of thin devices and snapshots.
    pub max_thins: u64,
}

/// Why the sizes cannot describe a pool (usage errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EstimateError {
    /// Zero or not a multiple of 64 KiB.
    #[error("block size must be a multiple of 64 KiB")]
    BlockSizeGranularity,
    /// Larger than 1 GiB.
    #[error("maximum block size is 1 GiB")]
    BlockSizeTooLarge,
    /// The pool holds less than one block.
    #[error("pool size must be larger than block size")]
    PoolTooSmall,
}

impl Estimate {
    /// Checks the sizes.
    ///
    /// # Errors
    /// One of the [`EstimateError`] usage errors.
    pub fn new(block_bytes: u64, pool_bytes: u64, max_thins: u64) -> Result<Self, EstimateError> {
        if block_bytes == 0 || !block_bytes.is_multiple_of(BLOCK_GRANULE) {
            return Err(EstimateError::BlockSizeGranularity);
        }
        if block_bytes > MAX_BLOCK_BYTES {
            return Err(EstimateError::BlockSizeTooLarge);
        }
        if pool_bytes < block_bytes {
            return Err(EstimateError::PoolTooSmall);
        }
        Ok(Estimate {
            block_bytes,
            pool_bytes,
            max_thins,
        })
    }

    /// Estimated metadata size in 4 KiB blocks.
    #[must_use]
    pub fn metadata_blocks(&self) -> u64 {
        let nr_blocks = self.pool_bytes / self.block_bytes;
        let leaves = nr_blocks.div_ceil(MAPPINGS_PER_LEAF);
        1u64.saturating_add(leaves)
            .saturating_add(self.max_thins)
            .min(MAX_METADATA_BLOCKS)
    }

    /// Estimated metadata size in bytes.
    #[must_use]
    pub fn metadata_bytes(&self) -> u64 {
        self.metadata_blocks() * METADATA_BLOCK_BYTES
    }
}

/// A size as printed: the shortest round-trip decimal when below one or
/// integral, else two decimals.
#[derive(Clone, Copy, Debug)]
pub struct SizeNumber(pub f64);

impl fmt::Display for SizeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v < 1.0 || v.fract() == 0.0 {
            // Rust's `Display` for f64 is the shortest round-trip form and
            // never uses exponent notation.
            write!(f, "{v}")
        } else {
            write!(f, "{v:.2}")
        }
    }
}

/// How the result is printed (`-n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumericOnly {
    /// `<n>`.
    Plain,
    /// `<n><letter>`.
    Short,
    /// `<n><long unit>s`.
    Long,
}

/// Formats `bytes` in `unit` with the chosen style (None: `<n> <long>s`).
#[must_use]
pub fn format_size(bytes: u64, unit: Unit, style: Option<NumericOnly>) -> String {
    #[allow(clippy::cast_precision_loss)]
    let n = SizeNumber(bytes as f64 / unit.bytes as f64);
    match style {
        None => format!("{n} {}s", unit.long),
        Some(NumericOnly::Plain) => format!("{n}"),
        Some(NumericOnly::Short) => format!("{n}{}", unit.letter),
        Some(NumericOnly::Long) => format!("{n}{}s", unit.long),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(b: &str, s: &str, m: u64) -> Estimate {
        Estimate::new(parse_size(b).unwrap(), parse_size(s).unwrap(), m).unwrap()
    }

    #[test]
    fn spec_examples_give_upstream_numbers() {
        let e = est("128", "2097152", 1);
        assert_eq!(
            format_size(e.metadata_bytes(), SECTOR, None),
            "1064 sectors"
        );
        let e = est("64k", "1t", 1000);
        let m = parse_unit("m").unwrap();
        assert_eq!(
            format_size(e.metadata_bytes(), m, Some(NumericOnly::Short)),
            "524.04m"
        );
        let g = parse_unit("g").unwrap();
        assert_eq!(
            format_size(e.metadata_bytes(), g, None),
            "0.5117568969726563 gibibytes"
        );
        let e = est("64k", "1p", 1);
        let big_g = parse_unit("G").unwrap();
        assert_eq!(
            format_size(e.metadata_bytes(), big_g, None),
            "17.05 gigabytes"
        );
        let e = est("65536b", "1073741824b", 10);
        assert_eq!(
            format_size(e.metadata_bytes(), SECTOR, Some(NumericOnly::Plain)),
            "1136"
        );
    }

    #[test]
    fn small_values_never_use_exponents() {
        assert_eq!(SizeNumber(0.000_000_061_44).to_string(), "0.00000006144");
        assert_eq!(SizeNumber(1064.0).to_string(), "1064");
        assert_eq!(SizeNumber(15.875).to_string(), "15.88");
    }

    #[test]
    fn the_estimate_is_capped_at_the_kernel_maximum() {
        let e = est("64k", "1e", u64::MAX);
        assert_eq!(e.metadata_blocks(), MAX_METADATA_BLOCKS);
    }

    #[test]
    fn units_are_case_sensitive_and_complete() {
        assert_eq!(parse_unit("KiB").unwrap().bytes, 1024);
        assert_eq!(parse_unit("kB").unwrap().bytes, 1000);
        assert_eq!(parse_unit("kib"), Err(SizeError::BadUnit));
        assert_eq!(parse_unit("TiB").unwrap().long, "tebibyte");
        assert_eq!(parse_size("16e"), Err(SizeError::OutOfBounds));
        assert_eq!(parse_size("15e").unwrap(), 15 << 60);
    }

    #[test]
    fn invalid_block_sizes_are_rejected_in_order() {
        assert_eq!(
            Estimate::new(0, 1 << 30, 1),
            Err(EstimateError::BlockSizeGranularity)
        );
        assert_eq!(
            Estimate::new(65_537, 1 << 30, 1),
            Err(EstimateError::BlockSizeGranularity)
        );
        assert_eq!(
            Estimate::new(2 << 30, 4 << 30, 1),
            Err(EstimateError::BlockSizeTooLarge)
        );
        assert_eq!(
            Estimate::new(1 << 20, 1 << 19, 1),
            Err(EstimateError::PoolTooSmall)
        );
    }
}
