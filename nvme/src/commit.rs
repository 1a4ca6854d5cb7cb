//! Group commit: one writer task per store takes every append waiting in the queue,
//! writes them in as few writes as their segments allow, makes them durable with one
//! fdatasync, and only then answers each of them and shows them in the index.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::constants::{BLOCK, MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
use crate::device::Device;
use crate::error::StoreError;
use crate::format::{RECORD_HEADER_LEN, RecordHeader, RecordKind, SegmentHeader};
use crate::state::{Key, Location, State};

/// What to append.
pub(crate) enum Op {
    /// Store a verified shard under `key`.
    Put { key: Key, shard: Vec<u8> },
    /// Delete the put at `target`.
    Delete { key: Key, target: Location },
}

pub(crate) struct Request {
    pub op: Op,
    pub reply: flume::Sender<Result<(), StoreError>>,
}

impl Request {
    fn blocks(&self) -> u32 {
        match &self.op {
            Op::Put { shard, .. } => RecordHeader::blocks_for(shard.len()),
            Op::Delete { .. } => RecordHeader::blocks_for(0),
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
        let mut bytes = first.blocks() as usize * BLOCK as usize;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_RECORDS {
            let Ok(next) = queue.try_recv() else { break };
            let size = next.blocks() as usize * BLOCK as usize;
            if bytes + size > MAX_BATCH_BYTES {
                carry = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        commit(&state, &device, batch).await;
    }
}

/// A run of consecutive blocks in one segment, written with one write.
struct Group {
    segment: u32,
    first_block: u32,
    buffer: DmaBuffer,
}

struct Planned {
    request: Request,
    at: Location,
}

async fn commit(state: &Rc<RefCell<State>>, device: &Device, batch: Vec<Request>) {
    if let Err(err) = state.borrow().check_writable() {
        for request in batch {
            request.answer(Err(err.clone()));
        }
        return;
    }
    let (planned, groups) = plan(state, device, batch);
    if planned.is_empty() {
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
        for p in planned {
            p.request.answer(Err(err.clone()));
        }
        return;
    }
    let mut s = state.borrow_mut();
    s.commits += 1;
    for p in planned {
        match &p.request.op {
            Op::Put { key, .. } => s.insert(*key, p.at),
            Op::Delete { key, target } => {
                s.remove(key, target.seq);
            }
        }
        p.request.answer(Ok(()));
    }
}

/// Assigns every request a place and lays the batch out in write buffers. Requests that
/// find no room are answered `StoreFull` here.
fn plan(
    state: &Rc<RefCell<State>>,
    device: &Device,
    batch: Vec<Request>,
) -> (Vec<Planned>, Vec<Group>) {
    let mut s = state.borrow_mut();
    let mut planned = Vec::with_capacity(batch.len());
    let mut spans: Vec<(u32, u32, u32)> = Vec::new(); // segment, first block, end block
    for request in batch {
        let blocks = request.blocks();
        match s.place(blocks) {
            Err(err) => request.answer(Err(err)),
            Ok(placed) => {
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
                let at = Location {
                    seq: placed.seq,
                    segment: placed.segment,
                    block: placed.block,
                    blocks,
                };
                planned.push(Planned { request, at });
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
    for p in &planned {
        let group = groups
            .iter_mut()
            .find(|g| {
                g.segment == p.at.segment
                    && g.first_block <= p.at.block
                    && (p.at.block - g.first_block) as usize * (BLOCK as usize) < g.buffer.len()
            })
            .expect("invariant: every planned record lies in a group");
        let at = (p.at.block - group.first_block) as usize * BLOCK as usize;
        let out = &mut group.buffer.as_bytes_mut()[at..at + p.at.blocks as usize * BLOCK as usize];
        let (kind, key, data, target) = match &p.request.op {
            Op::Put { key, shard } => (RecordKind::Put, key, &shard[..], None),
            Op::Delete { key, target } => (RecordKind::Delete, key, &[][..], Some(*target)),
        };
        RecordHeader {
            kind,
            seq: p.at.seq,
            segment: p.at.segment,
            block: p.at.block,
            chunk_id: key.0,
            index: key.1,
            data_len: u32::try_from(data.len()).expect("invariant: shards are at most 16 MiB"),
            target_seq: target.map_or(0, |t| t.seq),
            target_segment: target.map_or(0, |t| t.segment),
            blocks: p.at.blocks,
        }
        .encode_into(out);
        out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + data.len()].copy_from_slice(data);
    }
    (planned, groups)
}
