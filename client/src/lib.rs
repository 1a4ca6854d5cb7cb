//! The HiveFS client library: chunks across the cluster (`chunk_io`), objects made of
//! chunks (`object`), and the pure decisions of the data path (`quorum`).

pub mod chunk_io;
pub mod object;
pub mod quorum;
