//! Codec settings with their defaults and the rules that make them valid.

use std::fmt;
use std::str::FromStr;

use hive_wire::{ChunkId, MAX_DATA_SHARDS, MAX_PARITY_SHARDS, ShardIndex, ShardName};

use crate::error::CodecError;

/// Content-defined chunk size bounds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// No chunk (but a file's last) is shorter.
    pub min: u32,
    /// The size chunks tend towards.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerConfig {
    /// Checks the bounds against each other and against what FastCDC supports.
    pub fn validate(&self) -> Result<(), CodecError> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let check = |field: &'static str, value: u32, lo: usize, hi: usize| {
            let v = value as usize;
            if v < lo || v > hi || !value.is_multiple_of(2) {
                Err(CodecError::InvalidConfig {
                    field,
                    reason: format!("{value} must be an even number in {lo}..={hi}"),
                })
            } else {
                Ok(())
            }
        };
        check("chunk.min", self.min, MINIMUM_MIN, MINIMUM_MAX)?;
        check("chunk.avg", self.avg, AVERAGE_MIN, AVERAGE_MAX)?;
        check("chunk.max", self.max, MAXIMUM_MIN, MAXIMUM_MAX)?;
        if !(self.min <= self.avg && self.avg <= self.max) {
            return Err(CodecError::InvalidConfig {
                field: "chunk",
                reason: format!(
                    "bounds must satisfy min <= avg <= max, got {} / {} / {}",
                    self.min, self.avg, self.max
                ),
            });
        }
        Ok(())
    }
}

/// A fraction `num / den` of a length, kept as integers so every node computes the
/// same threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// Numerator.
    pub num: u32,
    /// Denominator, never zero.
    pub den: u32,
}

impl Fraction {
    /// `ceil(len * num / den)`.
    pub fn of_ceil(&self, len: usize) -> usize {
        let product = len as u128 * u128::from(self.num);
        usize::try_from(product.div_ceil(u128::from(self.den)))
            .expect("invariant: a validated fraction is at most 1, so the result fits")
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl FromStr for Fraction {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, CodecError> {
        let bad = || CodecError::InvalidConfig {
            field: "compression.min_saving",
            reason: format!("{s:?} is not a fraction like 1/32 between 0 and 1"),
        };
        let (num, den) = s.split_once('/').ok_or_else(bad)?;
        let fraction = Self {
            num: num.trim().parse().map_err(|_| bad())?,
            den: den.trim().parse().map_err(|_| bad())?,
        };
        if fraction.den == 0 || fraction.num > fraction.den {
            return Err(bad());
        }
        Ok(fraction)
    }
}

/// When and how hard chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// zstd level; 0 turns compression off.
    pub level: i32,
    /// A chunk is stored compressed only if this fraction of its length is saved.
    pub min_saving: Fraction,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            level: 1,
            min_saving: Fraction { num: 1, den: 32 },
        }
    }
}

impl CompressionConfig {
    /// Compression switched off: every chunk is stored as it is.
    pub fn off() -> Self {
        Self {
            level: 0,
            ..Self::default()
        }
    }

    /// Checks the level and the fraction.
    pub fn validate(&self) -> Result<(), CodecError> {
        let levels = zstd::compression_level_range();
        if self.level != 0 && !levels.contains(&self.level) {
            return Err(CodecError::InvalidConfig {
                field: "compression.level",
                reason: format!(
                    "{} is outside zstd's levels {}..={} (0 turns compression off)",
                    self.level,
                    levels.start(),
                    levels.end()
                ),
            });
        }
        if self.min_saving.den == 0 || self.min_saving.num > self.min_saving.den {
            return Err(CodecError::InvalidConfig {
                field: "compression.min_saving",
                reason: format!("{} is not a fraction between 0 and 1", self.min_saving),
            });
        }
        Ok(())
    }
}

/// k data shards plus m parity shards; any k of the k + m rebuild the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureScheme {
    k: u8,
    m: u8,
}

impl ErasureScheme {
    /// A scheme with 1 <= k <= 32 and 0 <= m <= 16; k = 1 is replication (m + 1 copies).
    pub fn new(k: u8, m: u8) -> Result<Self, CodecError> {
        if !(1..=MAX_DATA_SHARDS).contains(&k) || m > MAX_PARITY_SHARDS {
            return Err(CodecError::UnsupportedScheme { k, m });
        }
        Ok(Self { k, m })
    }

    /// Data shards.
    pub fn k(&self) -> u8 {
        self.k
    }

    /// Parity shards.
    pub fn m(&self) -> u8 {
        self.m
    }

    /// All shards: k + m.
    pub fn width(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// The name shard `index` of `chunk` is stored under in this class.
    pub fn shard_name(&self, chunk: ChunkId, index: ShardIndex) -> ShardName {
        ShardName {
            chunk,
            k: self.k,
            m: self.m,
            index,
        }
    }
}

impl fmt::Display for ErasureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

/// Everything the encoder needs besides the erasure scheme, which is per volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecConfig {
    /// Chunk size bounds.
    pub chunker: ChunkerConfig,
    /// Compression policy.
    pub compression: CompressionConfig,
}

impl CodecConfig {
    /// Checks every part.
    pub fn validate(&self) -> Result<(), CodecError> {
        self.chunker.validate()?;
        self.compression.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        CodecConfig::default().validate().expect("defaults");
        assert_eq!(ChunkerConfig::default().avg, 1 << 20);
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad = ChunkerConfig {
            min: 2 << 20,
            ..ChunkerConfig::default()
        };
        let err = bad.validate().expect_err("min above 1 MiB");
        assert!(err.to_string().contains("chunk.min"), "{err}");
        let err = CompressionConfig {
            level: 99,
            ..CompressionConfig::default()
        }
        .validate()
        .expect_err("level 99");
        assert!(err.to_string().contains("compression.level"), "{err}");
        assert!("1/0".parse::<Fraction>().is_err());
        assert!("3/2".parse::<Fraction>().is_err());
        assert_eq!(
            "1/32".parse::<Fraction>().expect("valid"),
            Fraction { num: 1, den: 32 }
        );
        assert!(ErasureScheme::new(0, 1).is_err());
        assert!(ErasureScheme::new(33, 1).is_err());
        assert!(ErasureScheme::new(4, 17).is_err());
        assert_eq!(ErasureScheme::new(32, 16).expect("max").width(), 48);
    }

    #[test]
    fn fraction_rounds_up() {
        let f = Fraction { num: 1, den: 32 };
        assert_eq!(f.of_ceil(0), 0);
        assert_eq!(f.of_ceil(1), 1);
        assert_eq!(f.of_ceil(64), 2);
        assert_eq!(f.of_ceil(65), 3);
    }
}
