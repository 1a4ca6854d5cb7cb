//! Newtypes for every identifier, so that a node id can never be passed as a chunk id.
//!
//! Each prints as fixed-width lower-case hex and parses back from it (either case).

use std::fmt;
use std::str::FromStr;

use crate::hex::{HexError, decode_hex, encode_hex};

/// The name of a chunk: the BLAKE3 hash of its uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Width in bytes, on the wire and on disk.
    pub const LEN: usize = 32;

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        encode_hex(&self.0, f)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl FromStr for ChunkId {
    type Err = HexError;

    fn from_str(s: &str) -> Result<Self, HexError> {
        let mut bytes = [0u8; 32];
        decode_hex(s, &mut bytes)?;
        Ok(Self(bytes))
    }
}

/// Declares an integer id newtype that prints and parses as fixed-width big-endian hex
/// (so that the printed form sorts like the number).
macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident($int:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $int);

        impl $name {
            /// The plain integer, for arithmetic and encoding.
            pub const fn get(self) -> $int {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                encode_hex(&self.0.to_be_bytes(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = HexError;

            fn from_str(s: &str) -> Result<Self, HexError> {
                let mut bytes = [0u8; std::mem::size_of::<$int>()];
                decode_hex(s, &mut bytes)?;
                Ok(Self(<$int>::from_be_bytes(bytes)))
            }
        }
    };
}

integer_id!(
    /// A storage node, unique for the life of the cluster and never reused.
    NodeId(u64)
);
integer_id!(
    /// A placement group: chunks hash into one of 2^n groups, and groups map to nodes.
    PgId(u32)
);
integer_id!(
    /// Position of a shard within its chunk: `0..k` are data, `k..k+m` are parity.
    ShardIndex(u8)
);
integer_id!(
    /// Version number of the cluster map; only ever grows.
    Epoch(u64)
);
integer_id!(
    /// A set of nodes that can fail together (a host, a rack, a power feed).
    FailureDomain(u32)
);

/// The name of one stored shard: its chunk, the erasure scheme the chunk was coded with
/// (k data + m parity shards) and its position. The same chunk coded under two schemes
/// gives two sets of shards that share nothing, so the scheme is part of every name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardName {
    /// The chunk.
    pub chunk: ChunkId,
    /// Data shards of the scheme.
    pub k: u8,
    /// Parity shards of the scheme.
    pub m: u8,
    /// Position among the k + m shards.
    pub index: ShardIndex,
}

impl ShardName {
    /// The name that names nothing (all zeros): k is never 0 for a real shard.
    pub const NONE: ShardName = ShardName {
        chunk: ChunkId([0; 32]),
        k: 0,
        m: 0,
        index: ShardIndex(0),
    };
}

impl fmt::Display for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}+{}/{}", self.chunk, self.k, self.m, self.index)
    }
}

impl fmt::Debug for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardName({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_print_fixed_width_hex() {
        assert_eq!(NodeId(0x2a).to_string(), "000000000000002a");
        assert_eq!(PgId(0xbeef).to_string(), "0000beef");
        assert_eq!(ShardIndex(5).to_string(), "05");
        assert_eq!(format!("{:?}", Epoch(1)), "Epoch(0000000000000001)");
        assert_eq!(ChunkId([0xab; 32]).to_string(), "ab".repeat(32));
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(
            "12".parse::<NodeId>(),
            Err(HexError::Length {
                expected: 16,
                got: 2
            })
        );
        assert!(matches!(
            "zz".parse::<ShardIndex>(),
            Err(HexError::Digit { found: 'z', .. })
        ));
    }

    proptest! {
        #[test]
        fn ids_round_trip(n in any::<u64>(), p in any::<u32>(), s in any::<u8>(), c in any::<[u8; 32]>()) {
            prop_assert_eq!(NodeId(n).to_string().parse::<NodeId>(), Ok(NodeId(n)));
            prop_assert_eq!(Epoch(n).to_string().parse::<Epoch>(), Ok(Epoch(n)));
            prop_assert_eq!(PgId(p).to_string().parse::<PgId>(), Ok(PgId(p)));
            prop_assert_eq!(FailureDomain(p).to_string().parse::<FailureDomain>(), Ok(FailureDomain(p)));
            prop_assert_eq!(ShardIndex(s).to_string().parse::<ShardIndex>(), Ok(ShardIndex(s)));
            prop_assert_eq!(ChunkId(c).to_string().parse::<ChunkId>(), Ok(ChunkId(c)));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,70}") {
            let _ = s.parse::<ChunkId>();
            let _ = s.parse::<NodeId>();
        }
    }
}
