//! Any k intact shards → the stream → the chunk, checked against its id.
//!
//! Shards are grouped by encoding (every header field but the index, `stream_hash`
//! included), so shards of two encodings of one chunk are never mixed. Within a group
//! that has k shards, the first k offered are tried first; if the result fails its
//! checks (stream hash, decompression, length, BLAKE3), other k-subsets of the group
//! are tried, up to [`MAX_DECODE_ATTEMPTS`], before the decode fails.

use hive_wire::{ChunkId, ShardHeader, ShardIndex, ShardRef};

use crate::chunk_id::chunk_id;
use crate::constants::{MAX_DECODE_ATTEMPTS, MAX_WIDTH};
use crate::erasure::{ErasureDecoder, ErasureEncoder};
use crate::error::{CodecError, RejectedShard, ShardRejection};

/// One shard as received: its header and payload bytes, not yet trusted, and the index
/// the holder was asked for, if any.
#[derive(Debug, Clone, Copy)]
pub struct ShardBytes<'a> {
    /// The header bytes.
    pub header: &'a [u8],
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The index this shard must carry; `None` accepts any index of the chunk.
    pub expected: Option<ShardIndex>,
}

impl<'a> ShardBytes<'a> {
    /// A shard stored as header followed by payload in one buffer.
    pub fn contiguous(bytes: &'a [u8], expected: Option<ShardIndex>) -> Self {
        let (header, payload) = bytes.split_at(bytes.len().min(hive_wire::SHARD_HEADER_LEN));
        Self {
            header,
            payload,
            expected,
        }
    }

    /// Verifies the checksum and that the shard is the one asked for.
    pub fn verify(&self, chunk: ChunkId) -> Result<ShardRef<'a>, ShardRejection> {
        let shard = ShardRef::parse_split(self.header, self.payload)?;
        if shard.header.chunk_id != chunk {
            return Err(ShardRejection::WrongChunk {
                found: shard.header.chunk_id,
            });
        }
        match self.expected {
            Some(expected) if expected != shard.header.index => Err(ShardRejection::WrongIndex {
                expected,
                found: shard.header.index,
            }),
            _ => Ok(shard),
        }
    }
}

/// A rebuilt chunk, and the shards refused on the way (they are owed a repair).
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The chunk's bytes; their BLAKE3 hash is the chunk id.
    pub data: &'a [u8],
    /// Shards that were offered and refused.
    pub rejected: Vec<RejectedShard>,
    /// Whether parity had to be used (a data shard was missing or bad).
    pub used_parity: bool,
    /// The header every shard of the decoded encoding shares (index 0).
    pub header: ShardHeader,
}

/// Where a successful attempt left the chunk's bytes.
#[derive(Clone, Copy)]
enum Output {
    /// Decompressed into the decoder's own buffer.
    Decompressed,
    /// The erasure decoder's stream buffer (uncompressed, k > 1).
    Stream,
    /// The payload at this position of the offered shards (uncompressed, k = 1).
    Payload(usize),
}

/// Rebuilds chunks from shards, reusing its buffers and decoder state.
pub struct ChunkDecoder {
    erasure: ErasureDecoder,
    zstd: zstd::bulk::Decompressor<'static>,
    data: Vec<u8>,
    reencoder: ErasureEncoder,
}

impl ChunkDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            erasure: ErasureDecoder::default(),
            zstd: zstd::bulk::Decompressor::new().map_err(CodecError::Zstd)?,
            data: Vec::new(),
            reencoder: ErasureEncoder::default(),
        })
    }

    /// Rebuilds chunk `id` from `shards`, taken in the order given: the first k of one
    /// encoding that verify are tried first, so callers list the shards they prefer
    /// (data shards) first.
    pub fn decode<'a>(
        &'a mut self,
        id: ChunkId,
        shards: &[ShardBytes<'a>],
    ) -> Result<Decoded<'a>, CodecError> {
        let (verified, output, used) = self.decode_any(id, shards)?;
        let group = &verified.groups[used.group];
        let header = ShardHeader {
            index: ShardIndex(0),
            ..group.header
        };
        let this: &'a Self = self;
        let data: &'a [u8] = match output {
            Output::Decompressed => &this.data,
            Output::Stream => this.erasure.stream(),
            Output::Payload(position) => &shards[position].payload[..header.stream_len as usize],
        };
        let k = usize::from(header.k);
        let used_parity = used.indexes.iter().any(|&i| i >= k);
        Ok(Decoded {
            data,
            rejected: verified.rejected_besides(used.group),
            used_parity,
            header,
        })
    }

    /// Rebuilds chunk `id` from `shards` as [`ChunkDecoder::decode`] does, then seals
    /// the shards `wanted` of the same encoding again, byte for byte as the writer
    /// sealed them: what repair stores in place of a lost or damaged shard.
    pub fn rebuild(
        &mut self,
        id: ChunkId,
        shards: &[ShardBytes<'_>],
        wanted: &[ShardIndex],
    ) -> Result<Vec<Vec<u8>>, CodecError> {
        let (verified, output, used) = self.decode_any(id, shards)?;
        let header = verified.groups[used.group].header;
        let stream: &[u8] = match output {
            Output::Payload(position) => &shards[position].payload[..header.stream_len as usize],
            // With k = 1 the stream is any one payload; otherwise the erasure decoder
            // still holds it (decompression wrote elsewhere).
            _ if header.k == 1 => {
                &shards[used.first_position].payload[..header.stream_len as usize]
            }
            _ => self.erasure.stream(),
        };
        let payloads = self.reencoder.encode(stream, header.k, header.m)?;
        let width = usize::from(header.k) + usize::from(header.m);
        wanted
            .iter()
            .map(|&index| {
                let i = usize::from(index.get());
                if i >= width {
                    return Err(CodecError::UnsupportedScheme {
                        k: header.k,
                        m: header.m,
                    });
                }
                let payload = payloads.get(i);
                let sealed = ShardHeader { index, ..header }.encode(payload);
                Ok([&sealed[..], payload].concat())
            })
            .collect()
    }

    /// Verifies and groups `shards`, then tries k-subsets of each group with k shards
    /// until one rebuilds chunk `id`.
    fn decode_any<'a>(
        &mut self,
        id: ChunkId,
        shards: &[ShardBytes<'a>],
    ) -> Result<(Verified<'a>, Output, Attempt), CodecError> {
        let verified = verify_shards(id, shards);
        let mut attempts = 0;
        let mut last_failure = None;
        for (g, group) in verified.groups.iter().enumerate() {
            let k = usize::from(group.header.k);
            if group.members.len() < k {
                continue;
            }
            let mut combination: Vec<usize> = (0..k).collect();
            loop {
                if attempts == MAX_DECODE_ATTEMPTS {
                    break;
                }
                attempts += 1;
                match self.attempt(id, group, &combination) {
                    Ok(output) => {
                        let indexes = combination
                            .iter()
                            .map(|&c| usize::from(group.members[c].index.get()))
                            .collect();
                        let first_position = group.members[combination[0]].position;
                        return Ok((
                            verified,
                            output,
                            Attempt {
                                group: g,
                                indexes,
                                first_position,
                            },
                        ));
                    }
                    Err(err) => last_failure = Some(err),
                }
                if !next_combination(&mut combination, group.members.len()) {
                    break;
                }
            }
        }
        if let Some(err) = last_failure {
            return Err(err);
        }
        Err(verified.not_enough(id))
    }

    /// Decodes one k-subset of a group: erasure decode, stream hash, decompression,
    /// length and BLAKE3 checked in that order.
    fn attempt(
        &mut self,
        id: ChunkId,
        group: &Group<'_>,
        combination: &[usize],
    ) -> Result<Output, CodecError> {
        let g = group.header;
        let width = usize::from(g.k) + usize::from(g.m);
        let mut by_index: [Option<&[u8]>; MAX_WIDTH] = [None; MAX_WIDTH];
        for &c in combination {
            let member = &group.members[c];
            by_index[usize::from(member.index.get())] = Some(member.payload);
        }
        let stream = self.erasure.decode(
            g.k,
            g.m,
            g.payload_len as usize,
            g.stream_len as usize,
            &by_index[..width],
        )?;
        let actual = hive_wire::stream_hash(stream);
        if actual != g.stream_hash {
            return Err(CodecError::StreamMismatch {
                chunk: id,
                expected: g.stream_hash,
                actual,
            });
        }
        let output = if g.compressed {
            self.data.clear();
            self.data.reserve_exact(g.chunk_len as usize);
            self.zstd
                .decompress_to_buffer(stream, &mut self.data)
                .map_err(|source| CodecError::Decompress { chunk: id, source })?;
            Output::Decompressed
        } else if g.k == 1 {
            Output::Payload(group.members[combination[0]].position)
        } else {
            Output::Stream
        };
        let data: &[u8] = match output {
            Output::Decompressed => &self.data,
            _ => stream,
        };
        if data.len() != g.chunk_len as usize {
            return Err(CodecError::LengthMismatch {
                chunk: id,
                expected: g.chunk_len,
                actual: data.len(),
            });
        }
        let actual = chunk_id(data);
        if actual != id {
            return Err(CodecError::HashMismatch {
                expected: id,
                actual,
            });
        }
        Ok(output)
    }
}

/// Advances `c` (ascending positions below `n`) to the next k-subset in lexicographic
/// order; `false` after the last.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    for i in (0..k).rev() {
        if c[i] < n - k + i {
            c[i] += 1;
            for j in i + 1..k {
                c[j] = c[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// A verified shard.
struct Member<'a> {
    /// Its position among the shards offered.
    position: usize,
    index: ShardIndex,
    payload: &'a [u8],
}

/// The verified shards of one encoding, in the order offered, one per index.
struct Group<'a> {
    header: ShardHeader,
    members: Vec<Member<'a>>,
}

/// Which group and which shard indexes a successful decode used.
struct Attempt {
    group: usize,
    indexes: Vec<usize>,
    /// Where the first shard used was offered.
    first_position: usize,
}

/// The shards that passed verification, by encoding, and those that did not.
struct Verified<'a> {
    groups: Vec<Group<'a>>,
    rejected: Vec<RejectedShard>,
}

impl Verified<'_> {
    /// Every refusal, and the shards of encodings other than `used` (they are valid
    /// shards of another encoding, which repair replaces).
    fn rejected_besides(&self, used: usize) -> Vec<RejectedShard> {
        let mut rejected = self.rejected.clone();
        for (g, group) in self.groups.iter().enumerate() {
            if g != used {
                rejected.extend(group.members.iter().map(|m| RejectedShard {
                    position: m.position,
                    reason: ShardRejection::Inconsistent,
                }));
            }
        }
        rejected.sort_unstable_by_key(|r| r.position);
        rejected
    }

    /// The error for too few shards: the largest group's count against its k.
    fn not_enough(self, id: ChunkId) -> CodecError {
        let best = self.groups.iter().max_by_key(|g| g.members.len());
        match best {
            None => CodecError::NoIntactShards {
                chunk: id,
                rejected: self.rejected,
            },
            Some(group) => {
                let have = group.members.len();
                let need = usize::from(group.header.k);
                let best_at = group.members.first().map(|m| m.position);
                let mut rejected = self.rejected.clone();
                for other in &self.groups {
                    if other.members.first().map(|m| m.position) != best_at {
                        rejected.extend(other.members.iter().map(|m| RejectedShard {
                            position: m.position,
                            reason: ShardRejection::Inconsistent,
                        }));
                    }
                }
                rejected.sort_unstable_by_key(|r| r.position);
                CodecError::NotEnoughShards {
                    chunk: id,
                    have,
                    need,
                    rejected,
                }
            }
        }
    }
}

/// Verifies every offered shard and groups the intact ones by encoding.
fn verify_shards<'a>(id: ChunkId, shards: &[ShardBytes<'a>]) -> Verified<'a> {
    let mut rejected = Vec::new();
    let mut groups: Vec<Group<'a>> = Vec::new();
    for (position, offered) in shards.iter().enumerate() {
        let shard = match offered.verify(id) {
            Ok(shard) => shard,
            Err(reason) => {
                rejected.push(RejectedShard { position, reason });
                continue;
            }
        };
        let index = shard.header.index;
        let group = match groups
            .iter_mut()
            .position(|g| g.header.same_encoding(&shard.header))
        {
            Some(g) => &mut groups[g],
            None => {
                groups.push(Group {
                    header: shard.header,
                    members: Vec::new(),
                });
                groups.last_mut().expect("invariant: just pushed")
            }
        };
        if group.members.iter().any(|m| m.index == index) {
            rejected.push(RejectedShard {
                position,
                reason: ShardRejection::Duplicate(index),
            });
            continue;
        }
        group.members.push(Member {
            position,
            index,
            payload: shard.payload,
        });
    }
    Verified { groups, rejected }
}

#[cfg(test)]
mod tests {
    use super::next_combination;

    #[test]
    fn combinations_are_every_k_subset_once() {
        let mut c = vec![0, 1];
        let mut seen = vec![c.clone()];
        while next_combination(&mut c, 4) {
            seen.push(c.clone());
        }
        assert_eq!(
            seen,
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
    }
}
