//! The census: how the primary of a placement group finds which of the group's chunks
//! lack shards, without trusting any report. Pure; the repairer feeds it answers.
//!
//! For a group (placement group, storage class k + m) the holders are the k + m nodes
//! `ClusterMap::place` names, holder i keeping shard index i. The primary (the first
//! holder the map shows up) asks each up holder for the digest of the set of chunks it
//! holds its shard of ([`hive_wire::ChunkSetDigest`]: answered from the index, no
//! read). Equal digests mean every up holder has a shard of every chunk any of them
//! has: nothing is missing among them ([`judge`]). Otherwise the holders' lists of
//! chunk ids are merged, a page at a time, in ascending order ([`ListMerge`]): each
//! chunk comes out with the set of holders that have its shard, in memory bounded by
//! the holders' pages, however large the group.
//!
//! What is not found this way: a chunk whose shards are gone from every holder
//! (nothing is left to rebuild it from anyway), and a shard whose bytes rotted since
//! it was written, until scrub or a read finds it and drops it (then it is missing).

use std::collections::VecDeque;

use hive_wire::ChunkId;
use hive_wire::net::shard_service::GroupDigest;

/// What the digests of a group's up holders say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every holder that answered has a shard of the same `chunks` chunks: each of
    /// them has `healthy` intact shards as far as the census can tell.
    Whole {
        /// Chunks in the group.
        chunks: u64,
        /// Holders that answered (down holders' shards are not counted healthy).
        healthy: u8,
    },
    /// The holders disagree: their lists must be compared.
    Differ,
    /// No holder answered.
    Unknown,
}

/// Judges a group from its holders' digests, in shard-index order (`None`: the holder
/// is down or did not answer).
pub fn judge(digests: &[Option<GroupDigest>]) -> Verdict {
    let mut answered = digests.iter().flatten();
    let Some(first) = answered.next() else {
        return Verdict::Unknown;
    };
    if answered.all(|d| d == first) {
        let healthy = digests.iter().filter(|d| d.is_some()).count();
        Verdict::Whole {
            chunks: first.count,
            healthy: u8::try_from(healthy).expect("invariant: at most 48 holders"),
        }
    } else {
        Verdict::Differ
    }
}

/// A chunk of a group, and which holders have its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHealth {
    /// The chunk.
    pub chunk: ChunkId,
    /// Bit i set: holder i (shard index i) has its shard.
    pub present: u64,
}

#[derive(Debug)]
struct Holder {
    /// Ids received and not yet merged, ascending.
    buffer: VecDeque<ChunkId>,
    /// The last id received: the next page starts after it.
    cursor: Option<ChunkId>,
    /// Its list has been read to the end.
    done: bool,
}

/// Merges the sorted chunk lists of a group's holders, a page at a time.
///
/// The caller asks [`ListMerge::wants`] whose next page it needs, fetches it, and
/// [`ListMerge::feed`]s it; [`ListMerge::next_chunk`] yields chunks in ascending order as
/// soon as every listing holder's next id is known.
#[derive(Debug)]
pub struct ListMerge {
    /// By shard index; `None` for a holder that is not listed (down, or not asked).
    holders: Vec<Option<Holder>>,
}

impl ListMerge {
    /// A merge over `width` holders, of which those with bit i set in `listed` are
    /// asked for their lists.
    pub fn new(width: usize, listed: u64) -> Self {
        let holders = (0..width)
            .map(|i| {
                (listed & (1 << i) != 0).then(|| Holder {
                    buffer: VecDeque::new(),
                    cursor: None,
                    done: false,
                })
            })
            .collect();
        Self { holders }
    }

    /// The holder whose next page is needed before anything more can be merged, and
    /// the id its page must start after.
    pub fn wants(&self) -> Option<(usize, Option<ChunkId>)> {
        self.holders.iter().enumerate().find_map(|(i, h)| {
            let h = h.as_ref()?;
            (h.buffer.is_empty() && !h.done).then_some((i, h.cursor))
        })
    }

    /// Gives holder `i` its next page; `last` when the holder said it has no more
    /// (its page was shorter than asked). Pages must ascend, each past the last.
    pub fn feed(&mut self, i: usize, page: Vec<ChunkId>, last: bool) {
        let Some(Some(h)) = self.holders.get_mut(i) else {
            return;
        };
        for chunk in page {
            // An answer that does not ascend is ignored past that point (a holder
            // cannot make the merge loop or go back).
            if h.cursor.is_some_and(|c| chunk <= c) {
                continue;
            }
            h.cursor = Some(chunk);
            h.buffer.push_back(chunk);
        }
        h.done = last;
    }

    /// The next chunk in ascending order with the holders that have it; `None` when a
    /// page is wanted first or every list is merged.
    pub fn next_chunk(&mut self) -> Option<ChunkHealth> {
        if self.wants().is_some() {
            return None;
        }
        let smallest = self
            .holders
            .iter()
            .flatten()
            .filter_map(|h| h.buffer.front())
            .min()
            .copied()?;
        let mut present = 0u64;
        for (i, h) in self.holders.iter_mut().enumerate() {
            if let Some(h) = h
                && h.buffer.front() == Some(&smallest)
            {
                h.buffer.pop_front();
                present |= 1 << i;
            }
        }
        Some(ChunkHealth {
            chunk: smallest,
            present,
        })
    }

    /// Whether every list has been merged.
    pub fn finished(&self) -> bool {
        self.holders
            .iter()
            .flatten()
            .all(|h| h.done && h.buffer.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_testkit::Rng;

    fn digest(n: u64) -> GroupDigest {
        GroupDigest {
            count: n,
            sum: n * 31,
            xor: n * 7,
        }
    }

    #[test]
    fn digests_agree_differ_or_say_nothing() {
        let d = Some(digest(5));
        assert_eq!(
            judge(&[d, d, None, d]),
            Verdict::Whole {
                chunks: 5,
                healthy: 3
            }
        );
        assert_eq!(judge(&[d, Some(digest(4)), d]), Verdict::Differ);
        assert_eq!(judge(&[None, None]), Verdict::Unknown);
    }

    fn id(n: u32) -> ChunkId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        ChunkId(b)
    }

    /// Runs a merge over holder lists served in pages of `page` ids.
    fn merge(lists: &[Option<Vec<ChunkId>>], page: usize) -> Vec<ChunkHealth> {
        let listed = lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .fold(0u64, |m, (i, _)| m | 1 << i);
        let mut merge = ListMerge::new(lists.len(), listed);
        let mut out = Vec::new();
        loop {
            while let Some(c) = merge.next_chunk() {
                out.push(c);
            }
            let Some((i, after)) = merge.wants() else {
                break;
            };
            let list = lists[i].as_ref().expect("only listed holders are asked");
            let rest: Vec<ChunkId> = list
                .iter()
                .filter(|c| after.is_none_or(|a| **c > a))
                .copied()
                .collect();
            let taken: Vec<ChunkId> = rest.iter().take(page).copied().collect();
            merge.feed(i, taken, rest.len() < page);
        }
        assert!(merge.finished());
        out
    }

    #[test]
    fn the_merge_names_every_chunk_with_its_holders_whatever_the_page_size() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let width = 1 + rng.below(6);
            let chunks: Vec<ChunkId> = (0..rng.below(60) as u32).map(|n| id(n * 3)).collect();
            let mut lists: Vec<Option<Vec<ChunkId>>> = Vec::new();
            let mut expected: std::collections::BTreeMap<ChunkId, u64> = Default::default();
            for i in 0..width {
                if rng.below(5) == 0 {
                    lists.push(None);
                    continue;
                }
                let list: Vec<ChunkId> = chunks
                    .iter()
                    .filter(|_| rng.below(4) != 0)
                    .copied()
                    .collect();
                for c in &list {
                    *expected.entry(*c).or_default() |= 1 << i;
                }
                lists.push(Some(list));
            }
            let page = 1 + rng.below(7);
            let got = merge(&lists, page);
            let want: Vec<ChunkHealth> = expected
                .into_iter()
                .map(|(chunk, present)| ChunkHealth { chunk, present })
                .collect();
            assert_eq!(got, want, "seed {seed}, page {page}");
        }
    }

    #[test]
    fn a_holder_that_does_not_ascend_cannot_loop_the_merge() {
        let mut merge = ListMerge::new(1, 1);
        merge.feed(0, vec![id(5), id(3), id(5), id(9)], false);
        assert_eq!(merge.next_chunk().map(|c| c.chunk), Some(id(5)));
        assert_eq!(merge.next_chunk().map(|c| c.chunk), Some(id(9)));
        assert_eq!(merge.wants(), Some((0, Some(id(9)))));
        merge.feed(0, vec![id(1)], true);
        assert!(merge.next_chunk().is_none());
        assert!(merge.finished());
    }
}
