//! Space reclaim: compaction frees space and loses nothing live, and deletes stay
//! deleted across reopening.

mod common;

use common::{Scratch, format, name, open, run, shard};
use hive_nvme::StoreError;
use hive_testkit::Rng;
use hive_wire::{ChunkId, ShardIndex};

type Item = (ChunkId, ShardIndex, Vec<u8>);

#[test]
fn fill_delete_half_reclaim() {
    let seed = 0x2ec1a;
    let dir = Scratch::new("reclaim");
    let path = dir.path("store");
    format(&path, (1 << 20) + 32 * (256 << 10), 256 << 10);
    run(move || async move {
        let mut rng = Rng::new(seed);
        let store = open(&path).await;
        let capacity = store.stats().capacity;
        let mut items: Vec<Item> = Vec::new();
        let mut n = 0;
        while store.stats().used < capacity * 9 / 10 {
            n += 1;
            let item = shard(n, 2000 + rng.below(30_000));
            store.put(&item.2).await.expect("put while below 90%");
            items.push(item);
        }
        rng.shuffle(&mut items);
        let (deleted, kept) = items.split_at(items.len() / 2);
        let keys: Vec<_> = deleted.iter().map(|(c, i, _)| name(*c, *i)).collect();
        assert_eq!(store.delete_many(&keys).await.expect("delete"), keys.len());
        let before = store.stats();
        let report = store.reclaim(0.75).await.expect("reclaim");
        let after = store.stats();
        assert!(report.segments_freed > 0, "seed {seed:#x}: {report:?}");
        assert!(
            after.free > before.free,
            "seed {seed:#x}: {before:?} -> {after:?}"
        );
        assert!(
            after.garbage < before.garbage / 2,
            "seed {seed:#x}: {before:?} -> {after:?}"
        );
        assert_eq!(after.live, before.live);
        check(&store, kept, deleted).await;
        store.close().await.expect("close");
        let store = open(&path).await;
        check(&store, kept, deleted).await;
        // The space is usable again.
        for extra in 0..20 {
            store
                .put(&shard(100_000 + extra, 20_000).2)
                .await
                .expect("put after reclaim");
        }
    });
}

async fn check(store: &hive_nvme::Store, kept: &[Item], deleted: &[Item]) {
    for (chunk, index, bytes) in kept {
        let got = store.get(name(*chunk, *index)).await.expect("get");
        assert_eq!(&got.expect("kept shard present")[..], &bytes[..]);
    }
    for (chunk, index, _) in deleted {
        assert!(
            store
                .get(name(*chunk, *index))
                .await
                .expect("get")
                .is_none(),
            "a deleted shard came back"
        );
    }
}

#[test]
fn deletes_survive_the_reclaim_of_their_own_segment() {
    let dir = Scratch::new("tombstones");
    let path = dir.path("store");
    format(&path, 16 << 20, 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let a = shard(1, 30_000);
        let b = shard(2, 30_000);
        store.put(&a.2).await.expect("put");
        store.put(&b.2).await.expect("put");
        store.close().await.expect("close");
        // The delete lands in a new segment (every open starts one); reclaiming that
        // segment must carry the delete forward while a's record still exists.
        let store = open(&path).await;
        assert!(store.delete(name(a.0, a.1)).await.expect("delete"));
        store.close().await.expect("close");
        let store = open(&path).await;
        let report = store
            .reclaim(0.01)
            .await
            .expect("reclaim the delete's segment");
        assert!(report.segments_freed >= 1, "{report:?}");
        store.close().await.expect("close");
        let store = open(&path).await;
        assert!(
            store.get(name(a.0, a.1)).await.expect("get").is_none(),
            "a came back"
        );
        assert_eq!(
            &store.get(name(b.0, b.1)).await.expect("get").expect("b")[..],
            &b.2[..]
        );
        // Now reclaim everything that can be: b moves, a's old segment is erased.
        store.reclaim(1.01).await.expect("reclaim all");
        store.close().await.expect("close");
        let store = open(&path).await;
        assert!(
            store.get(name(a.0, a.1)).await.expect("get").is_none(),
            "a came back"
        );
        assert_eq!(
            &store.get(name(b.0, b.1)).await.expect("get").expect("b")[..],
            &b.2[..]
        );
        assert_eq!(store.stats().shards, 1);
    });
}

/// Found by hive-chaos (full-disk): a delete opened the reserved segment, puts then
/// filled it, and the store could write no delete or reclaim move again.
#[test]
fn puts_never_take_the_room_kept_for_deletes() {
    let dir = Scratch::new("reserve");
    let path = dir.path("store");
    format(&path, (1 << 20) + 6 * (256 << 10), 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let mut items = Vec::new();
        for n in 0.. {
            let item = shard(n, 30_000);
            if store.put(&item.2).await.is_err() {
                break;
            }
            items.push(item);
        }
        // Deletes open the reserve; puts keep asking for room meanwhile.
        let (gone, kept) = items.split_at(items.len() - 3);
        for (n, (chunk, index, _)) in gone.iter().enumerate() {
            store
                .delete(name(*chunk, *index))
                .await
                .unwrap_or_else(|e| panic!("delete {n} of {} on a full store: {e}", gone.len()));
            let err = store
                .put(&shard(10_000 + n as u64, 30_000).2)
                .await
                .expect_err("a put while only the reserve is left");
            assert!(matches!(err, StoreError::StoreFull { .. }), "{err}");
        }
        let report = store.reclaim(0.5).await.expect("reclaim");
        assert!(report.segments_freed >= 1, "{report:?}");
        store.put(&shard(999, 30_000).2).await.expect("room again");
        for (chunk, index, bytes) in kept {
            let back = store.get(name(*chunk, *index)).await.expect("get");
            assert_eq!(back.as_deref(), Some(&bytes[..]));
        }
    });
}

#[test]
fn a_full_store_can_reclaim_dead_segments() {
    let dir = Scratch::new("full-reclaim");
    let path = dir.path("store");
    format(&path, (1 << 20) + 4 * (256 << 10), 256 << 10);
    run(move || async move {
        let store = open(&path).await;
        let mut items = Vec::new();
        for n in 0.. {
            let item = shard(n, 40_000);
            if store.put(&item.2).await.is_err() {
                break;
            }
            items.push(item);
        }
        for (chunk, index, _) in &items[..items.len() - 2] {
            store.delete(name(*chunk, *index)).await.expect("delete");
        }
        let report = store
            .reclaim(0.5)
            .await
            .expect("reclaim with no free segment");
        assert!(report.segments_freed >= 1, "{report:?}");
        store.put(&shard(999, 40_000).2).await.expect("room again");
    });
}
