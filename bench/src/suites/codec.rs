//! `hive-bench codec`: each codec stage against the crate it wraps, on 1 MiB chunks.

use anyhow::Result;
use hive_codec::{
    ChunkDecoder, ChunkEncoder, Chunker, ChunkerConfig, CompressionConfig, Compressor,
    ErasureDecoder, ErasureEncoder, ErasureScheme, ShardBytes, chunk_id, shard_payload_len,
};
use hive_testkit::{random_bytes, text_bytes};
use hive_wire::ShardIndex;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use twox_hash::XxHash3_64;

use crate::measure::Rounds;
use crate::report::{Line, Report};

const SUITE: &str = "codec";
const CHUNK: usize = 1 << 20;
/// The pipeline benchmark chunks a buffer of this size, so FastCDC finds real boundaries.
const PIPELINE_INPUT: usize = 16 << 20;

pub fn run(rounds: &Rounds, report: &mut Report) -> Result<()> {
    let random = random_bytes(0xc0dec, CHUNK);
    for (k, m, names) in [
        (4, 2, ["rs_encode_4_2", "rs_decode_4_2"]),
        (8, 3, ["rs_encode_8_3", "rs_decode_8_3"]),
    ] {
        erasure(rounds, report, &random, k, m, names)?;
    }
    hashing(rounds, report, &random);
    compression(rounds, report)?;
    pipeline(rounds, report)?;
    Ok(())
}

fn mib_per_s(name: &'static str, t: crate::measure::Throughput, against: &'static str) -> Line {
    let mib = f64::from(1 << 20);
    let t = crate::measure::Throughput {
        hive: t.hive / mib,
        baseline: t.baseline / mib,
    };
    Line::rate(SUITE, name, "MiB/s", t, against)
}

/// The erasure stage alone, ours (`ErasureEncoder`/`ErasureDecoder`) against the raw
/// crate on the same buffers; decode has the first `m` data shards lost. Then, for 4+2,
/// the whole shard path: encode with headers and checksums, and decode with checksum
/// verification and the BLAKE3 check, against the raw crates doing the same work.
fn erasure(
    rounds: &Rounds,
    report: &mut Report,
    data: &[u8],
    k: u8,
    m: u8,
    [encode_name, decode_name]: [&'static str; 2],
) -> Result<()> {
    let (ku, mu) = (usize::from(k), usize::from(m));
    let len = shard_payload_len(data.len(), k);
    let mut ours = ErasureEncoder::default();
    let mut raw = Raw::new(data, k, m)?;
    let t = rounds.throughput(
        data.len() as u64,
        || {
            let payloads = ours.encode(data, k, m).expect("encode");
            (ku..ku + mu)
                .map(|i| payloads.get(i)[0])
                .fold(0u8, u8::wrapping_add)
        },
        || raw.encode(|recovery| recovery[0]),
    );
    report.add(mib_per_s(encode_name, t, "reed-solomon-simd encode"));

    // Survivors: data shards m..k and all parity, as both sides see them.
    let survivors: Vec<Vec<u8>> = {
        let payloads = ours.encode(data, k, m)?;
        (0..ku + mu).map(|i| payloads.get(i).to_vec()).collect()
    };
    let present: Vec<Option<&[u8]>> = (0..ku + mu)
        .map(|i| (i >= mu).then(|| &survivors[i][..]))
        .collect();
    let mut decoder = ErasureDecoder::default();
    anyhow::ensure!(
        decoder.decode(k, m, len, data.len(), &present)? == data,
        "erasure decode bench setup is wrong"
    );
    let t = rounds.throughput(
        data.len() as u64,
        || {
            decoder
                .decode(k, m, len, data.len(), &present)
                .map(|s| s[0])
                .expect("decode")
        },
        || raw.decode(&present, |restored| restored[0]),
    );
    report.add(mib_per_s(decode_name, t, "reed-solomon-simd decode"));

    if (k, m) == (4, 2) {
        whole_shard_path(rounds, report, data, &mut raw, &present)?;
    }
    Ok(())
}

/// The raw crates, used the way our code uses them but with nothing of ours around it.
struct Raw {
    k: usize,
    m: usize,
    len: usize,
    padded: Vec<u8>,
    encoder: ReedSolomonEncoder,
    decoder: ReedSolomonDecoder,
}

impl Raw {
    fn new(data: &[u8], k: u8, m: u8) -> Result<Self> {
        let (k, m) = (usize::from(k), usize::from(m));
        let len = shard_payload_len(data.len(), u8::try_from(k)?);
        let mut padded = data.to_vec();
        padded.resize(len * k, 0);
        Ok(Self {
            k,
            m,
            len,
            padded,
            encoder: ReedSolomonEncoder::new(k, m, len)?,
            decoder: ReedSolomonDecoder::new(k, m, len)?,
        })
    }

    /// Encodes and folds `touch` over every recovery shard.
    fn encode(&mut self, mut touch: impl FnMut(&[u8]) -> u8) -> u8 {
        self.encoder.reset(self.k, self.m, self.len).expect("reset");
        for shard in self.padded.chunks_exact(self.len) {
            self.encoder.add_original_shard(shard).expect("add");
        }
        let result = self.encoder.encode().expect("encode");
        result
            .recovery_iter()
            .map(&mut touch)
            .fold(0u8, u8::wrapping_add)
    }

    /// Decodes from `present` (exactly k shards) and folds `touch` over the restored ones.
    fn decode(&mut self, present: &[Option<&[u8]>], mut touch: impl FnMut(&[u8]) -> u8) -> u8 {
        self.decoder.reset(self.k, self.m, self.len).expect("reset");
        for (index, payload) in present.iter().enumerate() {
            if let Some(payload) = payload {
                if index < self.k {
                    self.decoder.add_original_shard(index, payload)
                } else {
                    self.decoder.add_recovery_shard(index - self.k, payload)
                }
                .expect("add");
            }
        }
        let result = self.decoder.decode().expect("decode");
        result
            .restored_original_iter()
            .map(|(_, r)| touch(r))
            .fold(0u8, u8::wrapping_add)
    }
}

/// Our full shard encode and decode (compression off) against raw reed-solomon-simd
/// plus raw xxh3 over every shard, plus raw BLAKE3 over the decoded chunk.
fn whole_shard_path(
    rounds: &Rounds,
    report: &mut Report,
    data: &[u8],
    raw: &mut Raw,
    present: &[Option<&[u8]>],
) -> Result<()> {
    let scheme = ErasureScheme::new(4, 2)?;
    let mut encoder = ChunkEncoder::new(scheme, CompressionConfig::off())?;
    let id = chunk_id(data);
    let t = rounds.throughput(
        data.len() as u64,
        || {
            encoder
                .encode(id, data)
                .map(|c| c.stored_len())
                .expect("encode")
        },
        || {
            let data_sums = raw.padded.chunks_exact(raw.len).map(XxHash3_64::oneshot);
            let first = data_sums.fold(0u64, u64::wrapping_add);
            first.wrapping_add(u64::from(raw.encode(|r| XxHash3_64::oneshot(r) as u8)))
        },
    );
    report.add(mib_per_s(
        "shard_encode_4_2",
        t,
        "raw RS encode + raw xxh3 per shard",
    ));

    let encoded = encoder.encode(id, data)?;
    let shards: Vec<Vec<u8>> = (2..6).map(|i| encoded.shard_to_vec(i)).collect();
    let views: Vec<ShardBytes> = shards
        .iter()
        .zip(2u8..)
        .map(|(bytes, i)| ShardBytes::contiguous(bytes, Some(ShardIndex(i))))
        .collect();
    let mut decoder = ChunkDecoder::new()?;
    anyhow::ensure!(
        decoder.decode(id, &views)?.data == data,
        "decode setup is wrong"
    );
    let mut stream = Vec::with_capacity(data.len());
    let t = rounds.throughput(
        data.len() as u64,
        || {
            decoder
                .decode(id, &views)
                .map(|d| d.data.len())
                .expect("decode")
        },
        || {
            let sums = present.iter().flatten().map(|p| XxHash3_64::oneshot(p));
            let sum = sums.fold(0u64, u64::wrapping_add);
            stream.clear();
            raw.decode(present, |restored| {
                stream.extend_from_slice(restored);
                0
            });
            for payload in present[2..4].iter().flatten() {
                stream.extend_from_slice(payload);
            }
            (sum, blake3::hash(&stream))
        },
    );
    report.add(mib_per_s(
        "chunk_decode_4_2",
        t,
        "raw xxh3 + RS decode + copy + blake3",
    ));
    Ok(())
}

fn hashing(rounds: &Rounds, report: &mut Report, data: &[u8]) {
    let t = rounds.throughput(data.len() as u64, || chunk_id(data), || blake3::hash(data));
    report.add(mib_per_s("blake3", t, "blake3::hash"));
}

/// Our compressor (with its keep-only-if-it-pays bound) against zstd's bulk API at the
/// same level, on the same text-like corpus.
fn compression(rounds: &Rounds, report: &mut Report) -> Result<()> {
    let config = CompressionConfig::default();
    let corpus = text_bytes(0x7e47, CHUNK);
    let mut ours = Compressor::new(config)?;
    let mut out = vec![0u8; CHUNK];
    anyhow::ensure!(
        ours.compress_into(&corpus, &mut out).is_some(),
        "the corpus must be compressible"
    );
    let mut raw = zstd::bulk::Compressor::new(config.level)?;
    let mut raw_out = Vec::with_capacity(zstd::zstd_safe::compress_bound(CHUNK));
    let t = rounds.throughput(
        CHUNK as u64,
        || ours.compress_into(&corpus, &mut out),
        || {
            raw.compress_to_buffer(&corpus, &mut raw_out)
                .expect("compress")
        },
    );
    report.add(mib_per_s("zstd_compress", t, "zstd bulk, same level"));
    Ok(())
}

/// The write path for one buffer (chunk, hash, compress, encode 4+2) on random data:
/// with compression on, as configured by default, against compression off. Shows what
/// trying to compress costs when it cannot pay.
fn pipeline(rounds: &Rounds, report: &mut Report) -> Result<()> {
    let input = random_bytes(0x1ec0, PIPELINE_INPUT);
    let chunker = Chunker::new(ChunkerConfig::default())?;
    let scheme = ErasureScheme::new(4, 2)?;
    let mut on = ChunkEncoder::new(scheme, CompressionConfig::default())?;
    let mut off = ChunkEncoder::new(scheme, CompressionConfig::off())?;
    let write = |encoder: &mut ChunkEncoder| -> u64 {
        chunker
            .split(&input)
            .map(|chunk| {
                encoder
                    .encode(chunk_id(chunk), chunk)
                    .map(|c| c.stored_len())
                    .expect("encode")
            })
            .sum()
    };
    let t = rounds.throughput(input.len() as u64, || write(&mut on), || write(&mut off));
    report.add(mib_per_s(
        "pipeline_incompressible",
        t,
        "same pipeline, compression off",
    ));
    Ok(())
}
