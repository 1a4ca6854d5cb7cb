//! `hive gc`: orders a garbage collection round and follows it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hive_wire::net::gc::{GcRound, GcStatus, phase};

use crate::local_cluster::{self, bytes};

/// How often `--wait` looks at the round.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// `hive gc [--dry-run] [--wait]`.
pub fn gc(dir: &Path, dry_run: bool, wait: bool) -> Result<()> {
    local_cluster::runtime()?.block_on(async {
        let gc = local_cluster::gc_client(dir).await?;
        let asking = || {
            format!(
                "asking the metadata node ({}) for garbage collection",
                dir.display()
            )
        };
        let before = gc.status().await.with_context(asking)?;
        let round = gc.start(dry_run).await.with_context(asking)?;
        crate::outln!(
            "garbage collection round {round}{} ordered (grace {}; rounds also start every {})",
            if dry_run { " (dry run)" } else { "" },
            seconds(before.grace_ms),
            seconds(before.interval_ms),
        );
        if !wait {
            if let Some(last) = &before.last {
                crate::output::print(&format!("the last round:\n{}", render(last, &before)));
            }
            return Ok(());
        }
        let done = follow(&gc, round).await?;
        crate::output::print(&render(&done.0, &done.1));
        if done.0.phase == phase::FAILED {
            bail!("garbage collection round {} failed", done.0.round);
        }
        Ok(())
    })
}

/// Waits for round `round` to finish, with a progress bar over the nodes it sweeps.
async fn follow(gc: &hive_wire::net::gc::GcClient, round: u64) -> Result<(GcRound, GcStatus)> {
    let bar = indicatif::ProgressBar::new(1_000_000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("gc {bar:40} {percent:>3}% {msg}")
            .expect("invariant: a valid template"),
    );
    loop {
        let status = gc.status().await.context("following the round")?;
        if let Some(last) = status.last.clone().filter(|l| l.round >= round) {
            bar.finish_and_clear();
            return Ok((last, status));
        }
        if status.issued < round {
            bar.finish_and_clear();
            bail!("the metadata node restarted before round {round} finished; run 'hive gc' again");
        }
        match status.current.as_ref().filter(|c| c.round == round) {
            Some(now) if now.phase == phase::SWEEPING && now.nodes > 0 => {
                let swept =
                    u64::from(now.nodes_swept) * 1_000_000 + u64::from(now.node_progress_ppm);
                bar.set_position(swept / u64::from(now.nodes));
                bar.set_message(format!(
                    "sweeping: {} of {} nodes, {} shards scanned, {} garbage, {} deleted",
                    now.nodes_swept,
                    now.nodes,
                    now.scanned_shards,
                    bytes(now.garbage_bytes),
                    bytes(now.deleted_bytes)
                ));
            }
            Some(_) => bar.set_message("marking the chunks files and objects use"),
            None => bar.set_message("waiting for the round before it"),
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

fn seconds(ms: u64) -> String {
    hive_wire::units::format_duration(Duration::from_millis(ms))
}

/// A round's report.
pub fn render(r: &GcRound, status: &GcStatus) -> String {
    let state = match r.phase {
        phase::DONE => "done",
        phase::FAILED => "FAILED",
        _ => "running",
    };
    let mut out = format!(
        "round {}{} {state} in {:.1}s\n  mark:  {} references ({} mark set)\n  sweep: {} of {} nodes, {} shards ({}) scanned\n",
        r.round,
        if r.dry_run { " (dry run)" } else { "" },
        r.elapsed_ms as f64 / 1000.0,
        r.references,
        bytes(r.mark_bytes),
        r.nodes_swept,
        r.nodes,
        r.scanned_shards,
        bytes(r.scanned_bytes),
    );
    if r.dry_run {
        out.push_str(&format!(
            "  garbage: {} shards ({}) of chunks nothing refers to; a round deletes those not written or deduplicated against within the {} grace\n",
            r.garbage_shards,
            bytes(r.garbage_bytes),
            seconds(status.grace_ms)
        ));
    } else {
        out.push_str(&format!(
            "  garbage: {} shards ({}); deleted {} shards ({}), which reclaim frees; {} kept as written or deduplicated against within the {} grace (a later round takes them)\n",
            r.garbage_shards,
            bytes(r.garbage_bytes),
            r.deleted_shards,
            bytes(r.deleted_bytes),
            r.kept_touched,
            seconds(status.grace_ms)
        ));
    }
    for problem in &r.problems {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    out
}
