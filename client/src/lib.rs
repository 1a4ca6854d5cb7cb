//! The HiveFS client library. So far: the pure decisions of the data path (when a
//! write is acknowledged, when to hedge a read); the pipelines that drive them over the
//! network come with the data-path issue.

pub mod chunk_io;
pub mod quorum;
