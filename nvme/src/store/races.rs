//! Deletes racing reclaim's moves of the same shard, in one group commit and in
//! separate ones: the delete wins every time, in the index and after a reopen.

use std::future::Future;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hive_codec::{ChunkEncoder, CompressionConfig, ErasureScheme, chunk_id};
use hive_testkit::random_bytes;
use hive_wire::{NodeId, ShardIndex, ShardName};

use super::*;
use crate::FormatOptions;

const NODE: NodeId = NodeId(3);

/// Shard 0 of a 4+2 encoding of seeded random bytes.
fn shard(seed: u64) -> (ShardName, Vec<u8>) {
    let data = random_bytes(seed, 20_000);
    let scheme = ErasureScheme::new(4, 2).expect("4+2");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let id = chunk_id(&data);
    let chunk = encoder.encode(id, &data).expect("encode");
    let name = ShardName {
        chunk: id,
        k: 4,
        m: 2,
        index: ShardIndex(0),
    };
    (name, chunk.shard_to_vec(0))
}

/// Runs `f` on a glommio executor with the path of a freshly formatted 16 MiB store
/// (256 KiB segments), removed afterwards.
fn on_fresh_store<F, Fut>(name: &str, f: F)
where
    F: FnOnce(std::path::PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = std::env::temp_dir().join(format!("hive-nvme-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("store");
    let options = FormatOptions {
        node_id: NODE,
        size: Some(16 << 20),
        segment_size: 256 << 10,
    };
    Store::format(&path, &options).expect("format");
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || f(path))
        .expect("a glommio executor starts")
        .join()
        .expect("the executor thread does not panic");
    let _ = std::fs::remove_dir_all(&dir);
}

/// How the delete and the move reach the writer.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// Both queued before the writer runs: one group commit.
    MoveThenDeleteTogether,
    DeleteThenMoveTogether,
    /// Each committed before the next is queued.
    MoveThenDeleteApart,
    DeleteThenMoveApart,
}

/// Puts a shard and another, reopens, then races a delete of the first against a move of it
/// (built from the index before either runs, as reclaim builds it), in `order`.
fn race(order: Order) {
    on_fresh_store(&format!("race-{order:?}"), move |path| async move {
        let (gone, bytes) = shard(1);
        let (kept, kept_bytes) = shard(2);
        let store = Store::open(&path, NODE).await.expect("open");
        store.put(&bytes).await.expect("put");
        store.put(&kept_bytes).await.expect("put");
        // Every open starts a new segment: the move goes to another segment than
        // the one its source is in, as reclaim's moves do.
        store.close().await.expect("close");
        let store = Store::open(&path, NODE).await.expect("open");
        let at = store.state.borrow().index.get(&gone).expect("indexed");
        let moving = || store.move_op(gone, at, &bytes);
        let deleting = || Op::Delete {
            key: gone,
            of: DeleteOf::Current,
        };
        let done = |answer: flume::Receiver<Result<(), StoreError>>| async move {
            answer
                .recv_async()
                .await
                .expect("answered")
                .expect("committed")
        };
        match order {
            Order::MoveThenDeleteTogether | Order::DeleteThenMoveTogether => {
                let (first, second) = match order {
                    Order::MoveThenDeleteTogether => (moving(), deleting()),
                    _ => (deleting(), moving()),
                };
                let a = store.submit(first).await.expect("queued");
                let b = store.submit(second).await.expect("queued");
                done(a).await;
                done(b).await;
            }
            Order::MoveThenDeleteApart => {
                done(store.submit(moving()).await.expect("queued")).await;
                done(store.submit(deleting()).await.expect("queued")).await;
            }
            Order::DeleteThenMoveApart => {
                done(store.submit(deleting()).await.expect("queued")).await;
                done(store.submit(moving()).await.expect("queued")).await;
            }
        }
        assert!(
            store.get(gone).await.expect("get").is_none(),
            "{order:?}: the deleted shard is still indexed"
        );
        store.close().await.expect("close");
        let store = Store::open(&path, NODE).await.expect("reopen");
        assert!(
            store.get(gone).await.expect("get").is_none(),
            "{order:?}: the deleted shard came back at reopen"
        );
        assert_eq!(
            &store.get(kept).await.expect("get").expect("kept")[..],
            &kept_bytes[..]
        );
        assert_eq!(store.stats().shards, 1, "{order:?}");
        store.close().await.expect("close");
    });
}

#[test]
fn a_delete_in_the_same_commit_as_a_move_wins() {
    race(Order::MoveThenDeleteTogether);
    race(Order::DeleteThenMoveTogether);
}

#[test]
fn a_delete_committed_before_or_after_a_move_wins() {
    race(Order::MoveThenDeleteApart);
    race(Order::DeleteThenMoveApart);
}

/// A delete and then a put of the same shard, queued together: the put lands in the
/// same segment as the copy the delete names, and must survive it, in the index and
/// after a reopen.
#[test]
fn a_put_queued_after_a_delete_of_the_same_shard_survives_it() {
    on_fresh_store("reput", move |path| async move {
        let (name, bytes) = shard(3);
        let store = Store::open(&path, NODE).await.expect("open");
        store.put(&bytes).await.expect("put");
        let tag = store.has(name).expect("stored");
        let delete = store
            .submit(Op::Delete {
                key: name,
                of: DeleteOf::Current,
            })
            .await
            .expect("queued");
        let put = store
            .submit(Op::Put {
                key: name,
                tag,
                record: Some(commit::record_buffer(&store.device, &bytes)),
                data_len: bytes.len(),
                moves: None,
            })
            .await
            .expect("queued");
        for answer in [delete, put] {
            answer
                .recv_async()
                .await
                .expect("answered")
                .expect("committed");
        }
        assert_eq!(
            &store
                .get(name)
                .await
                .expect("get")
                .expect("the put survives")[..],
            &bytes[..]
        );
        store.close().await.expect("close");
        let store = Store::open(&path, NODE).await.expect("reopen");
        assert_eq!(
            &store
                .get(name)
                .await
                .expect("get")
                .expect("the put survives a reopen")[..],
            &bytes[..]
        );
        store.close().await.expect("close");
    });
}

/// Garbage collection's delete takes only shards untouched for the age it names, and a
/// writer that asks about or stores a shard while it is being deleted keeps it.
#[test]
fn an_untouched_delete_spares_what_writers_touch() {
    on_fresh_store("untouched", move |path| async move {
        let [(a, a_bytes), (b, b_bytes), (c, c_bytes)] = [shard(4), shard(5), shard(6)];
        let store = Store::open(&path, NODE).await.expect("open");
        for bytes in [&a_bytes, &b_bytes, &c_bytes] {
            store.put(bytes).await.expect("put");
        }
        // Windows long enough that no pause of a loaded machine between a touch and
        // the delete right after it ages the touch out.
        let window = Duration::from_millis(250);
        let age = 2 * window;
        store.set_touch_window(window);
        // Just written: nothing is old enough.
        let kept = store
            .delete_untouched(&[a, b, c], age)
            .await
            .expect("delete");
        assert_eq!((kept.deleted, kept.touched), (0, 3), "{kept:?}");
        // Once the touches age out, a goes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = store.delete_untouched(&[a], age).await.expect("delete");
            if done.deleted == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "a was never deleted: {done:?}");
            glommio::timer::sleep(window / 2).await;
        }
        // A writer's dedup question counts as a touch.
        assert!(store.has(b).is_some());
        let spared = store.delete_untouched(&[b], age).await.expect("delete");
        assert_eq!((spared.deleted, spared.touched), (0, 1), "{spared:?}");
        // c is chosen; while its delete is under way, has says absent and a put
        // writes it anew, and the new copy survives.
        let doomed = [c];
        {
            let mut delete = std::pin::pin!(store.delete_untouched(&doomed, age));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                delete.as_mut().poll(&mut cx).is_pending(),
                "c chosen and queued"
            );
            assert_eq!(store.has(c), None, "a doomed shard is not confirmed");
            store.put(&c_bytes).await.expect("put while doomed");
            delete.await.expect("delete");
        }
        assert_eq!(
            &store.get(c).await.expect("get").expect("c kept")[..],
            &c_bytes[..]
        );
        store.close().await.expect("close");
        let store = Store::open(&path, NODE).await.expect("reopen");
        assert!(store.get(a).await.expect("get").is_none(), "a came back");
        assert_eq!(
            &store.get(b).await.expect("get").expect("b")[..],
            &b_bytes[..]
        );
        assert_eq!(
            &store.get(c).await.expect("get").expect("c")[..],
            &c_bytes[..]
        );
        store.close().await.expect("close");
    });
}
