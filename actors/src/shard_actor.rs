//! A shard actor: one glommio executor thread that owns a store and serves requests
//! sent from other threads (tokio) through a bounded mailbox. Each request runs as its
//! own task on the executor, so concurrent puts share the store's group commits.

use std::path::PathBuf;
use std::thread::JoinHandle;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hive_nvme::{Stats, Store, StoreError};
use hive_wire::{NodeId, ShardName};

use crate::constants::SHARD_ACTOR_MAILBOX;

type Reply<T> = flume::Sender<Result<T, StoreError>>;

enum Command {
    Put(Bytes, Reply<()>),
    Get(ShardName, Reply<Option<Bytes>>),
    Has(ShardName, Reply<bool>),
    Stats(Reply<Stats>),
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
    ) -> Result<(Self, ShardActorThread), ActorError> {
        let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
        let (mailbox, inbox) = flume::bounded::<Command>(SHARD_ACTOR_MAILBOX);
        let (opened, open_result) = flume::bounded::<Result<(), StoreError>>(1);
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{node}"))
            .spawn(move || async move {
                let store = match Store::open(&path, node).await {
                    Ok(store) => std::rc::Rc::new(store),
                    Err(err) => {
                        let _ = opened.send(Err(err));
                        return;
                    }
                };
                let _ = opened.send(Ok(()));
                while let Ok(command) = inbox.recv_async().await {
                    let store = store.clone();
                    glommio::spawn_local(serve(store, command)).detach();
                }
                // Every handle is gone: let in-flight requests finish, then close.
                if let Ok(store) = std::rc::Rc::try_unwrap(store) {
                    let _ = store.close().await;
                }
            })
            .map_err(|e| ActorError::Executor(e.to_string()))?;
        let thread = ShardActorThread(std::thread::spawn(move || {
            let _ = handle.join();
        }));
        match open_result.recv() {
            Ok(Ok(())) => Ok((Self { mailbox }, thread)),
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
        self.ask(|reply| Command::Put(shard, reply)).await
    }

    /// Reads a verified shard.
    pub async fn get(&self, name: ShardName) -> Result<Option<Bytes>, ActorError> {
        self.ask(|reply| Command::Get(name, reply)).await
    }

    /// Whether a shard is stored.
    pub async fn has(&self, name: ShardName) -> Result<bool, ActorError> {
        self.ask(|reply| Command::Has(name, reply)).await
    }

    /// The store's space accounting.
    pub async fn stats(&self) -> Result<Stats, ActorError> {
        self.ask(Command::Stats).await
    }
}

async fn serve(store: std::rc::Rc<Store>, command: Command) {
    // A caller that stopped waiting has dropped its receiver; nothing to do then.
    match command {
        Command::Put(shard, reply) => {
            let _ = reply.send(store.put(&shard).await);
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
    }
}
