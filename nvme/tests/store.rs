//! The store's behaviour on real files through glommio and io_uring.

mod common;

use common::{NODE, Scratch, format, name, open, run, shard, shard_coded};
use hive_nvme::{Store, StoreError};
use hive_wire::NodeId;

#[test]
fn put_get_delete_and_reopen() {
    let dir = Scratch::new("basic");
    let path = dir.path("store");
    format(&path, 64 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let shards: Vec<_> = (0..40)
            .map(|i| shard(i, 1000 + i as usize * 3000))
            .collect();
        for (_, _, bytes) in &shards {
            store.put(bytes).await.expect("put");
        }
        for (chunk, index, bytes) in &shards {
            assert!(store.has(name(*chunk, *index)).is_some());
            let got = store
                .get(name(*chunk, *index))
                .await
                .expect("get")
                .expect("present");
            assert_eq!(&got[..], &bytes[..]);
        }
        let (gone_chunk, gone_index, _) = shards[3];
        assert!(
            store
                .delete(name(gone_chunk, gone_index))
                .await
                .expect("delete")
        );
        assert!(
            !store
                .delete(name(gone_chunk, gone_index))
                .await
                .expect("second delete")
        );
        assert!(
            store
                .get(name(gone_chunk, gone_index))
                .await
                .expect("get")
                .is_none()
        );
        // Putting the same shard twice stores it once (reading the stored copy to
        // compare).
        let before = store.stats();
        store.put(&shards[0].2).await.expect("put again");
        let reads = before.reads + 1;
        assert_eq!(store.stats(), hive_nvme::Stats { reads, ..before });
        store.close().await.expect("close");

        let store = open(&path).await;
        assert_eq!(store.stats().shards, 39);
        for (i, (chunk, index, bytes)) in shards.iter().enumerate() {
            let got = store.get(name(*chunk, *index)).await.expect("get");
            if i == 3 {
                assert!(got.is_none(), "a delete must survive reopening");
            } else {
                assert_eq!(&got.expect("present")[..], &bytes[..]);
            }
        }
    });
}

#[test]
fn one_chunk_under_two_schemes_is_two_shards() {
    // The same bytes coded 4+2 and 2+1: shard 0 of each differs, and neither may stand
    // in for the other (a dedup answer, a read, a delete), before or after reopening.
    let dir = Scratch::new("schemes");
    let path = dir.path("store");
    format(&path, 16 << 20, 1 << 20);
    run(move || async move {
        let (wide, wide_bytes) = shard_coded(5, 30_000, 4, 2, 0);
        let (narrow, narrow_bytes) = shard_coded(5, 30_000, 2, 1, 0);
        assert_eq!(wide.chunk, narrow.chunk);
        assert_ne!(wide_bytes, narrow_bytes);
        let store = open(&path).await;
        store.put(&wide_bytes).await.expect("put 4+2");
        assert!(
            store.has(wide).is_some() && store.has(narrow).is_none(),
            "4+2 is not 2+1"
        );
        assert!(store.get(narrow).await.expect("get").is_none());
        store.put(&narrow_bytes).await.expect("put 2+1");
        store.close().await.expect("close");
        let store = open(&path).await;
        for (name, bytes) in [(wide, &wide_bytes), (narrow, &narrow_bytes)] {
            let got = store.get(name).await.expect("get").expect("present");
            assert_eq!(&got[..], &bytes[..], "{name}");
        }
        assert!(store.delete(narrow).await.expect("delete"));
        assert!(store.has(wide).is_some() && store.has(narrow).is_none());
    });
}

#[test]
fn a_fresh_store_is_the_first_file_its_executor_opens() {
    // glommio 0.9 probes io_uring polling by reading the first block of the first file
    // an executor opens on a device; on an empty file that probe "succeeds" and every
    // later read fails with EOPNOTSUPP. A new store must be readable when it is that
    // first file, which this test makes sure of by using a fresh executor thread.
    let dir = Scratch::new("first-file");
    let path = dir.path("store");
    format(&path, 8 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let (chunk, index, bytes) = shard(1, 5000);
        store.put(&bytes).await.expect("put");
        let got = store
            .get(name(chunk, index))
            .await
            .expect("read after open must work");
        assert_eq!(&got.expect("present")[..], &bytes[..]);
    });
}

#[test]
fn opening_refuses_foreign_and_unformatted_devices() {
    let dir = Scratch::new("refuse");
    let path = dir.path("store");
    format(&path, 8 << 20, 1 << 20);
    let blank = dir.path("blank");
    std::fs::write(&blank, vec![0u8; 1 << 20]).expect("blank file");
    run(move || async move {
        match Store::open(&path, NodeId(99)).await {
            Err(StoreError::WrongNode {
                found, expected, ..
            }) => {
                assert_eq!((found, expected), (NODE, NodeId(99)));
            }
            other => panic!("expected WrongNode, got {:?}", other.err()),
        }
        let err = Store::open(&blank, NODE).await.err().expect("not a store");
        assert!(err.to_string().contains("is not a HiveFS store"), "{err}");
    });
}

#[test]
fn bad_format_requests_are_refused() {
    let dir = Scratch::new("geometry");
    let path = dir.path("store");
    let mut options = hive_nvme::FormatOptions::new(NODE);
    assert!(
        Store::format(&path, &options).is_err(),
        "a file needs a size"
    );
    options.size = Some(2 << 20);
    let err = Store::format(&path, &options).expect_err("too small");
    assert!(err.to_string().contains("fewer than two"), "{err}");
    options.size = Some(64 << 20);
    options.segment_size = 1000;
    assert!(
        Store::format(&path, &options).is_err(),
        "segment not a multiple of 4 KiB"
    );
}

#[test]
fn a_full_store_says_so_and_stays_consistent() {
    let dir = Scratch::new("full");
    let path = dir.path("store");
    // Not a multiple of the segment size: 3 whole segments and a remainder.
    format(&path, (1 << 20) + 3 * (256 << 10) + 12345, 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        assert_eq!(store.superblock().segment_count, 3);
        let mut stored = Vec::new();
        let mut full = None;
        for seed in 0..1000 {
            let (chunk, index, bytes) = shard(seed, 40_000);
            match store.put(&bytes).await {
                Ok(()) => stored.push((chunk, index, bytes)),
                Err(err) => {
                    full = Some(err);
                    break;
                }
            }
        }
        let err = full.expect("the store fills up");
        assert!(matches!(err, StoreError::StoreFull { .. }), "{err}");
        assert!(err.to_string().contains("store full"), "{err}");
        assert!(stored.len() > 10);
        store.close().await.expect("close");
        let store = open(&path).await;
        for (chunk, index, bytes) in &stored {
            let got = store
                .get(name(*chunk, *index))
                .await
                .expect("get")
                .expect("present");
            assert_eq!(&got[..], &bytes[..]);
        }
    });
}

#[test]
fn puts_not_drawing_on_a_reservation_leave_the_kept_room_alone() {
    let dir = Scratch::new("kept");
    let path = dir.path("store");
    format(&path, (1 << 20) + 8 * (256 << 10), 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let keep = 3 * (256 << 10);
        let mut refused = None;
        for seed in 0..1000 {
            let (_, _, bytes) = shard(seed, 40_000);
            if let Err(err) = store.put_keeping(&bytes, keep).await {
                refused = Some(err);
                break;
            }
        }
        let err = refused.expect("refused before the store fills");
        assert!(matches!(err, StoreError::Reserved { .. }), "{err}");
        assert!(err.to_string().contains("kept for reservations"), "{err}");
        let free = store.stats().free;
        assert!(free >= keep, "{free} bytes free, {keep} kept");
        // A put drawing on the reservation takes the kept room, up to a full store.
        let mut drawn = 0;
        for seed in 1000..2000 {
            let (chunk, index, bytes) = shard(seed, 40_000);
            match store.put(&bytes).await {
                Ok(()) => {
                    drawn += 1;
                    let got = store.get(name(chunk, index)).await.expect("get");
                    assert_eq!(got.as_deref(), Some(&bytes[..]));
                }
                Err(err) => {
                    assert!(matches!(err, StoreError::StoreFull { .. }), "{err}");
                    break;
                }
            }
        }
        assert!(drawn >= 10, "{drawn} shards stored in the kept room");
    });
}

#[test]
fn shards_larger_than_a_segment_are_refused() {
    let dir = Scratch::new("too-large");
    let path = dir.path("store");
    format(&path, 8 << 20, 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let (_, _, bytes) = shard(3, 2 << 20);
        let err = store
            .put(&bytes)
            .await
            .expect_err("512 KiB shard, 256 KiB segments");
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        let err = store.put(b"not a shard").await.expect_err("garbage");
        assert!(matches!(err, StoreError::InvalidShard(_)), "{err}");
    });
}

#[test]
fn concurrent_puts_share_group_commits() {
    let dir = Scratch::new("group");
    let path = dir.path("store");
    format(&path, 64 << 20, 4 << 20);
    run(move || async move {
        let store = std::rc::Rc::new(open(&path).await);
        let tasks: Vec<_> = (0..64)
            .map(|seed| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let (chunk, index, bytes) = shard(seed, 3000);
                    store.put(&bytes).await.expect("put");
                    (chunk, index, bytes)
                })
            })
            .collect();
        for task in tasks {
            let (chunk, index, bytes) = task.await;
            let got = store
                .get(name(chunk, index))
                .await
                .expect("get")
                .expect("present");
            assert_eq!(&got[..], &bytes[..]);
        }
        let stats = store.stats();
        assert_eq!(stats.shards, 64);
        assert!(
            stats.commits < 64,
            "64 concurrent puts took {} commits",
            stats.commits
        );
    });
}

#[test]
fn listing_by_placement_group_matches_the_codec_mapping() {
    let dir = Scratch::new("list-pg");
    let path = dir.path("store");
    format(&path, 64 << 20, 1 << 20);
    run(move || async move {
        let store = open(&path).await;
        let map = hive_codec::ClusterMap::new(hive_wire::Epoch(1), 3, Vec::new()).expect("map");
        let mut expected = std::collections::BTreeMap::<u32, Vec<_>>::new();
        for seed in 0..60 {
            let (chunk, index, bytes) = shard(seed, 2000);
            store.put(&bytes).await.expect("put");
            expected
                .entry(map.pg_of(&chunk).get())
                .or_default()
                .push(name(chunk, index));
        }
        for pg in 0..8u32 {
            let mut want = expected.remove(&pg).unwrap_or_default();
            want.sort_unstable();
            want.dedup();
            assert_eq!(store.list_pg(3, hive_wire::PgId(pg)), want, "group {pg}");
        }
    });
}

#[test]
fn a_store_of_another_format_version_is_refused_by_name() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = Scratch::new("version");
    let path = dir.path("store");
    format(&path, 8 << 20, 1 << 20);
    // Rewrite both superblock copies as version 1 (shard names without their scheme),
    // with valid checksums.
    let mut block = std::fs::read(&path).expect("read")[..4096].to_vec();
    block[8..10].copy_from_slice(&1u16.to_le_bytes());
    let sum = twox_hash::XxHash3_64::oneshot(&block[..72]);
    block[72..80].copy_from_slice(&sum.to_le_bytes());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    for copy in 0..2 {
        file.seek(SeekFrom::Start(copy * 4096)).expect("seek");
        file.write_all(&block).expect("write");
    }
    drop(file);
    run(move || async move {
        let err = Store::open(&path, NODE)
            .await
            .err()
            .expect("version 1 is refused");
        let text = err.to_string();
        assert!(text.contains("format version 1 is not supported"), "{text}");
    });
}

#[test]
fn the_offline_layout_finds_every_shard_on_the_device() {
    let dir = Scratch::new("layout");
    let path = dir.path("store");
    format(&path, 32 << 20, 1 << 20);
    let items: Vec<_> = (0..40).map(|n| shard(900 + n, 30_000)).collect();
    let stored = items.clone();
    let reader = path.clone();
    run(move || async move {
        let store = open(&reader).await;
        for (_, _, bytes) in &stored {
            store.put(bytes).await.expect("put");
        }
        let (chunk, index, _) = stored[7];
        assert!(store.delete(name(chunk, index)).await.expect("delete"));
        // Left open (not closed): the head segment has no summary yet.
        std::mem::forget(store);
    });
    let found = hive_nvme::layout::shards(&path).expect("layout");
    assert_eq!(found.len(), 39, "every live shard, the deleted one not");
    let device = std::fs::read(&path).expect("read the store file");
    for loc in &found {
        let (_, _, bytes) = items
            .iter()
            .find(|(c, i, _)| name(*c, *i) == loc.name)
            .expect("a shard that was put");
        let at = loc.shard as usize;
        assert_eq!(&device[at..at + loc.len as usize], &bytes[..]);
    }
}

#[test]
fn small_shards_pack_without_padding_across_commits_and_reopens() {
    // Thousands of small shards, most in commits of their own and some sharing one,
    // over several 256 KiB segments: each takes its record's bytes, not a 4 KiB
    // block, and every one reads back, with one read of the device, before and after
    // reopening (sealed segments from their summaries, the last one record by record,
    // then from the summary the open wrote).
    let seed = 0x5a11;
    let dir = Scratch::new("pack");
    let path = dir.path("store");
    format(&path, 16 << 20, 256 << 10);
    run(move || async move {
        let mut rng = hive_testkit::Rng::new(seed);
        let store = std::rc::Rc::new(open(&path).await);
        let mut shards = Vec::new();
        let mut record_bytes = 0u64;
        let mut n = 0u64;
        while shards.len() < 3000 {
            // One put alone, or eight at once.
            let together = if rng.below(4) == 0 { 8 } else { 1 };
            let tasks: Vec<_> = (0..together)
                .map(|_| {
                    n += 1;
                    let item = shard(seed + n, 64 + rng.below(2000));
                    let store = store.clone();
                    glommio::spawn_local(async move {
                        store.put(&item.2).await.expect("put");
                        item
                    })
                })
                .collect();
            for task in tasks {
                let item = task.await;
                record_bytes += u64::from(hive_nvme::format::RecordHeader::len_for(item.2.len()));
                shards.push(item);
            }
        }
        let stats = store.stats();
        // Each segment holds its header's block and a summary (56 bytes a record, in
        // whole blocks, one of them its header's), and is more than half full when
        // sealed (records here average some 450 bytes, so a summary takes under
        // 40 KiB).
        let segments = stats.used.div_ceil(128 << 10);
        let summaries = shards.len() as u64 * 56 + segments * 2 * 4096;
        assert!(
            stats.used <= record_bytes + summaries + segments * 4096,
            "seed {seed:#x}: {} bytes used for {record_bytes} bytes of records",
            stats.used
        );
        assert!(
            stats.used < shards.len() as u64 * 1024,
            "seed {seed:#x}: small records share blocks"
        );
        let gone: Vec<_> = shards.iter().step_by(7).map(|s| name(s.0, s.1)).collect();
        assert_eq!(store.delete_many(&gone).await.expect("delete"), gone.len());
        // Every get is one read of the device, wherever the record lies in its blocks.
        let check = |store: std::rc::Rc<Store>, when: &'static str| {
            let shards = &shards;
            async move {
                for (i, (chunk, index, bytes)) in shards.iter().enumerate() {
                    let reads = store.stats().reads;
                    let got = store.get(name(*chunk, *index)).await.expect("get");
                    if i % 7 != 0 {
                        assert_eq!(store.stats().reads, reads + 1, "{when}: shard {i}");
                    }
                    if i % 7 == 0 {
                        assert!(got.is_none(), "seed {seed:#x} {when}: shard {i} deleted");
                    } else {
                        let got =
                            got.unwrap_or_else(|| panic!("seed {seed:#x} {when}: shard {i} lost"));
                        assert_eq!(&got[..], &bytes[..], "seed {seed:#x} {when}: shard {i}");
                    }
                }
            }
        };
        check(store.clone(), "before reopening").await;
        close_last(store).await;
        for when in ["after reopening", "after reopening again"] {
            let store = std::rc::Rc::new(open(&path).await);
            assert!(store.damaged_at_open().is_empty(), "{when}");
            check(store.clone(), when).await;
            close_last(store).await;
        }
    });
}

/// Closes a store through its last handle.
async fn close_last(store: std::rc::Rc<Store>) {
    let store = std::rc::Rc::try_unwrap(store)
        .ok()
        .expect("no other handle");
    store.close().await.expect("close");
}
