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

#[test]
fn cutting_a_stream_window_by_window_gives_the_chunks_of_the_whole() {
    let chunker = Chunker::new(ChunkerConfig::default()).expect("defaults");
    let max = chunker.config().max as usize;
    let seed = 21;
    // Mixed content: random, then a long run of one byte (max-size cuts), then text.
    let mut data = random_bytes(seed, 20 << 20);
    data.extend(std::iter::repeat_n(7u8, 9 << 20));
    data.extend(hive_testkit::text_bytes(seed, 5 << 20));
    let whole: Vec<&[u8]> = chunker.split(&data).collect();
    for window in [2 * max, 2 * max + 12_345, 5 * max] {
        let mut streamed: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            let take = (window - pending.len()).min(data.len() - fed);
            pending.extend_from_slice(&data[fed..fed + take]);
            fed += take;
            let at_end = fed == data.len();
            let (chunks, covered) = chunker.split_prefix(&pending, at_end);
            assert!(
                at_end || covered > 0,
                "no progress with a {window}-byte window"
            );
            streamed.extend(chunks.into_iter().map(<[u8]>::to_vec));
            pending.drain(..covered);
            if at_end {
                assert!(pending.is_empty());
                break;
            }
        }
        assert!(
            streamed.iter().map(Vec::as_slice).eq(whole.iter().copied()),
            "window {window} (seed {seed}) cut differently"
        );
    }
}
