//! Injected faults: failed writes and syncs, power cuts, torn, flipped and misdirected
//! writes. Each must be detected, and nothing acknowledged may be lost.

mod common;

use common::{Scratch, format, name, open, run, shard};
use hive_nvme::StoreError;
use hive_testkit::Rng;

#[test]
fn a_failed_fsync_poisons_writes_but_not_reads() {
    let dir = Scratch::new("poison");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let (a_chunk, a_index, a) = shard(1, 9000);
        store.put(&a).await.expect("put before the fault");
        store.faults().fail_next_sync();
        let err = store
            .put(&shard(2, 9000).2)
            .await
            .expect_err("the sync fails");
        assert!(
            matches!(
                err,
                StoreError::Poisoned {
                    op: "fdatasync",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("injected fdatasync failure"),
            "{err}"
        );
        // Never retried as if nothing happened: later writes fail with the first cause.
        let again = store
            .put(&shard(3, 100).2)
            .await
            .expect_err("still poisoned");
        assert!(
            again.to_string().contains("injected fdatasync failure"),
            "{again}"
        );
        let err = store
            .delete(name(a_chunk, a_index))
            .await
            .expect_err("deletes are writes");
        assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
        let got = store
            .get(name(a_chunk, a_index))
            .await
            .expect("reads still work");
        assert_eq!(&got.expect("present")[..], &a[..]);
    });
}

#[test]
fn a_failed_write_poisons_too() {
    let dir = Scratch::new("poison-write");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        store.faults().fail_next_write();
        let err = store
            .put(&shard(2, 9000).2)
            .await
            .expect_err("the write fails");
        assert!(
            matches!(err, StoreError::Poisoned { op: "write", .. }),
            "{err}"
        );
    });
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    let seed = 0x9c0de;
    let dir = Scratch::new("power");
    let path = dir.path("store");
    format(&path, 96 << 20, 256 << 10);
    run(move || async move {
        let mut rng = Rng::new(seed);
        let mut acked: Vec<(hive_wire::ChunkId, hive_wire::ShardIndex, Vec<u8>)> = Vec::new();
        let mut next = 0u64;
        for cycle in 0..200 {
            let store = open(&path).await;
            for (chunk, index, bytes) in &acked {
                let got = store.get(name(*chunk, *index)).await.expect("get");
                let got = got.unwrap_or_else(|| {
                    panic!("seed {seed:#x} cycle {cycle}: acknowledged shard lost")
                });
                assert_eq!(&got[..], &bytes[..], "seed {seed:#x} cycle {cycle}");
            }
            store.faults().track_unsynced();
            for _ in 0..1 + rng.below(4) {
                next += 1;
                let (chunk, index, bytes) = shard(next, 500 + rng.below(20_000));
                store.put(&bytes).await.expect("put");
                acked.push((chunk, index, bytes));
            }
            // One write that is never acknowledged (at least 3 blocks, so a torn write
            // of 0..=2 blocks really tears it), then the power fails.
            next += 1;
            let (chunk, index, bytes) = shard(next, 40_000 + rng.below(20_000));
            match rng.below(3) {
                0 => store.faults().fail_next_sync(),
                1 => store.faults().tear_next_write(rng.below(3) as u64),
                _ => store.faults().fail_next_write(),
            }
            assert!(
                store.put(&bytes).await.is_err(),
                "the armed fault must fire"
            );
            store.power_cut().await.expect("power cut");
            drop(store);
            let reopened = open(&path).await;
            if let Some(got) = reopened.get(name(chunk, index)).await.expect("get") {
                assert_eq!(
                    &got[..],
                    &bytes[..],
                    "seed {seed:#x} cycle {cycle}: bad bytes for an unacknowledged shard"
                );
            }
        }
    });
}

#[test]
fn bit_flips_are_detected_by_get_and_scrub() {
    let dir = Scratch::new("flip");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let shards: Vec<_> = (0..6).map(|i| shard(100 + i, 10_000)).collect();
        for (_, _, bytes) in &shards {
            store.put(bytes).await.expect("put");
        }
        // One flip in a payload, one in a record header (records are 88 header bytes,
        // then the 64-byte shard header, then 2,500 payload bytes).
        let (c1, i1, _) = shards[1];
        let (c4, i4, _) = shards[4];
        store
            .flip_stored_bit(name(c1, i1), 1000, 3)
            .await
            .expect("flip");
        store
            .flip_stored_bit(name(c4, i4), 30, 0)
            .await
            .expect("flip");
        for (n, (chunk, index, bytes)) in shards.iter().enumerate() {
            let got = store.get(name(*chunk, *index)).await;
            if n == 1 || n == 4 {
                let err = got.expect_err("damage must be detected");
                let text = err.to_string();
                assert!(
                    text.contains(&chunk.to_string()) && text.contains("segment"),
                    "{text}"
                );
            } else {
                assert_eq!(&got.expect("get").expect("present")[..], &bytes[..]);
            }
        }
        let report = store.scrub(0).await.expect("scrub");
        assert_eq!(report.checked, 6);
        let named: Vec<_> = report.damaged.iter().map(|d| d.name).collect();
        assert_eq!(named.len(), 2, "{report:?}");
        assert!(named.contains(&name(c1, i1)) && named.contains(&name(c4, i4)));
    });
}

#[test]
fn a_torn_write_is_cut_off_at_open() {
    let dir = Scratch::new("torn");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let (a_chunk, a_index, a) = shard(1, 30_000);
        store.put(&a).await.expect("put");
        store.faults().tear_next_write(1);
        let (b_chunk, b_index, b) = shard(2, 30_000);
        store.put(&b).await.expect_err("torn write fails");
        drop(store);
        let store = open(&path).await;
        assert!(
            store
                .get(name(b_chunk, b_index))
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            store.has(name(b_chunk, b_index)).is_none(),
            "a torn shard must not count for dedup"
        );
        assert_eq!(
            &store
                .get(name(a_chunk, a_index))
                .await
                .expect("get")
                .expect("a")[..],
            &a[..]
        );
        // The torn record can be written again.
        store.put(&b).await.expect("put again");
        assert_eq!(
            &store
                .get(name(b_chunk, b_index))
                .await
                .expect("get")
                .expect("b")[..],
            &b[..]
        );
    });
}

#[test]
fn a_misdirected_write_is_detected_by_get_and_scrub() {
    let dir = Scratch::new("misdirect");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let (a_chunk, a_index, a) = shard(1, 5000);
        store.put(&a).await.expect("put");
        store.faults().misdirect_next_write(40);
        let (b_chunk, b_index, b) = shard(2, 5000);
        store.put(&b).await.expect("the drive claims success");
        let err = store
            .get(name(b_chunk, b_index))
            .await
            .expect_err("b is not where it should be");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(
            &store
                .get(name(a_chunk, a_index))
                .await
                .expect("get")
                .expect("a")[..],
            &a[..]
        );
        let report = store.scrub(1 << 30).await.expect("scrub");
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].name, name(b_chunk, b_index));
        let _ = b;
    });
}

#[test]
fn sealed_segments_open_from_their_summary() {
    // Records of a sealed segment are taken from its summary without being read, so
    // damage in one is found by get and scrub (not at open), and the rest of the
    // segment stays indexed either way.
    let dir = Scratch::new("summary");
    let path = dir.path("store");
    format(&path, 16 << 20, 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let items: Vec<_> = (0..30).map(|n| shard(n, 40_000)).collect();
        for (_, _, bytes) in &items {
            store.put(bytes).await.expect("put");
        }
        let (c, i, _) = items[0];
        store
            .flip_stored_bit(name(c, i), 500, 1)
            .await
            .expect("flip");
        store.close().await.expect("close");
        let store = open(&path).await;
        assert!(
            store.damaged_at_open().is_empty(),
            "{:?}",
            store.damaged_at_open()
        );
        assert!(matches!(
            store.get(name(c, i)).await,
            Err(StoreError::Corrupt { .. })
        ));
        for (chunk, index, bytes) in &items[1..] {
            assert_eq!(
                &store
                    .get(name(*chunk, *index))
                    .await
                    .expect("get")
                    .expect("present")[..],
                &bytes[..]
            );
        }
        assert_eq!(store.scrub(0).await.expect("scrub").damaged.len(), 1);
    });
}

#[test]
fn records_after_damage_in_an_unsealed_segment_are_recovered_and_the_damage_reported() {
    // The head segment has no summary when the process dies, so open reads it record
    // by record. A destroyed record header must not hide the records after it, and a
    // record whose contents fail must be named.
    let dir = Scratch::new("unsealed-damage");
    let path = dir.path("store");
    format(&path, 32 << 20, 4 << 20);
    run(move || async move {
        let store = open(&path).await;
        let items: Vec<_> = (0..8).map(|n| shard(300 + n, 20_000)).collect();
        for (_, _, bytes) in &items {
            store.put(bytes).await.expect("put");
        }
        let (c2, i2, _) = items[2];
        let (c5, i5, _) = items[5];
        // Record 2: a payload bit (its header stays intact). Record 5: its record
        // header (bytes 0..88 of the record).
        store
            .flip_stored_bit(name(c2, i2), 2000, 5)
            .await
            .expect("flip");
        store
            .flip_stored_bit(name(c5, i5), 12, 2)
            .await
            .expect("flip");
        // Dropped, not closed: the head segment is left without a summary.
        drop(store);
        let store = open(&path).await;
        for (n, (chunk, index, bytes)) in items.iter().enumerate() {
            let got = store.get(name(*chunk, *index)).await.expect("get");
            if n == 2 || n == 5 {
                assert!(got.is_none(), "damaged record {n} must not be indexed");
                assert!(store.has(name(*chunk, *index)).is_none());
            } else {
                assert_eq!(&got.expect("recovered")[..], &bytes[..], "record {n}");
            }
        }
        let damaged = store.damaged_at_open();
        assert_eq!(damaged.len(), 2, "{damaged:?}");
        assert_eq!(damaged[0].name, name(c2, i2), "{damaged:?}");
        assert!(
            damaged[1].reason.contains("record header destroyed"),
            "{damaged:?}"
        );
        // Opening sealed the segment with the recovered records in its summary: they
        // stay after another open, and the store takes writes.
        store.close().await.expect("close");
        let store = open(&path).await;
        for n in [0, 1, 3, 4, 6, 7] {
            let (chunk, index, bytes) = &items[n];
            let got = store.get(name(*chunk, *index)).await.expect("get");
            assert_eq!(&got.expect("present")[..], &bytes[..], "record {n}");
        }
        store
            .put(&items[5].2)
            .await
            .expect("the lost shard is written again");
        assert!(store.has(name(c5, i5)).is_some());
    });
}

#[test]
fn a_put_over_a_damaged_or_other_encoding_replaces_it() {
    use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
    let dir = Scratch::new("replace");
    let path = dir.path("store");
    format(&path, 32 << 20, 4 << 20);
    run(move || async move {
        let store = open(&path).await;
        // Identical again: nothing written.
        let (chunk, index, bytes) = shard(1, 50_000);
        store.put(&bytes).await.expect("put");
        let commits = store.stats().commits;
        store.put(&bytes).await.expect("put again");
        assert_eq!(store.stats().commits, commits, "an intact copy is kept");
        // Damaged: the next put of the shard writes it anew.
        store
            .flip_stored_bit(name(chunk, index), 3000, 1)
            .await
            .expect("flip");
        store.put(&bytes).await.expect("put over damage");
        assert!(
            store.stats().commits > commits,
            "the damaged copy is replaced"
        );
        let got = store.get(name(chunk, index)).await.expect("get");
        assert_eq!(&got.expect("present")[..], &bytes[..]);

        // Another encoding of the same shard name (another compression policy).
        let text = hive_testkit::text_bytes(5, 200_000);
        let id = chunk_id(&text);
        let scheme = ErasureScheme::new(4, 2).expect("4+2");
        let mut plain = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
        let mut zstd = ChunkEncoder::new(scheme, CompressionConfig::default()).expect("encoder");
        let a = plain.encode(id, &text).expect("encode").shard_to_vec(3);
        let b = zstd.encode(id, &text).expect("encode").shard_to_vec(3);
        let key = name(id, hive_wire::ShardIndex(3));
        store.put(&a).await.expect("put a");
        let tag_a = store.has(key).expect("stored");
        store.put(&b).await.expect("put b");
        let tag_b = store.has(key).expect("stored");
        assert_ne!(tag_a, tag_b, "the index answers the new encoding");
        let got = store.get(key).await.expect("get").expect("present");
        assert_eq!(&got[..], &b[..]);
        // And it survives a reopen, from the summary or the scan.
        store.close().await.expect("close");
        let store = open(&path).await;
        assert_eq!(store.has(key), Some(tag_b));
    });
}
