//! `hive inspect`: what a chunk or a file is made of, and the health of every shard.
//!
//! For a chunk of a storage class, the current map names its k + m holders; each up
//! holder is asked for its shard, which is verified here (checksum, chunk, index) and
//! grouped by encoding. A shard its holder lacks is looked for on the holders of the
//! same index under the placements rebalance has not finished moving from, as reads
//! look for it. The chunk is readable when k intact shards of one encoding exist. For a file, its path is resolved in its volume through the metadata service
//! and each extent's chunk is inspected in the volume's class.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hive_codec::{ClusterView, ErasureScheme, ShardBytes};
use hive_wire::net::Client;
use hive_wire::net::meta::{MetaCall, MetaReply};
use hive_wire::net::shard_service::ShardClient;
use hive_wire::{ChunkId, EncodingTag, NodeId, ShardIndex, ShardName};

use crate::{local_cluster, output};

/// One shard as inspection found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardHealth {
    /// Intact, of this encoding.
    Intact(EncodingTag),
    /// Its holder does not have it.
    Missing,
    /// Its holder has it, and it fails verification.
    Damaged(String),
    /// Its holder is down in the map.
    HolderDown,
    /// Its holder did not answer.
    Unreachable(String),
}

impl std::fmt::Display for ShardHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Intact(tag) => write!(f, "intact (encoding {:08x})", tag.0),
            Self::Missing => write!(f, "MISSING"),
            Self::Damaged(why) => write!(f, "DAMAGED: {why}"),
            Self::HolderDown => write!(f, "unknown (holder down)"),
            Self::Unreachable(why) => write!(f, "unknown (holder unreachable: {why})"),
        }
    }
}

/// A chunk's shards in one class.
#[derive(Debug, Clone)]
pub struct ChunkReport {
    /// The chunk.
    pub chunk: ChunkId,
    /// Its class.
    pub scheme: ErasureScheme,
    /// Shard i: its holder and health.
    pub shards: Vec<(NodeId, ShardHealth)>,
    /// Shard i where its holder lacks it: the past holder (under a placement rebalance
    /// has not finished moving from) that has it, and its health there.
    pub moved: Vec<Option<(NodeId, ShardHealth)>>,
}

impl ChunkReport {
    /// Intact shards of the encoding with the most, on their holders or past ones.
    pub fn healthy(&self) -> usize {
        let mut by_tag: BTreeMap<EncodingTag, usize> = BTreeMap::new();
        for (i, (_, health)) in self.shards.iter().enumerate() {
            let here = matches!(health, ShardHealth::Intact(_)).then_some(health);
            let there = self.moved.get(i).and_then(|m| m.as_ref()).map(|(_, h)| h);
            if let Some(ShardHealth::Intact(tag)) = here.or(there) {
                *by_tag.entry(*tag).or_default() += 1;
            }
        }
        by_tag.values().copied().max().unwrap_or(0)
    }

    /// Whether any holder has anything of the chunk (intact or damaged).
    pub fn found(&self) -> bool {
        let found = |h: &ShardHealth| matches!(h, ShardHealth::Intact(_) | ShardHealth::Damaged(_));
        self.shards.iter().any(|(_, h)| found(h))
            || self.moved.iter().flatten().any(|(_, h)| found(h))
    }

    /// A line for the chunk, then one per shard.
    pub fn render(&self) -> String {
        let (k, width) = (usize::from(self.scheme.k()), self.scheme.width());
        let healthy = self.healthy();
        let verdict = if healthy == width {
            "whole".to_string()
        } else if healthy >= k {
            format!("DEGRADED, {healthy}/{width} intact")
        } else {
            format!("UNREADABLE, {healthy}/{width} intact, {k} needed")
        };
        let mut out = format!("chunk {} ({}): {verdict}\n", self.chunk, self.scheme);
        for (i, (node, health)) in self.shards.iter().enumerate() {
            out += &format!("  shard {i:>2} on node {node}: {health}");
            if let Some((past, there)) = self.moved.get(i).and_then(|m| m.as_ref()) {
                out += &format!("; on node {past} (an earlier placement): {there}");
            }
            out += "\n";
        }
        out
    }
}

/// Inspects `chunk` in `scheme` on the holders `view` names, and a shard its holder
/// lacks on the past holders of its index.
pub async fn chunk(
    client: &Arc<Client>,
    view: &ClusterView,
    chunk: ChunkId,
    scheme: ErasureScheme,
) -> Result<ChunkReport> {
    let homes = view
        .shard_homes(view.map.pg_of(&chunk), scheme.width())
        .with_context(|| format!("placing chunk {chunk} in {scheme}"))?;
    let mut shards = Vec::with_capacity(homes.len());
    let mut moved = Vec::with_capacity(homes.len());
    for (i, homes) in homes.into_iter().enumerate() {
        let index = ShardIndex(u8::try_from(i).expect("invariant: at most 48 shards"));
        let name = scheme.shard_name(chunk, index);
        let Some((&node, past)) = homes.split_first() else {
            continue;
        };
        let health = if view.is_up(node) {
            health_on(client, view, node, name).await
        } else {
            ShardHealth::HolderDown
        };
        let mut found = None;
        if !matches!(health, ShardHealth::Intact(_)) {
            for &old in past.iter().filter(|n| view.may_answer(**n)) {
                let there = health_on(client, view, old, name).await;
                if matches!(there, ShardHealth::Intact(_) | ShardHealth::Damaged(_)) {
                    found = Some((old, there));
                    break;
                }
            }
        }
        shards.push((node, health));
        moved.push(found);
    }
    Ok(ChunkReport {
        chunk,
        scheme,
        shards,
        moved,
    })
}

/// The health of shard `name` on `node`, asked at its address in `view`.
async fn health_on(
    client: &Arc<Client>,
    view: &ClusterView,
    node: NodeId,
    name: ShardName,
) -> ShardHealth {
    match view.addresses.get(&node) {
        None => ShardHealth::Unreachable("no address in the map".into()),
        Some(addr) => {
            let peer = ShardClient::new(client.clone(), *addr, node);
            shard_health(&peer, name).await
        }
    }
}

async fn shard_health(peer: &ShardClient, name: ShardName) -> ShardHealth {
    use hive_wire::net::RpcError;
    use hive_wire::net::rpc::code;
    match peer.get(name).await {
        Ok(None) => ShardHealth::Missing,
        Ok(Some(bytes)) => {
            match ShardBytes::contiguous(&bytes, Some(name.index)).verify(name.chunk) {
                Ok(shard) => ShardHealth::Intact(shard.header.encoding()),
                Err(why) => ShardHealth::Damaged(why.to_string()),
            }
        }
        Err(RpcError::Remote(refusal)) if refusal.code == code::DAMAGED => {
            ShardHealth::Damaged(refusal.message)
        }
        Err(err) => ShardHealth::Unreachable(err.to_string()),
    }
}

/// The map as the authority knows it, and the admin's client.
async fn view_and_client(dir: &Path) -> Result<(ClusterView, Arc<Client>)> {
    let admin = local_cluster::admin(dir)?;
    let status = admin.status().await?;
    Ok((ClusterView::from_message(&status.map)?, admin.client))
}

/// `hive inspect chunk ID [--k K --m M]`: without a class, every class of the map that
/// holds anything of the chunk.
pub fn inspect_chunk(dir: &Path, id: ChunkId, scheme: Option<ErasureScheme>) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let (view, client) = view_and_client(dir).await?;
        let schemes = match scheme {
            Some(s) => vec![s],
            None => view.classes.clone(),
        };
        let single = schemes.len() == 1;
        let mut shown = 0;
        for scheme in &schemes {
            let report = chunk(&client, &view, id, *scheme).await?;
            if single || report.found() {
                output::print(&report.render());
                shown += 1;
            }
        }
        if shown == 0 {
            bail!(
                "chunk {id}: no holder has a shard of it in any class of the map ({})",
                schemes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        anyhow::Ok(())
    })
}

/// `hive inspect file --volume V PATH`: every extent of the file at `path` (from the
/// volume's root) and its chunk's shards.
pub fn inspect_file(dir: &Path, volume: &str, path: &str) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let meta = local_cluster::meta_client(dir, true)?;
        let call = |call: MetaCall| meta.call(volume, 0, 0, call);
        let mounted = match call(MetaCall::Mount).await? {
            MetaReply::Mounted(v) => v,
            MetaReply::Errno(e) => bail!("volume {volume:?}: {}", errno_text(e)),
            other => bail!("volume {volume:?}: unexpected answer {other:?}"),
        };
        let scheme = ErasureScheme::new(mounted.k, mounted.m)?;
        let mut ino = mounted.root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let parent = ino;
            ino = match call(MetaCall::Lookup {
                parent,
                name: part.as_bytes().to_vec(),
            })
            .await?
            {
                MetaReply::Attr(attr) => attr.ino,
                MetaReply::Errno(e) => bail!("{path}: {part}: {}", errno_text(e)),
                other => bail!("{path}: unexpected answer {other:?}"),
            };
        }
        let (attr, inline, extents) = match call(MetaCall::Content { ino }).await? {
            MetaReply::Content {
                attr,
                inline,
                extents,
                ..
            } => (attr, inline, extents),
            MetaReply::Errno(e) => bail!("{path}: {}", errno_text(e)),
            other => bail!("{path}: unexpected answer {other:?}"),
        };
        output::println(&format!(
            "{path} in volume {volume} ({scheme}): inode {ino}, {} bytes, {} extents{}",
            attr.size,
            extents.len(),
            if inline.is_empty() {
                String::new()
            } else {
                format!(", {} bytes inline in its metadata", inline.len())
            }
        ));
        let (view, client) = view_and_client(dir).await?;
        let mut unhealthy = 0;
        for extent in &extents {
            let id = ChunkId(extent.chunk);
            output::println(&format!(
                "extent at {}, {} bytes, chunk offset {}:",
                extent.offset, extent.len, extent.chunk_offset
            ));
            let report = chunk(&client, &view, id, scheme).await?;
            if report.healthy() < scheme.width() {
                unhealthy += 1;
            }
            output::print(&report.render());
        }
        output::println(&format!(
            "{unhealthy} of {} extents' chunks below full health",
            extents.len()
        ));
        anyhow::Ok(())
    })
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}
