//! Encode → lose, damage or misplace shards → decode, over random sizes and schemes.
//!
//! Every case derives its bytes and choices from a seed that proptest prints on failure.

use hive_codec::{
    ChunkDecoder, ChunkEncoder, CodecError, CompressionConfig, ErasureScheme, ShardBytes,
    ShardRejection, chunk_id,
};
use hive_testkit::{Rng, random_bytes, text_bytes};
use hive_wire::{SHARD_HEADER_LEN, ShardError, ShardIndex};
use proptest::prelude::*;

/// `len` bytes from `seed`: random, or text-like that zstd shrinks.
fn data(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    if compressible {
        text_bytes(seed, len)
    } else {
        random_bytes(seed, len)
    }
}

fn encoder(k: u8, m: u8) -> ChunkEncoder {
    let scheme = ErasureScheme::new(k, m).expect("scheme in range");
    ChunkEncoder::new(scheme, CompressionConfig::default()).expect("default compression")
}

/// Encodes `data` with a fresh encoder, binding `$chunk` and `$id` for the caller.
macro_rules! encode {
    ($enc:ident, $chunk:ident, $id:ident = $data:expr, $k:expr, $m:expr) => {
        let mut $enc = encoder($k, $m);
        let $id = chunk_id(&$data);
        let $chunk = $enc.encode($id, &$data).expect("encode");
    };
}

/// Lengths from 0 to 8 MiB, weighted to small ones so a run stays quick, and always
/// including the edges.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..=1,
        5 => 0usize..5000,
        3 => 0usize..(1 << 20),
        1 => 0usize..=(8 << 20),
    ]
}

fn scheme() -> impl Strategy<Value = (u8, u8)> {
    (1u8..=32, 0u8..=16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_k_shards_decode_and_fewer_fail(
        len in length(), (k, m) in scheme(), compressible in any::<bool>(), seed in any::<u64>()
    ) {
        let original = data(seed, len, compressible);
        encode!(enc, chunk, id = original, k, m);
        let width = usize::from(k) + usize::from(m);
        prop_assert_eq!(chunk.width(), width);
        let mut decoder = ChunkDecoder::new().expect("decoder");
        let mut rng = Rng::new(seed ^ 0x5eed);
        for trial in 0..4 {
            let mut order: Vec<usize> = (0..width).collect();
            rng.shuffle(&mut order);
            // Trial 0 is the fast path (the k data shards); the rest take k..=width at random.
            let take = if trial == 0 { usize::from(k) } else { usize::from(k) + rng.below(usize::from(m) + 1) };
            let subset: Vec<usize> = if trial == 0 { (0..usize::from(k)).collect() } else { order[..take].to_vec() };
            let shards: Vec<ShardBytes> = subset.iter().map(|&i| chunk.shard(i)).collect();
            let decoded = decoder.decode(id, &shards).map_err(|e| TestCaseError::fail(format!("{subset:?}: {e}")))?;
            prop_assert!(decoded.data == &original[..], "subset {:?} decoded wrong bytes", subset);
            prop_assert!(decoded.rejected.is_empty());
            if trial == 0 {
                prop_assert!(!decoded.used_parity);
            }
        }
        // Any k - 1 shards are not enough, and the error says how many of how many.
        let mut order: Vec<usize> = (0..width).collect();
        rng.shuffle(&mut order);
        let shards: Vec<ShardBytes> = order[..usize::from(k) - 1].iter().map(|&i| chunk.shard(i)).collect();
        match decoder.decode(id, &shards) {
            Err(CodecError::NotEnoughShards { have, need, .. }) => {
                prop_assert_eq!(have, usize::from(k) - 1);
                prop_assert_eq!(need, usize::from(k));
            }
            Err(CodecError::NoIntactShards { rejected, .. }) => prop_assert!(k == 1 && rejected.is_empty()),
            other => prop_assert!(false, "k - 1 shards gave {:?}", other.map(|d| d.data.len())),
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected_and_named(
        len in 0usize..20_000, (k, m) in scheme(), seed in any::<u64>()
    ) {
        let original = data(seed, len, seed % 2 == 0);
        encode!(enc, chunk, id = original, k, m);
        let mut rng = Rng::new(seed);
        let victim = rng.below(chunk.width());
        let mut bytes = chunk.shard_to_vec(victim);
        let bit = rng.below(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let damaged = ShardBytes::contiguous(&bytes, Some(ShardIndex(u8::try_from(victim).expect("< 48"))));
        prop_assert!(damaged.verify(id).is_err(), "flip of bit {} in shard {} unnoticed", bit, victim);

        // Offered first among all shards, it is refused by position and the rest decode.
        let mut shards = vec![damaged];
        shards.extend((0..chunk.width()).filter(|&i| i != victim).map(|i| chunk.shard(i)));
        let mut decoder = ChunkDecoder::new().expect("decoder");
        if m > 0 {
            let decoded = decoder.decode(id, &shards).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(decoded.data == &original[..]);
            prop_assert_eq!(decoded.rejected.len(), 1);
            prop_assert_eq!(decoded.rejected[0].position, 0);
            let message = decoded.rejected[0].to_string();
            prop_assert!(message.contains("shard at position 0"), "{}", message);
        } else {
            // With no parity the damaged shard cannot be replaced: the decode fails and
            // names it (as the only shard offered, when k = 1, not even the scheme is known).
            match decoder.decode(id, &shards) {
                Err(CodecError::NotEnoughShards { rejected, .. } | CodecError::NoIntactShards { rejected, .. }) => {
                    prop_assert_eq!(rejected[0].position, 0)
                }
                other => prop_assert!(false, "a damaged shard with m = 0 gave {:?}", other.map(|d| d.data.len())),
            }

        }
    }

    #[test]
    fn shards_of_another_chunk_or_index_are_refused(
        len in 1usize..10_000, (k, m) in (2u8..=8, 1u8..=4), seed in any::<u64>()
    ) {
        let a = data(seed, len, false);
        let b = data(seed.wrapping_add(1), len, false);
        encode!(enc_a, chunk_a, id_a = a, k, m);
        encode!(enc_b, chunk_b, _id_b = b, k, m);

        let foreign = chunk_b.shard(0);
        let refused = matches!(foreign.verify(id_a), Err(ShardRejection::WrongChunk { .. }));
        prop_assert!(refused, "a shard of another chunk was accepted");

        let mut misplaced = chunk_a.shard(1);
        misplaced.expected = Some(ShardIndex(0));
        prop_assert_eq!(
            misplaced.verify(id_a),
            Err(ShardRejection::WrongIndex { expected: ShardIndex(0), found: ShardIndex(1) })
        );

        // Both refused in a decode that still has enough good shards.
        let mut shards = vec![foreign, misplaced];
        shards.extend((1..chunk_a.width()).map(|i| chunk_a.shard(i)));
        let mut decoder = ChunkDecoder::new().expect("decoder");
        let decoded = decoder.decode(id_a, &shards).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(decoded.data == &a[..]);
        let positions: Vec<usize> = decoded.rejected.iter().map(|r| r.position).collect();
        prop_assert_eq!(positions, vec![0, 1]);
    }

    #[test]
    fn arbitrary_bytes_as_shards_never_panic(
        blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..6),
        expected in proptest::option::of(any::<u8>()),
    ) {
        let id = chunk_id(b"anything");
        let shards: Vec<ShardBytes> = blobs
            .iter()
            .map(|b| ShardBytes::contiguous(b, expected.map(ShardIndex)))
            .collect();
        let mut decoder = ChunkDecoder::new().expect("decoder");
        prop_assert!(decoder.decode(id, &shards).is_err());
    }
}

#[test]
fn headers_that_lie_about_lengths_are_refused_not_trusted() {
    // A shard whose checksum is recomputed after its stream length was raised is intact
    // by checksum but breaks the format's rules.
    let original = data(7, 1000, false);
    encode!(enc, chunk, id = original, 4, 2);
    let mut bytes = chunk.shard_to_vec(0);
    let payload_len = bytes.len() - SHARD_HEADER_LEN;
    bytes[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
    let checksum = hive_wire::shard_checksum(&bytes[..56], &bytes[SHARD_HEADER_LEN..]);
    bytes[56..64].copy_from_slice(&checksum.to_le_bytes());
    let shard = ShardBytes::contiguous(&bytes, None);
    assert!(
        matches!(
            shard.verify(id),
            Err(ShardRejection::Corrupt(ShardError::InvalidField(_)))
        ),
        "payload {payload_len}"
    );
}

#[test]
fn compression_is_used_only_when_it_pays() {
    let text = data(1, 1 << 20, true);
    let noise = data(2, 1 << 20, false);
    encode!(enc, chunk, _id = text, 4, 2);
    assert!(chunk.header().compressed);
    assert!(chunk.header().stream_len < (1 << 20) / 2);
    encode!(enc2, chunk, _id2 = noise, 4, 2);
    assert!(!chunk.header().compressed);
    assert_eq!(chunk.header().stream_len, 1 << 20);
}

#[test]
fn replication_sends_m_plus_one_identical_payloads() {
    let original = data(3, 5000, false);
    encode!(enc, chunk, id = original, 1, 3);
    assert_eq!(chunk.width(), 4);
    for i in 0..4 {
        assert_eq!(chunk.shard(i).payload, chunk.shard(0).payload);
        let mut decoder = ChunkDecoder::new().expect("decoder");
        let decoded = decoder
            .decode(id, &[chunk.shard(i)])
            .expect("any single copy");
        assert_eq!(decoded.data, &original[..]);
    }
}

#[test]
fn the_encoder_reuses_its_buffers_across_chunks() {
    let scheme = ErasureScheme::new(4, 2).expect("scheme");
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let big = data(4, 1 << 20, false);
    let small = data(5, 100, false);
    let mut decoder = ChunkDecoder::new().expect("decoder");
    for chunk in [&big, &small, &big] {
        let id = chunk_id(chunk);
        let encoded = encoder.encode(id, chunk).expect("encode");
        let shards: Vec<ShardBytes> = (2..6).map(|i| encoded.shard(i)).collect();
        assert_eq!(
            decoder.decode(id, &shards).expect("decode").data,
            &chunk[..]
        );
    }
}

#[test]
fn every_subset_decodes_or_fails_by_count_for_small_schemes() {
    // Exhaustive where it is affordable: all 2^(k+m) subsets, at the edge lengths.
    let mut decoder = ChunkDecoder::new().expect("decoder");
    for (k, m) in [(1, 0), (1, 2), (2, 1), (3, 0), (4, 2), (5, 3)] {
        for len in [0, 1, 63, 64, 65, 4096, 8 << 20] {
            let original = data(u64::from(k) * 1000 + len as u64, len, len % 2 == 0);
            encode!(enc, chunk, id = original, k, m);
            let width = chunk.width();
            for mask in 0u32..(1 << width) {
                let shards: Vec<ShardBytes> = (0..width)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| chunk.shard(i))
                    .collect();
                let result = decoder.decode(id, &shards);
                let case = format!("{k}+{m}, {len} bytes, shards {mask:b}");
                if shards.len() >= usize::from(k) {
                    assert_eq!(result.expect(&case).data, &original[..], "{case}");
                } else {
                    assert!(result.is_err(), "{case} decoded with too few shards");
                }
            }
        }
    }
}

/// Shards `set` of `bytes`, each expected at its index.
fn view<'a>(bytes: &'a [Vec<u8>], set: &[usize]) -> Vec<ShardBytes<'a>> {
    set.iter()
        .map(|&i| ShardBytes::contiguous(&bytes[i], Some(ShardIndex(i as u8))))
        .collect()
}

/// Shard `i` of `chunk` with one payload byte changed and its checksum recomputed: it
/// passes verification but holds the wrong bytes.
fn forged(chunk: &hive_codec::EncodedChunk<'_>, i: usize) -> Vec<u8> {
    let mut bytes = chunk.shard_to_vec(i);
    let at = SHARD_HEADER_LEN + (bytes.len() - SHARD_HEADER_LEN) / 2;
    bytes[at] ^= 0x40;
    let checksum = hive_wire::shard_checksum(&bytes[..56], &bytes[SHARD_HEADER_LEN..]);
    bytes[56..64].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

#[test]
fn a_forged_shard_makes_the_decoder_try_other_combinations() {
    for (k, m) in [(4, 2), (2, 1), (1, 2), (3, 3)] {
        for compressible in [false, true] {
            let original = data(u64::from(k) * 7 + u64::from(m), 300_000, compressible);
            encode!(enc, chunk, id = original, k, m);
            for victim in 0..chunk.width() {
                let bad = forged(&chunk, victim);
                let mut shards = vec![ShardBytes::contiguous(&bad, None)];
                shards.extend(
                    (0..chunk.width())
                        .filter(|&i| i != victim)
                        .map(|i| chunk.shard(i)),
                );
                let mut decoder = ChunkDecoder::new().expect("decoder");
                let case = format!("{k}+{m}, forged shard {victim}, compressible {compressible}");
                let decoded = decoder.decode(id, &shards).expect(&case);
                assert_eq!(decoded.data, &original[..], "{case}");
            }
        }
    }
}

#[test]
fn shards_of_two_encodings_are_never_mixed() {
    // The same chunk written by two writers with different compression policies: two
    // encodings. Any k shards of one of them decode; fewer than k of each fail, even
    // when the two together number k or more.
    let original = data(11, 200_000, true);
    let id = chunk_id(&original);
    let scheme = ErasureScheme::new(4, 2).expect("scheme");
    let mut zstd = ChunkEncoder::new(scheme, CompressionConfig::default()).expect("encoder");
    let mut plain = ChunkEncoder::new(scheme, CompressionConfig::off()).expect("encoder");
    let a: Vec<Vec<u8>> = {
        let c = zstd.encode(id, &original).expect("encode");
        (0..6).map(|i| c.shard_to_vec(i)).collect()
    };
    let b: Vec<Vec<u8>> = {
        let c = plain.encode(id, &original).expect("encode");
        (0..6).map(|i| c.shard_to_vec(i)).collect()
    };
    let mut decoder = ChunkDecoder::new().expect("decoder");
    // Three of one, three of the other: six intact shards, no k of one encoding.
    let mut mixed = view(&a, &[0, 1, 2]);
    mixed.extend(view(&b, &[3, 4, 5]));
    match decoder.decode(id, &mixed) {
        Err(CodecError::NotEnoughShards { have, need, .. }) => assert_eq!((have, need), (3, 4)),
        other => panic!("mixed encodings gave {:?}", other.map(|d| d.data.len())),
    }
    // Two of one and four of the other: the four decode, the two are named.
    let mut mixed = view(&a, &[0, 1]);
    mixed.extend(view(&b, &[2, 3, 4, 5]));
    let decoded = decoder.decode(id, &mixed).expect("four of one encoding");
    assert_eq!(decoded.data, &original[..]);
    let positions: Vec<usize> = decoded.rejected.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![0, 1]);
    assert!(decoded.rejected[0].to_string().contains("another encoding"));
}

#[test]
fn rebuild_seals_lost_shards_byte_for_byte() {
    for (k, m) in [(4, 2), (1, 3), (2, 1), (8, 3)] {
        for compressible in [false, true] {
            let original = data(u64::from(k) + 100, 150_000, compressible);
            encode!(enc, chunk, id = original, k, m);
            let width = chunk.width();
            // Keep the last k shards; rebuild every other one.
            let kept: Vec<ShardBytes> = (width - usize::from(k)..width)
                .map(|i| chunk.shard(i))
                .collect();
            let wanted: Vec<ShardIndex> = (0..width - usize::from(k))
                .map(|i| ShardIndex(i as u8))
                .collect();
            let mut decoder = ChunkDecoder::new().expect("decoder");
            let rebuilt = decoder.rebuild(id, &kept, &wanted).expect("rebuild");
            for (shard, index) in rebuilt.iter().zip(&wanted) {
                assert_eq!(
                    shard,
                    &chunk.shard_to_vec(usize::from(index.get())),
                    "{k}+{m} shard {index} compressible {compressible}"
                );
            }
        }
    }
}
