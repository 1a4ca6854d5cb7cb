//! The HiveFS client library: chunks across the cluster (`chunk_io`), objects made of
//! chunks (`object`), the pure decisions of the data path (`quorum`), cluster
//! directories (`cluster_dir`) and local clusters of `hive-node` processes
//! (`local_cluster`), which the `hive` tool and the benchmark share; the cluster's
//! health on one screen (`status`), what operators do about it (`health`) and what one
//! chunk or file is made of (`inspect`).

pub mod chunk_io;
pub mod cluster_dir;
pub mod errno;
pub mod gc;
pub mod health;
pub mod inspect;
pub mod local_cluster;
pub mod meta_group;
pub mod mount;
pub mod object;
pub mod output;
pub mod quorum;
pub mod reencode;
pub mod status;
pub mod volumes;
