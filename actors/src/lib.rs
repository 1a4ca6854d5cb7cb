//! The concurrent side of a node: a shard actor per glommio executor owning its store,
//! reached from the tokio side (networking) through bounded channels, and the shard
//! service that answers network requests with it.

pub mod constants;
mod shard_actor;
mod shard_service;

pub use shard_actor::{ActorError, ShardActor, ShardActorThread};
pub use shard_service::shard_service;
