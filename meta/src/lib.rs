//! HiveFS metadata: the namespace as a deterministic state machine on fjall.
//!
//! [`Namespace::apply`] takes an [`Op`] (with the caller and the time in a
//! [`Context`]) and returns its [`Outcome`] or the POSIX [`Errno`] it fails with; each
//! operation is one transaction. The same operations in the same order always give the
//! same tree, which is what a replicated log needs. Built so far: directories, regular
//! files (attributes only), symlinks, hard links, unlink, rmdir, rename (atomic, over an
//! existing target, across directories), attribute changes; lookups and listings on
//! snapshots.

pub mod acl;
pub mod constants;
pub mod log;
mod namespace;
pub mod records;
mod types;

pub use constants::{
    DEFAULT_VOLUME, EXTENT_PAGE_SPAN, MAX_EXTENTS_PER_COMMIT, MAX_FORCED_DELETE, MAX_INLINE, MAX_K,
    MAX_LINKS, MAX_M, MAX_NAME, MAX_SYMLINK, MAX_VOLUME_NAME, MAX_XATTR_NAME, MAX_XATTR_VALUE,
};
pub use namespace::{Census, DEFAULT_K, DEFAULT_M, Durability, Logged, MetaError, Namespace, Once};
pub use records::VolumeRecord;
pub use types::{
    Attr, Context, Errno, Extent, FileType, InodeId, Nanos, Op, Outcome, RenameMode, Usage,
    XattrMode,
};
