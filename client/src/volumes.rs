//! `hive volume create|list|delete|set`: volume administration through the metadata
//! service, as the cluster directory's admin identity.

use std::path::Path;

use anyhow::{Context, Result, bail};
use hive_codec::ErasureScheme;
use hive_wire::net::meta::{MetaCall, MetaClient, MetaOp, MetaReply, UsageMessage, VolumeMessage};

use crate::errno;
use crate::local_cluster;

/// The classes a volume's chunks are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classes {
    /// The class chunks are written in.
    pub write: ErasureScheme,
    /// While a re-encode runs, the class chunks were written in before.
    pub from: Option<ErasureScheme>,
}

impl Classes {
    /// A volume's classes as the metadata service describes it.
    pub fn of(volume: &VolumeMessage) -> anyhow::Result<Self> {
        let from = match volume.from {
            Some((k, m)) => Some(ErasureScheme::new(k, m)?),
            None => None,
        };
        Ok(Self {
            write: ErasureScheme::new(volume.k, volume.m)?,
            from,
        })
    }
}

/// The volume every namespace starts with, which a mount uses unless told another.
pub const DEFAULT_VOLUME: &str = "default";

fn call(dir: &Path, call: MetaCall) -> Result<MetaReply> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let _entered = runtime.enter();
    let meta = local_cluster::meta_client(dir, true)?;
    runtime
        .block_on(meta.call("", 0, 0, call))
        .with_context(|| format!("the metadata service at {}", meta.addr()))
}

/// Creates volume `name` with storage class k + m (default: the cluster's).
pub fn create(dir: &Path, name: &str, k: Option<u8>, m: Option<u8>) -> Result<()> {
    let cluster = local_cluster::scheme(dir)?;
    let (k, m) = (k.unwrap_or(cluster.k()), m.unwrap_or(cluster.m()));
    let scheme = ErasureScheme::new(k, m).with_context(|| format!("--k {k} --m {m}"))?;
    local_cluster::check_fits(dir, scheme).with_context(|| format!("--k {k} --m {m}"))?;
    let op = MetaOp::CreateVolume {
        name: name.as_bytes().to_vec(),
        k,
        m,
    };
    match call(dir, MetaCall::Apply(op))? {
        MetaReply::Attr(_) | MetaReply::Done => Ok(()),
        MetaReply::Errno(errno::EEXIST) => bail!("volume {name:?} exists already"),
        MetaReply::Errno(errno::EINVAL) => bail!(
            "{name:?} is not a valid volume name (1 to 64 bytes, no '/', no NUL, not '.' or '..')"
        ),
        MetaReply::Errno(errno::ENAMETOOLONG) => bail!("volume name {name:?} is too long"),
        MetaReply::Errno(e) => bail!("creating volume {name:?} failed with errno {e}"),
        other => bail!("creating volume {name:?}: unexpected answer {other:?}"),
    }
}

/// Every volume.
pub fn list(dir: &Path) -> Result<Vec<VolumeMessage>> {
    volumes_of(call(dir, MetaCall::ListVolumes)?)
}

/// The volumes a `ListVolumes` answer names.
fn volumes_of(reply: MetaReply) -> Result<Vec<VolumeMessage>> {
    match reply {
        MetaReply::Volumes(volumes) => Ok(volumes),
        other => bail!("listing volumes: unexpected answer {other:?}"),
    }
}

/// Volume `name`, asked through `meta` (an admin client).
pub async fn find(meta: &MetaClient, name: &str) -> Result<VolumeMessage> {
    let reply = meta.call("", 0, 0, MetaCall::ListVolumes).await?;
    match volumes_of(reply)?.into_iter().find(|v| v.name == name) {
        Some(volume) => Ok(volume),
        None => bail!("no volume named {name:?}"),
    }
}

/// Deletes volume `name`: refused while it holds anything, unless `force`.
pub fn delete(dir: &Path, name: &str, force: bool) -> Result<()> {
    let op = MetaOp::DeleteVolume {
        name: name.as_bytes().to_vec(),
        force,
    };
    match call(dir, MetaCall::Apply(op))? {
        MetaReply::Done | MetaReply::Attr(_) => Ok(()),
        MetaReply::Errno(errno::ENOENT) => bail!("no volume named {name:?}"),
        MetaReply::Errno(errno::ENOTEMPTY) => {
            bail!("volume {name:?} is not empty; delete its files first, or pass --force")
        }
        MetaReply::Errno(errno::EPERM) => bail!("the default volume cannot be deleted"),
        MetaReply::Errno(e) => bail!("deleting volume {name:?} failed with errno {e}"),
        other => bail!("deleting volume {name:?}: unexpected answer {other:?}"),
    }
}

/// Sets volume `name`'s quota; a limit not given stays as it is (0: no limit). The
/// usage and limits after.
pub fn set_quota(
    dir: &Path,
    name: &str,
    max_bytes: Option<u64>,
    max_files: Option<u64>,
) -> Result<UsageMessage> {
    if max_bytes.is_none() && max_files.is_none() {
        bail!("give --max-bytes, --max-files or both");
    }
    let Some(volume) = list(dir)?.into_iter().find(|v| v.name == name) else {
        bail!("no volume named {name:?}");
    };
    let op = MetaOp::SetQuota {
        name: name.as_bytes().to_vec(),
        max_bytes: max_bytes.unwrap_or(volume.usage.max_bytes),
        max_files: max_files.unwrap_or(volume.usage.max_files),
    };
    match call(dir, MetaCall::Apply(op))? {
        MetaReply::Done => {}
        MetaReply::Errno(errno::ENOENT) => bail!("no volume named {name:?}"),
        MetaReply::Errno(e) => bail!("setting the quota of volume {name:?} failed with errno {e}"),
        other => bail!("setting the quota of volume {name:?}: unexpected answer {other:?}"),
    }
    match list(dir)?.into_iter().find(|v| v.name == name) {
        Some(v) => Ok(v.usage),
        None => bail!("volume {name:?} went away meanwhile"),
    }
}

/// A volume's usage against its quota, in words.
pub fn quota_text(u: &UsageMessage) -> String {
    let limit = |used: String, max: u64, shown: String| {
        if max == 0 {
            format!("{used} (no limit)")
        } else {
            format!("{used} of {shown}")
        }
    };
    format!(
        "{} bytes, {} files",
        limit(
            local_cluster::bytes(u.bytes),
            u.max_bytes,
            local_cluster::bytes(u.max_bytes)
        ),
        limit(u.files.to_string(), u.max_files, u.max_files.to_string())
    )
}

/// `hive volume list`: a line per volume.
pub fn render_list(volumes: &[VolumeMessage]) -> String {
    let limit = |max: u64, shown: String| if max == 0 { "-".to_string() } else { shown };
    let mut out = format!(
        "{:<24} {:>9} {:>10} {:>6} {:>6} {:>11} {:>11} {:>9} {:>9}\n",
        "NAME", "CLASS", "ROOT", "UID", "GID", "BYTES", "MAX BYTES", "FILES", "MAX FILES"
    );
    for v in volumes {
        let u = &v.usage;
        out += &format!(
            "{:<24} {:>9} {:>10} {:>6} {:>6} {:>11} {:>11} {:>9} {:>9}\n",
            v.name,
            match v.from {
                Some((k, m)) => format!("{k}+{m}>{}+{}", v.k, v.m),
                None => format!("{}+{}", v.k, v.m),
            },
            v.root,
            v.uid,
            v.gid,
            local_cluster::bytes(u.bytes),
            limit(u.max_bytes, local_cluster::bytes(u.max_bytes)),
            u.files,
            limit(u.max_files, u.max_files.to_string()),
        );
    }
    out
}
