//! The per-core shard store: a log of segments on a file or block device, written with
//! O_DIRECT through glommio (io_uring) and made durable by group commit.
//!
//! A store is owned by one glommio executor; nothing in it locks. `put` returns only
//! when the shard is on stable storage; `get` verifies every byte it returns; a failed
//! write or sync poisons the store for writes (reads keep working).

mod commit;
pub mod constants;
mod device;
mod error;
#[cfg(feature = "faults")]
mod faults;
mod index;
pub mod layout;

pub mod format;
mod recovery;
mod state;
mod store;
mod touches;

pub use error::StoreError;
#[cfg(feature = "faults")]
pub use faults::Faults;
pub use store::{
    Damaged, FormatOptions, GroupKey, ReclaimReport, ReclaimStep, ScrubReport, ScrubStep, Scrubber,
    Stats, Store, UntouchedDelete, pg_of,
};
