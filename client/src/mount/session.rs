//! The mount's session with the metadata service: the opens it makes are held by a
//! session it renews while it runs, so that if the mount dies (kill -9, a lost host)
//! its opens end with the lease and an unlinked file it had open is removed.

use std::sync::Arc;
use std::time::Duration;

use hive_wire::net::meta::MetaOp;

use super::volume::{Result, SYSTEM, Volume};

/// How long the metadata service keeps a silent mount's opens by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Renewals per lease: a mount renews at a third of its lease, so two renewals may be
/// lost before the lease runs out.
pub const RENEWALS_PER_LEASE: u32 = 3;

/// A session id no other mount will pick: 64 random bits.
pub fn new_session_id() -> std::io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // 0 means "no session".
    Ok(u64::from_le_bytes(bytes).max(1))
}

impl Volume {
    async fn renew(&self) -> Result<()> {
        let op = MetaOp::RenewSession {
            session: self.session,
            ttl_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
        };
        self.apply(SYSTEM, op).await.map(|_| ())
    }

    /// Starts the session and keeps renewing it in the background.
    pub async fn start_session(self: &Arc<Self>) -> Result<()> {
        self.renew().await?;
        let volume = Arc::downgrade(self);
        let every = self.lease / RENEWALS_PER_LEASE;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(volume) = volume.upgrade() else {
                    return;
                };
                if let Err(e) = volume.renew().await {
                    eprintln!("hive mount: renewing the session failed (will retry): {e:?}");
                }
            }
        });
        Ok(())
    }

    /// Ends the session (a clean unmount): its opens are released at once.
    pub async fn end_session(&self) -> Result<()> {
        let op = MetaOp::EndSession {
            session: self.session,
        };
        self.apply(SYSTEM, op).await.map(|_| ())
    }
}
