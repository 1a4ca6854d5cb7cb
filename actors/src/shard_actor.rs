//! A shard actor: one glommio executor thread that owns a store and serves requests
//! sent from other threads (tokio) through a bounded mailbox. Each request runs as its
//! own task on the executor, so concurrent puts share the store's group commits. The
//! store's scrub runs on the same executor (see [`crate::scrub`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hive_nvme::{GroupKey, Stats, Store, StoreError, UntouchedDelete};
use hive_wire::net::control::ScrubFigures;
use hive_wire::{ChunkId, ChunkSetDigest, EncodingTag, NodeId, ShardName};

use crate::constants::SHARD_ACTOR_MAILBOX;
use crate::reclaim::{self, ReclaimState, SpaceArgs};
use crate::scrub::{self, ScrubOrders, ScrubState};

type Reply<T> = flume::Sender<Result<T, StoreError>>;

enum Command {
    Put(Bytes, u64, Reply<()>),
    Get(ShardName, Reply<Option<Bytes>>),
    Has(ShardName, Reply<Option<EncodingTag>>),
    Stats(Reply<Stats>),
    Digests(u8, Vec<GroupKey>, Reply<Vec<ChunkSetDigest>>),
    List(u8, GroupKey, Option<ChunkId>, usize, Reply<Vec<ChunkId>>),
    Classes(Reply<Vec<((u8, u8), u64)>>),
    Delete(Vec<ShardName>, Duration, Reply<UntouchedDelete>),
    Scan(Option<ShardName>, usize, Reply<Vec<(ShardName, u64)>>),
    #[cfg(feature = "faults")]
    Arm(ArmedFault, Reply<()>),
}

/// A fault a chaos build arms in a running store (feature `faults`).
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmedFault {
    /// The next write to the device fails with EIO.
    FailNextWrite,
    /// The next fdatasync of the device fails with EIO.
    FailNextSync,
}

/// Why the store refuses writes, once it does: set the first time a write or sync
/// fails (the store is poisoned). The node stops on it (fail-stop).
pub(crate) type PoisonAlarm = Arc<tokio::sync::watch::Sender<Option<String>>>;

/// Raises `alarm` if `result` says the store is poisoned.
pub(crate) fn raise_if_poisoned<T>(alarm: &PoisonAlarm, result: &Result<T, StoreError>) {
    if let Err(err @ StoreError::Poisoned { .. }) = result {
        alarm.send_if_modified(|reason| {
            let first = reason.is_none();
            if first {
                *reason = Some(err.to_string());
            }
            first
        });
    }
}

/// Damaged shards named by scrub or found at open, for the repairer.
pub type DamageHints = flume::Receiver<ShardName>;

/// A channel for damaged shard names: [`ScrubArgs::damaged`] sends, the repairer
/// takes. Bounded by [`crate::constants::DAMAGE_HINTS`]; a full one drops names
/// (the census finds those shards anyway).
pub fn damage_channel() -> (flume::Sender<ShardName>, DamageHints) {
    flume::bounded(crate::constants::DAMAGE_HINTS)
}

/// How a node's stores scrub.
#[derive(Clone)]
pub struct ScrubArgs {
    /// How long a background pass takes.
    pub period: Duration,
    /// Where damaged shards are named (a hint for repair).
    pub damaged: flume::Sender<ShardName>,
    /// The node's scrub orders, shared by its stores.
    pub orders: Arc<ScrubOrders>,
}

impl ScrubArgs {
    /// Background passes of `period`, and the receiving end of the damage names (for
    /// the repairer; dropping it only loses the hints).
    pub fn new(period: Duration) -> (Self, DamageHints) {
        let (damaged, hints) = damage_channel();
        let orders = Arc::default();
        (
            Self {
                period,
                damaged,
                orders,
            },
            hints,
        )
    }
}

/// Why an actor could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// The executor thread could not start.
    #[error("starting the shard executor: {0}")]
    Executor(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The actor has stopped.
    #[error("the shard actor has stopped")]
    Stopped,
}

/// A handle to a running shard actor; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ShardActor {
    mailbox: flume::Sender<Command>,
    scrub: Arc<ScrubState>,
    reclaim: Arc<ReclaimState>,
    poison: PoisonAlarm,
}

/// The actor's thread, to join when it stops.
pub struct ShardActorThread(JoinHandle<()>);

impl ShardActorThread {
    /// Waits for the actor to finish: every handle dropped and its store closed.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl ShardActor {
    /// Starts an executor (pinned to `cpu`, or left to the scheduler with `None`: on a
    /// machine running many nodes, pinning them all to one core serialises them) and
    /// opens the store at `path` for `node` on it. Blocks until the store is open (from
    /// async code, call it in `spawn_blocking`).
    pub fn start(
        path: PathBuf,
        node: NodeId,
        cpu: Option<usize>,
        scrub_args: ScrubArgs,
        space_args: SpaceArgs,
    ) -> Result<(Self, ShardActorThread), ActorError> {
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        let (mailbox, inbox) = flume::bounded::<Command>(SHARD_ACTOR_MAILBOX);
        let scrub_state = Arc::new(ScrubState::default());
        let (opened, open_result) = flume::bounded::<Result<(), StoreError>>(1);
        let figures = scrub_state.clone();
        let reclaim_state = Arc::new(ReclaimState::default());
        let reclaimed = reclaim_state.clone();
        let poison = PoisonAlarm::new(tokio::sync::watch::Sender::new(None));
        let alarm = poison.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{node}"))
            .spawn(move || async move {
                let store = match Store::open(&path, node).await {
                    Ok(store) => {
                        store.set_touch_window(space_args.grace);
                        std::rc::Rc::new(store)
                    }
                    Err(err) => {
                        let _ = opened.send(Err(err));
                        return;
                    }
                };
                for damaged in store.damaged_at_open() {
                    tracing::warn!(
                        "store {}: shard {} damaged (segment {} offset {}): {}",
                        path.display(),
                        damaged.name,
                        damaged.segment,
                        damaged.offset,
                        damaged.reason
                    );
                    let _ = scrub_args.damaged.try_send(damaged.name);
                }
                let _ = opened.send(Ok(()));
                let scrubbing = glommio::spawn_local(scrub::run(
                    store.clone(),
                    figures,
                    scrub_args.period,
                    scrub_args.orders,
                    scrub_args.damaged,
                ));
                let reclaiming = glommio::spawn_local(reclaim::run(
                    store.clone(),
                    space_args,
                    reclaimed,
                    alarm.clone(),
                ));
                while let Ok(command) = inbox.recv_async().await {
                    let store = store.clone();
                    glommio::spawn_local(serve(store, command, alarm.clone())).detach();
                }
                // Every handle is gone: stop the scrub and reclaim, let in-flight
                // requests finish, then close.
                scrubbing.cancel().await;
                reclaiming.cancel().await;
                if let Ok(store) = std::rc::Rc::try_unwrap(store) {
                    let _ = store.close().await;
                }
            })
            .map_err(|e| ActorError::Executor(e.to_string()))?;
        let thread = ShardActorThread(std::thread::spawn(move || {
            let _ = handle.join();
        }));
        match open_result.recv() {
            Ok(Ok(())) => Ok((
                Self {
                    mailbox,
                    scrub: scrub_state,
                    reclaim: reclaim_state,
                    poison,
                },
                thread,
            )),
            Ok(Err(err)) => Err(ActorError::Store(err)),
            Err(_) => Err(ActorError::Executor(
                "the executor ended before opening the store".into(),
            )),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ActorError> {
        let (reply, answer) = flume::bounded(1);
        self.mailbox
            .send_async(make(reply))
            .await
            .map_err(|_| ActorError::Stopped)?;
        Ok(answer
            .recv_async()
            .await
            .map_err(|_| ActorError::Stopped)??)
    }

    /// Stores a shard; returns when it is durable.
    pub async fn put(&self, shard: Bytes) -> Result<(), ActorError> {
        self.put_keeping(shard, 0).await
    }

    /// [`ShardActor::put`], refused if storing the shard would leave less than `keep`
    /// bytes free (see `Store::put_keeping`).
    pub async fn put_keeping(&self, shard: Bytes, keep: u64) -> Result<(), ActorError> {
        self.ask(|reply| Command::Put(shard, keep, reply)).await
    }

    /// Reads a verified shard.
    pub async fn get(&self, name: ShardName) -> Result<Option<Bytes>, ActorError> {
        self.ask(|reply| Command::Get(name, reply)).await
    }

    /// The encoding of a shard, if it is stored.
    pub async fn has(&self, name: ShardName) -> Result<Option<EncodingTag>, ActorError> {
        self.ask(|reply| Command::Has(name, reply)).await
    }

    /// The store's space accounting.
    pub async fn stats(&self) -> Result<Stats, ActorError> {
        self.ask(Command::Stats).await
    }

    /// Digests of the store's shards in `groups` (see `Store::digests`).
    pub async fn digests(
        &self,
        pg_bits: u8,
        groups: Vec<GroupKey>,
    ) -> Result<Vec<ChunkSetDigest>, ActorError> {
        self.ask(|reply| Command::Digests(pg_bits, groups, reply))
            .await
    }

    /// A page of one group's chunks (see `Store::list_group`).
    pub async fn list(
        &self,
        pg_bits: u8,
        group: GroupKey,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<ChunkId>, ActorError> {
        self.ask(|reply| Command::List(pg_bits, group, after, limit, reply))
            .await
    }

    /// Garbage collection's delete: see `Store::delete_untouched`.
    pub async fn delete_untouched(
        &self,
        names: Vec<ShardName>,
        age: Duration,
    ) -> Result<UntouchedDelete, ActorError> {
        self.ask(|reply| Command::Delete(names, age, reply)).await
    }

    /// A page of the store's shards (see `Store::scan`).
    pub async fn scan(
        &self,
        after: Option<ShardName>,
        limit: usize,
    ) -> Result<Vec<(ShardName, u64)>, ActorError> {
        self.ask(|reply| Command::Scan(after, limit, reply)).await
    }

    /// The storage classes the store holds shards of, with counts.
    pub async fn classes(&self) -> Result<Vec<((u8, u8), u64)>, ActorError> {
        self.ask(Command::Classes).await
    }

    /// The store's scrub figures.
    pub fn scrub_figures(&self) -> ScrubFigures {
        self.scrub.figures()
    }

    /// Segments the store's reclaim freed and shard bytes it rewrote.
    pub fn reclaim_figures(&self) -> (u64, u64) {
        self.reclaim.figures()
    }

    /// Why the store refuses writes, once a write or sync of it has failed (`None`
    /// until then): watch it to stop the node.
    pub fn poisoned(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.poison.subscribe()
    }

    /// Arms `fault` on the store (a chaos build).
    #[cfg(feature = "faults")]
    pub async fn arm(&self, fault: ArmedFault) -> Result<(), ActorError> {
        self.ask(|reply| Command::Arm(fault, reply)).await
    }
}

async fn serve(store: std::rc::Rc<Store>, command: Command, poison: PoisonAlarm) {
    // A caller that stopped waiting has dropped its receiver; nothing to do then.
    match command {
        Command::Put(shard, keep, reply) => {
            let result = store.put_keeping(&shard, keep).await;
            raise_if_poisoned(&poison, &result);
            let _ = reply.send(result);
        }
        Command::Get(name, reply) => {
            // The read buffer belongs to this executor; the caller gets a copy.
            let result = store
                .get(name)
                .await
                .map(|found| found.map(|bytes| Bytes::copy_from_slice(&bytes)));
            let _ = reply.send(result);
        }
        Command::Has(name, reply) => {
            let _ = reply.send(Ok(store.has(name)));
        }
        Command::Stats(reply) => {
            let _ = reply.send(Ok(store.stats()));
        }
        Command::Digests(pg_bits, groups, reply) => {
            let _ = reply.send(Ok(store.digests(pg_bits, &groups)));
        }
        Command::List(pg_bits, group, after, limit, reply) => {
            let _ = reply.send(Ok(store.list_group(pg_bits, group, after, limit)));
        }
        Command::Classes(reply) => {
            let _ = reply.send(Ok(store.classes()));
        }
        Command::Scan(after, limit, reply) => {
            let _ = reply.send(Ok(store.scan(after, limit)));
        }
        Command::Delete(names, age, reply) => {
            let result = store.delete_untouched(&names, age).await;
            raise_if_poisoned(&poison, &result);
            let _ = reply.send(result);
        }
        #[cfg(feature = "faults")]
        Command::Arm(fault, reply) => {
            match fault {
                ArmedFault::FailNextWrite => store.faults().fail_next_write(),
                ArmedFault::FailNextSync => store.faults().fail_next_sync(),
            }
            let _ = reply.send(Ok(()));
        }
    }
}
