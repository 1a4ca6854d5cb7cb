//! Random sequences of put, get, delete, reclaim and reopen against a map model.

mod common;

use std::collections::HashMap;

use common::{Scratch, format, name, open, run, shard};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// Put shard number n (of a small pool, so repeats happen).
    Put(u8),
    Delete(u8),
    Get(u8),
    Reopen,
    Reclaim,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..24).prop_map(Step::Put),
        2 => (0u8..24).prop_map(Step::Delete),
        3 => (0u8..24).prop_map(Step::Get),
        1 => Just(Step::Reopen),
        1 => Just(Step::Reclaim),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map(steps in proptest::collection::vec(step(), 1..60)) {
        let dir = Scratch::new("model");
        let path = dir.path("store");
        format(&path, 64 << 20, 256 << 10);
        let failure = run(move || async move {
            let pool: Vec<_> = (0..24u64).map(|n| shard(n, 200 + n as usize * 1500)).collect();
            let mut model: HashMap<u8, ()> = HashMap::new();
            let mut store = open(&path).await;
            for (at, s) in steps.iter().enumerate() {
                match s {
                    Step::Put(n) => {
                        store.put(&pool[*n as usize].2).await.expect("put");
                        model.insert(*n, ());
                    }
                    Step::Delete(n) => {
                        let (chunk, index, _) = &pool[*n as usize];
                        let existed = store.delete(name(*chunk, *index)).await.expect("delete");
                        if existed != model.remove(n).is_some() {
                            return Some(format!("step {at} {s:?}: delete said {existed}"));
                        }
                    }
                    Step::Get(n) => {
                        let (chunk, index, bytes) = &pool[*n as usize];
                        let got = store.get(name(*chunk, *index)).await.expect("get");
                        let ok = match (&got, model.contains_key(n)) {
                            (Some(got), true) => got[..] == bytes[..],
                            (None, false) => true,
                            _ => false,
                        };
                        if !ok {
                            return Some(format!("step {at} {s:?}: got {:?}", got.map(|g| g.len())));
                        }
                    }
                    Step::Reclaim => {
                        store.reclaim(0.9).await.expect("reclaim");
                    }
                    Step::Reopen => {
                        store.close().await.expect("close");
                        store = open(&path).await;
                    }
                }
                if store.stats().shards != model.len() as u64 {
                    return Some(format!("step {at} {s:?}: {} shards, model has {}", store.stats().shards, model.len()));
                }
            }
            None
        });
        prop_assert!(failure.is_none(), "{}", failure.unwrap_or_default());
    }
}
