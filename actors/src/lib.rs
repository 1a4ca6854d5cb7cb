//! The concurrent side of a node: a shard actor per glommio executor owning its store
//! (and its scrub), reached from the tokio side (networking) through bounded channels,
//! the shard service that answers network requests with it, the repairer (census and
//! rebuilding), and the control actors (ractor): the node supervisor, the heartbeater,
//! the map follower and, on one node, the map authority with its membership state
//! machine and the control service.

mod authority;
pub mod census;
pub mod constants;
mod control_service;
pub mod gc;
pub mod group;
mod heartbeat;
pub mod map_file;
pub mod membership;
mod meta_convert;
mod meta_service;
pub mod metrics;
pub mod reclaim;
pub mod repair_plan;
mod repairer;
pub mod reserve;
pub mod scrub;
mod shard_actor;
mod shard_service;
mod shards;
mod supervisor;

pub use authority::{AuthorityArgs, AuthorityMsg, MapAuthority, keep as keep_map_in_group};
pub use control_service::{Authority, control_service, route};
pub use heartbeat::{FollowerArgs, HeartbeatArgs, Heartbeater, MapFollower};
pub use meta_service::{MetaStore, meta_service};
pub use repairer::{RepairArgs, RepairState, run as run_repairer};
#[cfg(feature = "faults")]
pub use shard_actor::ArmedFault;
pub use shard_actor::{
    ActorError, DamageHints, ScrubArgs, ShardActor, ShardActorThread, damage_channel,
};
pub use shard_service::shard_service;
pub use shards::Shards;
pub use supervisor::{Child, NodeSupervisor};
