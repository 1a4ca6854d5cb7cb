//! The mount's session with the metadata service: the opens it makes are held by a
//! session it renews while it runs, so that if the mount dies (kill -9, a lost host)
//! its opens end with the lease and an unlinked file it had open is removed.

use std::sync::Arc;
use std::time::Duration;

use hive_wire::net::meta::{MetaCall, MetaOp};

use super::volume::{FsError, Result, SYSTEM, Volume};
use crate::errno;

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
    /// Renews the session (or with `start` starts it), answered within a renewal
    /// period: a call stuck on a lost connection (the metadata node restarted) must
    /// not outlast the lease the next attempt could save, and its timeout drops that
    /// connection for every later call.
    async fn renew(&self, start: bool) -> Result<()> {
        let op = MetaOp::RenewSession {
            session: self.session,
            ttl_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            start,
        };
        self.call_within(SYSTEM, MetaCall::Apply(op), self.renewal_period())
            .await
            .map(|_| ())
    }

    /// Time between renewals, and the most one may take.
    fn renewal_period(&self) -> Duration {
        self.lease / RENEWALS_PER_LEASE
    }

    /// Starts the session and keeps renewing it in the background.
    pub async fn start_session(self: &Arc<Self>) -> Result<()> {
        self.renew(true).await?;
        let volume = Arc::downgrade(self);
        let every = self.renewal_period();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut failing = false;
            loop {
                ticker.tick().await;
                let Some(volume) = volume.upgrade() else {
                    return;
                };
                // Connecting counts too: within one renewal period.
                let renewed = match tokio::time::timeout(every, volume.renew(false)).await {
                    Ok(result) => result,
                    Err(_) => Err(FsError::Io(format!("no answer within {every:?}"))),
                };
                match renewed {
                    Ok(()) if failing => {
                        eprintln!("hive mount: the session is renewed again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(FsError::Errno(errno::ENOENT)) => volume.session_lost().await,
                    Err(e) if !failing => {
                        eprintln!("hive mount: renewing the session failed (will retry): {e:?}");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(())
    }

    /// The cluster ended this mount's session (not renewed within its lease): every
    /// open it held was released, and a file unlinked while open here may be gone.
    /// Says so, starts the session again and opens again what is open here.
    async fn session_lost(&self) {
        eprintln!(
            "hive mount: the cluster ended this mount's session (not renewed within its lease of {:?}): the opens it held were released",
            self.lease
        );
        if let Err(e) = self.renew(true).await {
            eprintln!("hive mount: starting the session again failed (will retry): {e:?}");
            return;
        }
        let (mut reopened, mut lost) = (0u32, Vec::new());
        for (ino, state) in self.files_snapshot() {
            let handles = state.lock().await.handles;
            for _ in 0..handles {
                let op = MetaOp::Open {
                    ino,
                    session: self.session,
                };
                if let Err(e) = self.apply(SYSTEM, op).await {
                    lost.push(format!("inode {ino} ({e:?})"));
                    break;
                }
                reopened += 1;
            }
        }
        eprintln!(
            "hive mount: session started again; {reopened} opens made again{}",
            if lost.is_empty() {
                String::new()
            } else {
                format!(
                    "; files gone meanwhile (unlinked while open here): {}",
                    lost.join(", ")
                )
            }
        );
    }

    /// Ends the session (a clean unmount): its opens are released at once.
    pub async fn end_session(&self) -> Result<()> {
        let op = MetaOp::EndSession {
            session: self.session,
        };
        self.apply(SYSTEM, op).await.map(|_| ())
    }
}
