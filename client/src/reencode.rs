//! `hive volume set V --k K --m M`: a volume's storage class changed while mounts read
//! and write it.
//!
//! 1. `SetVolumeClass` makes the volume write K + M at once and remember its old class
//!    as the one re-encoded from. From then on the metadata service refuses a commit
//!    of chunks stored in the old class (ESTALE; the mount stores them again in the new
//!    one), so every chunk of the old class is referenced by an extent that existed
//!    before this step.
//! 2. The volume's chunks are listed page by page (`VolumeChunks`, from the leader,
//!    after step 1), and each one not stored in the new class already is read (from
//!    the old class) and stored in it, [`REENCODE_PARALLELISM`] at once. Reads keep
//!    working throughout: mounts look in the new class, then the old.
//! 3. With every chunk stored anew, `FinishVolumeClass` forgets the old class; garbage
//!    collection then takes its shards (those no other volume refers to in it).
//!
//! Nothing is remembered between runs but the volume's two classes: a run that stops
//! (killed, or chunks it could not read) leaves the re-encode under way, and running
//! the command again with the same class goes on where the listing finds work.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hive_codec::ErasureScheme;
use hive_wire::ChunkId;
use hive_wire::net::meta::{MetaCall, MetaClient, MetaOp, MetaReply};

use crate::chunk_io::ChunkStore;
use crate::volumes::Classes;
use crate::{errno, local_cluster};

/// Chunks read and stored again at once.
pub const REENCODE_PARALLELISM: usize = 8;

/// What a re-encode did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reencoded {
    /// The class re-encoded from (`None`: the volume was in the class already).
    pub from: Option<(u8, u8)>,
    /// Chunk references listed.
    pub listed: u64,
    /// Chunks read in the old class and stored in the new one.
    pub stored: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Chunks found in the new class already (written since, shared, or stored by an
    /// earlier run).
    pub present: u64,
}

/// What `hive volume set --k --m` says when it is done.
pub fn render(name: &str, k: u8, m: u8, done: &Reencoded) -> String {
    match done.from {
        None => format!("volume {name:?} is in class {k}+{m} already"),
        Some((old_k, old_m)) => format!(
            "volume {name:?} re-encoded from {old_k}+{old_m} into {k}+{m}: {} chunk references, \
             {} chunks stored anew ({}), {} there already; the old class's shards go at the \
             next garbage collection",
            done.listed,
            done.stored,
            local_cluster::bytes(done.bytes),
            done.present
        ),
    }
}

/// Re-encodes volume `name` into class k + m (see the module's text), with a progress
/// line unless `quiet`.
pub fn reencode(dir: &Path, name: &str, k: u8, m: u8, quiet: bool) -> Result<Reencoded> {
    let scheme = ErasureScheme::new(k, m).with_context(|| format!("--k {k} --m {m}"))?;
    local_cluster::check_fits(dir, scheme).with_context(|| format!("--k {k} --m {m}"))?;
    let runtime = local_cluster::runtime()?;
    let _entered = runtime.enter();
    let admin = local_cluster::meta_client(dir, true)?;
    runtime.block_on(async {
        begin(&admin, name, scheme).await?;
        let volume = crate::volumes::find(&admin, name).await?;
        let classes = Classes::of(&volume).with_context(|| format!("volume {name:?}"))?;
        let Some(old) = classes.from else {
            return Ok(Reencoded::default());
        };
        let (_, connector) = local_cluster::connect_mount(dir)?;
        let (chunks, _control) = connector.chunk_store(scheme).await?;
        let mut done = copy_all(&admin, &chunks, name, old, scheme, quiet).await?;
        done.from = Some((old.k(), old.m()));
        finish(&admin, name, scheme).await?;
        Ok(done)
    })
}

/// Step 1: the volume writes `scheme` from now on.
async fn begin(admin: &MetaClient, name: &str, scheme: ErasureScheme) -> Result<()> {
    let op = MetaOp::SetVolumeClass {
        name: name.as_bytes().to_vec(),
        k: scheme.k(),
        m: scheme.m(),
    };
    match admin.call("", 0, 0, MetaCall::Apply(op)).await? {
        MetaReply::Done => Ok(()),
        MetaReply::Errno(errno::ENOENT) => bail!("no volume named {name:?}"),
        MetaReply::Errno(errno::EINVAL) => bail!("class {scheme} is out of range"),
        MetaReply::Errno(errno::EBUSY) => {
            let volume = crate::volumes::find(admin, name).await?;
            bail!(
                "volume {name:?} is being re-encoded into {}+{} already: run 'hive volume set \
                 --k {} --m {}' to finish that first",
                volume.k,
                volume.m,
                volume.k,
                volume.m
            )
        }
        other => bail!("changing volume {name:?}'s class: unexpected answer {other:?}"),
    }
}

/// Step 3: the old class is forgotten.
async fn finish(admin: &MetaClient, name: &str, scheme: ErasureScheme) -> Result<()> {
    let op = MetaOp::FinishVolumeClass {
        name: name.as_bytes().to_vec(),
        k: scheme.k(),
        m: scheme.m(),
    };
    match admin.call("", 0, 0, MetaCall::Apply(op)).await? {
        MetaReply::Done => Ok(()),
        MetaReply::Errno(errno::ESTALE) => {
            bail!("volume {name:?}'s class changed while it was re-encoded into {scheme}")
        }
        MetaReply::Errno(e) => bail!("finishing volume {name:?}'s re-encode: errno {e}"),
        other => bail!("finishing volume {name:?}'s re-encode: unexpected answer {other:?}"),
    }
}

/// Step 2: every chunk the volume's files refer to stored in `new`.
async fn copy_all(
    admin: &MetaClient,
    chunks: &Arc<ChunkStore>,
    name: &str,
    old: ErasureScheme,
    new: ErasureScheme,
    quiet: bool,
) -> Result<Reencoded> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("re-encode {spinner} {msg}")
            .expect("invariant: a valid template"),
    );
    let mut done = Reencoded::default();
    let mut failed = Vec::new();
    let mut after = Vec::new();
    loop {
        let (page, next) = match admin
            .call(name, 0, 0, MetaCall::VolumeChunks { after })
            .await?
        {
            MetaReply::Chunks { chunks, next } => (chunks, next),
            MetaReply::Errno(e) => bail!("listing volume {name:?}'s chunks: errno {e}"),
            other => bail!("listing volume {name:?}'s chunks: unexpected answer {other:?}"),
        };
        done.listed += page.len() as u64;
        let mut ids: Vec<ChunkId> = page.into_iter().map(ChunkId).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut running = tokio::task::JoinSet::new();
        let mut pending = ids.into_iter();
        loop {
            while running.len() < REENCODE_PARALLELISM {
                let Some(id) = pending.next() else { break };
                let chunks = chunks.clone();
                running.spawn(async move { (id, store_anew(&chunks, id, old, new).await) });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined.context("a re-encode task")? {
                (_, Ok(None)) => done.present += 1,
                (_, Ok(Some(bytes))) => {
                    done.stored += 1;
                    done.bytes += bytes;
                }
                (id, Err(e)) => failed.push(format!("chunk {id}: {e}")),
            }
            bar.set_message(format!(
                "{} chunks stored in {new} ({}), {} there already, {} failed",
                done.stored,
                local_cluster::bytes(done.bytes),
                done.present,
                failed.len()
            ));
        }
        match next {
            Some(cursor) => after = cursor,
            None => break,
        }
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        let shown: Vec<_> = failed.iter().take(5).cloned().collect();
        bail!(
            "{} chunks could not be stored in {new} ({}{}); the re-encode stays under way (reads \
             look in both classes): run the command again once they are readable",
            failed.len(),
            shown.join("; "),
            if failed.len() > shown.len() {
                "; ..."
            } else {
                ""
            }
        );
    }
    Ok(done)
}

/// Stores chunk `id` in class `new` unless it is there already: read from `old` (or
/// from `new`, if it came there meanwhile). Its bytes if it stored them.
async fn store_anew(
    chunks: &Arc<ChunkStore>,
    id: ChunkId,
    old: ErasureScheme,
    new: ErasureScheme,
) -> Result<Option<u64>> {
    if chunks.stored_in(new, id).await {
        return Ok(None);
    }
    let data = match chunks.get_in(old, id).await {
        Ok(data) => data,
        Err(e) => chunks
            .get_in(new, id)
            .await
            .map_err(|_| e)
            .with_context(|| format!("reading it in {old}"))?,
    };
    chunks
        .put_in(new, &data, false)
        .await
        .with_context(|| format!("storing it in {new}"))?;
    Ok(Some(data.len() as u64))
}
