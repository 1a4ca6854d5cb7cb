//! Content-defined chunking: stable boundaries and local change.

use std::collections::HashSet;

use hive_codec::{Chunker, ChunkerConfig, CodecError, chunk_id};
use hive_testkit::random_bytes;

fn ids(chunker: &Chunker, data: &[u8]) -> Vec<hive_wire::ChunkId> {
    chunker.split(data).map(chunk_id).collect()
}

#[test]
fn boundaries_are_deterministic_and_cover_the_input() {
    let chunker = Chunker::new(ChunkerConfig::default()).expect("defaults");
    let data = random_bytes(1, 16 << 20);
    let first: Vec<&[u8]> = chunker.split(&data).collect();
    let second: Vec<&[u8]> = chunker.split(&data).collect();
    assert_eq!(first, second);
    assert_eq!(first.concat(), data);
    let c = chunker.config();
    for (i, chunk) in first.iter().enumerate() {
        assert!(chunk.len() <= c.max as usize, "chunk {i} too long");
        if i + 1 < first.len() {
            assert!(chunk.len() >= c.min as usize, "chunk {i} too short");
        }
    }
    assert!(chunker.split(&[]).next().is_none());
}

#[test]
fn inserting_a_byte_near_the_start_changes_at_most_two_chunks() {
    let chunker = Chunker::new(ChunkerConfig::default()).expect("defaults");
    for seed in [11, 12, 13] {
        let data = random_bytes(seed, 64 << 20);
        let before = ids(&chunker, &data);
        let mut edited = data.clone();
        edited.insert(1000, 0x42);
        let after = ids(&chunker, &edited);
        let old: HashSet<_> = before.iter().collect();
        let changed = after.iter().filter(|id| !old.contains(id)).count();
        assert!(
            changed <= 2,
            "seed {seed}: {changed} of {} chunk ids changed",
            after.len()
        );
        assert!(
            before.len() > 40,
            "seed {seed}: only {} chunks",
            before.len()
        );
    }
}

#[test]
fn a_small_buffer_stays_one_chunk_and_an_oversized_one_is_refused() {
    let chunker = Chunker::new(ChunkerConfig::default()).expect("defaults");
    let small = random_bytes(2, 3000);
    assert_eq!(chunker.single(&small).expect("fits"), &small[..]);
    let big = vec![0u8; 4 * 1024 * 1024 + 1];
    assert!(matches!(
        chunker.single(&big),
        Err(CodecError::ChunkTooLarge {
            len: 4_194_305,
            max: 4_194_304
        })
    ));
}
