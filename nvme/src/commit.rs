//! Group commit: one writer task per store takes every append waiting in the queue,
//! writes them in as few writes as their segments allow, makes them durable with one
//! fdatasync, and only then answers each of them and shows them in the index. The
//! deletes of a batch share delete records.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::constants::{BLOCK, DELETES_PER_RECORD, MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
use crate::device::Device;
use crate::error::StoreError;
use crate::format::{
    DELETE_ENTRY_LEN, DeleteEntry, RECORD_HEADER_LEN, RecordHeader, RecordKind, SegmentHeader,
    entries_checksum,
};
use crate::state::{Key, Location, State, Tombstone};

/// What to append.
pub(crate) enum Op {
    /// Store a verified shard under `key`. With `moves: Some(from)` this is reclaim
    /// moving a record: it becomes visible only if the index still points at `from`.
    Put {
        key: Key,
        shard: Vec<u8>,
        moves: Option<Location>,
    },
    /// Delete the put of `key` held in `segment`'s life `life`. With `carried: true`
    /// this is reclaim carrying an earlier delete forward out of a segment it is
    /// freeing; the index is untouched.
    Delete {
        key: Key,
        segment: u32,
        life: u64,
        carried: bool,
    },
}

pub(crate) struct Request {
    pub op: Op,
    pub reply: flume::Sender<Result<(), StoreError>>,
}

impl Request {
    /// Bytes this request adds to a batch (a delete's share of a record, rounded up).
    fn cost(&self) -> usize {
        match &self.op {
            Op::Put { shard, .. } => {
                RecordHeader::blocks_for(shard.len()) as usize * BLOCK as usize
            }
            Op::Delete { .. } => DELETE_ENTRY_LEN,
        }
    }

    fn answer(self, result: Result<(), StoreError>) {
        // The caller may have stopped waiting (its future was dropped); nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// Runs until every sender is gone.
pub(crate) async fn writer(
    state: Rc<RefCell<State>>,
    device: Rc<Device>,
    queue: flume::Receiver<Request>,
) {
    let mut carry: Option<Request> = None;
    loop {
        let first = match carry.take() {
            Some(request) => request,
            None => match queue.recv_async().await {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        let mut bytes = first.cost();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_RECORDS {
            let Ok(next) = queue.try_recv() else { break };
            if bytes + next.cost() > MAX_BATCH_BYTES {
                carry = Some(next);
                break;
            }
            bytes += next.cost();
            batch.push(next);
        }
        commit(&state, &device, batch).await;
    }
}

/// One record to write: a put, or a pack of deletes.
struct Record {
    requests: Vec<Request>,
    kind: RecordKind,
    at: Location,
    seq: u64,
}

impl Record {
    fn data_len(&self) -> usize {
        match (&self.kind, &self.requests[..]) {
            (RecordKind::Put, [request]) => match &request.op {
                Op::Put { shard, .. } => shard.len(),
                Op::Delete { .. } => unreachable!("a put record holds a put"),
            },
            (RecordKind::Put, _) => unreachable!("a put record holds one request"),
            (RecordKind::Delete, requests) => requests.len() * DELETE_ENTRY_LEN,
        }
    }
}

impl Record {
    /// The key a put record is filed under; a delete record has none.
    fn key(&self) -> Key {
        match (&self.kind, &self.requests[0].op) {
            (RecordKind::Put, Op::Put { key, .. }) => *key,
            _ => (hive_wire::ChunkId([0; 32]), hive_wire::ShardIndex(0)),
        }
    }
}

/// A run of consecutive blocks in one segment, written with one write.
struct Group {
    segment: u32,
    first_block: u32,
    buffer: DmaBuffer,
}

async fn commit(state: &Rc<RefCell<State>>, device: &Device, batch: Vec<Request>) {
    if let Err(err) = state.borrow().check_writable() {
        for request in batch {
            request.answer(Err(err.clone()));
        }
        return;
    }
    let (records, groups) = plan(state, device, batch);
    if records.is_empty() {
        return;
    }
    let mut result = Ok(());
    for group in groups {
        let pos = state.borrow().offset(group.segment, group.first_block);
        if let Err(err) = device.write(Rc::new(group.buffer), pos).await {
            result = Err(state.borrow_mut().poison("write", err));
            break;
        }
    }
    if result.is_ok()
        && let Err(err) = device.sync().await
    {
        result = Err(state.borrow_mut().poison("fdatasync", err));
    }
    if let Err(err) = result {
        for request in records.into_iter().flat_map(|r| r.requests) {
            request.answer(Err(err.clone()));
        }
        return;
    }
    let mut s = state.borrow_mut();
    s.commits += 1;
    for record in records {
        for request in record.requests {
            apply(&mut s, &request.op, record.at);
            request.answer(Ok(()));
        }
    }
}

/// Makes one durable append visible in the in-memory state.
fn apply(s: &mut State, op: &Op, at: Location) {
    match op {
        Op::Put { key, moves, .. } => {
            if moves.is_none_or(|from| s.index.get(key) == Some(from)) {
                s.insert(*key, at);
            }
        }
        Op::Delete {
            key,
            segment,
            life,
            carried,
        } => {
            if !carried {
                s.remove(key, *segment, *life);
            }
            s.tombstones[at.segment as usize].push(Tombstone {
                key: *key,
                segment: *segment,
                life: *life,
            });
        }
    }
}

/// Groups the batch into records (each put alone, deletes packed), gives each a place,
/// and lays them out in write buffers. Records that find no room are answered
/// `StoreFull` here.
fn plan(
    state: &Rc<RefCell<State>>,
    device: &Device,
    batch: Vec<Request>,
) -> (Vec<Record>, Vec<Group>) {
    let mut s = state.borrow_mut();
    let mut unplaced: Vec<Record> = Vec::new();
    let mut deletes: Vec<Request> = Vec::new();
    for request in batch {
        match request.op {
            Op::Put { .. } => unplaced.push(Record {
                requests: vec![request],
                kind: RecordKind::Put,
                at: Location::default(),
                seq: 0,
            }),
            Op::Delete { .. } => deletes.push(request),
        }
    }
    while !deletes.is_empty() {
        let rest = deletes.split_off(deletes.len().min(DELETES_PER_RECORD));
        unplaced.push(Record {
            requests: std::mem::replace(&mut deletes, rest),
            kind: RecordKind::Delete,
            at: Location::default(),
            seq: 0,
        });
    }

    let mut records = Vec::with_capacity(unplaced.len());
    let mut summaries: Vec<(u32, u32, Vec<u8>)> = Vec::new();
    let mut spans: Vec<(u32, u32, u32)> = Vec::new(); // segment, first block, end block
    for mut record in unplaced {
        let blocks = RecordHeader::blocks_for(record.data_len());
        // Deletes and reclaim's moves may use the reserved segments; new puts may not.
        let reserve = record
            .requests
            .iter()
            .any(|r| !matches!(r.op, Op::Put { moves: None, .. }));
        match s.place(blocks, reserve, record.kind, record.key()) {
            Err(err) => {
                for request in record.requests {
                    request.answer(Err(err.clone()));
                }
            }
            Ok(placed) => {
                if let Some(summary) = &placed.sealed {
                    let first = s.record_area();
                    let blocks = s.sb.segment_blocks() - first;
                    summaries.push((summary.segment, first, summary.encode(blocks)));
                }
                let start = if placed.opens_segment {
                    0
                } else {
                    placed.block
                };
                let end = placed.block + blocks;
                match spans.last_mut() {
                    Some(span) if span.0 == placed.segment && span.2 == start => span.2 = end,
                    _ => spans.push((placed.segment, start, end)),
                }
                record.seq = placed.seq;
                record.at = Location {
                    segment: placed.segment,
                    block: placed.block,
                    blocks,
                };
                records.push(record);
            }
        }
    }
    let mut groups: Vec<Group> = spans
        .iter()
        .map(|&(segment, first, end)| Group {
            segment,
            first_block: first,
            buffer: device.buffer(((end - first) as u64 * BLOCK) as usize),
        })
        .collect();
    // Summaries of the segments this batch filled, made durable with it.
    let summary_groups: Vec<Group> = summaries
        .into_iter()
        .map(|(segment, first, bytes)| {
            let mut buffer = device.buffer(bytes.len());
            buffer.as_bytes_mut().copy_from_slice(&bytes);
            Group {
                segment,
                first_block: first,
                buffer,
            }
        })
        .collect();
    for group in &mut groups {
        if group.first_block == 0 {
            let base_seq = s.segments[group.segment as usize]
                .base_seq
                .expect("invariant: a segment being written has a base sequence number");
            SegmentHeader {
                store_id: s.sb.store_id,
                segment: group.segment,
                base_seq,
            }
            .encode_into(group.buffer.as_bytes_mut());
        }
    }
    for record in &records {
        let at = record.at;
        let group = groups
            .iter_mut()
            .find(|g| {
                g.segment == at.segment
                    && g.first_block <= at.block
                    && (at.block - g.first_block) as usize * (BLOCK as usize) < g.buffer.len()
            })
            .expect("invariant: every planned record lies in a group");
        let start = (at.block - group.first_block) as usize * BLOCK as usize;
        let out =
            &mut group.buffer.as_bytes_mut()[start..start + at.blocks as usize * BLOCK as usize];
        encode_record(record, out);
    }
    groups.extend(summary_groups);
    (records, groups)
}

/// Writes a record (header, then shard or delete entries) into `out`.
fn encode_record(record: &Record, out: &mut [u8]) {
    let at = record.at;
    let data_len = record.data_len();
    let data = &mut out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + data_len];
    let (key, checksum, entries) = match record.kind {
        RecordKind::Put => match &record.requests[0].op {
            Op::Put { key, shard, .. } => {
                data.copy_from_slice(shard);
                (*key, 0, 0)
            }
            Op::Delete { .. } => unreachable!("a put record holds a put"),
        },
        RecordKind::Delete => {
            for (request, slot) in record
                .requests
                .iter()
                .zip(data.chunks_exact_mut(DELETE_ENTRY_LEN))
            {
                let Op::Delete {
                    key, segment, life, ..
                } = &request.op
                else {
                    unreachable!("a delete record holds deletes")
                };
                DeleteEntry {
                    chunk_id: key.0,
                    index: key.1,
                    target_segment: *segment,
                    target_life: *life,
                }
                .encode_into(slot);
            }
            let count = u32::try_from(record.requests.len()).expect("invariant: bounded pack");
            (
                (hive_wire::ChunkId([0; 32]), hive_wire::ShardIndex(0)),
                entries_checksum(data),
                count,
            )
        }
    };
    RecordHeader {
        kind: record.kind,
        seq: record.seq,
        segment: at.segment,
        block: at.block,
        chunk_id: key.0,
        index: key.1,
        data_len: u32::try_from(data_len).expect("invariant: records are at most 16 MiB"),
        entries_checksum: checksum,
        entries,
        blocks: at.blocks,
    }
    .encode_into(out);
}
