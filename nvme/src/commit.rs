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
    DELETE_ENTRY_LEN, DELETE_HEAD_LEN, DeleteEntry, RECORD_HEADER_LEN, RecordHeader, RecordKind,
    SegmentHeader, entries_checksum,
};
use crate::state::{Key, Location, State, Tombstone};
use hive_wire::EncodingTag;

/// What to append.
pub(crate) enum Op {
    /// Store a verified shard under `key`. With `moves: Some(from)` this is reclaim
    /// moving a record: it becomes visible only if the index still points at `from`.
    Put {
        key: Key,
        /// The shard's encoding.
        tag: EncodingTag,
        /// The record, laid out by [`record_buffer`]: header space, shard, zero padding.
        record: Option<DmaBuffer>,
        data_len: usize,
        moves: Option<Location>,
    },
    /// Delete a put of `key`: which one, `of` says.
    Delete { key: Key, of: DeleteOf },
}

/// Which put of a key a delete removes.
#[derive(Clone, Copy)]
pub(crate) enum DeleteOf {
    /// The one the index holds when the delete is planned, after every earlier batch
    /// (so after any move reclaim made of it meanwhile). Nothing, if none is.
    Current,
    /// The record at byte `offset` of `segment`'s life `life`, only if the index still holds
    /// that very record when the delete is planned (a damaged record scrub found, or
    /// garbage collection's choice).
    Exact {
        segment: u32,
        offset: u32,
        life: u64,
    },
    /// Reclaim carrying an earlier delete of the put in `segment`'s life `life`
    /// forward out of a segment it is freeing; the index is untouched.
    Carried { segment: u32, life: u64 },
}

impl DeleteOf {
    /// The put the record names.
    fn target(self) -> (u32, u64) {
        match self {
            DeleteOf::Exact { segment, life, .. } | DeleteOf::Carried { segment, life } => {
                (segment, life)
            }
            DeleteOf::Current => unreachable!("a delete is resolved when it is planned"),
        }
    }
}

pub(crate) struct Request {
    pub op: Op,
    pub reply: flume::Sender<Result<(), StoreError>>,
}

impl Request {
    /// Bytes this request adds to a batch (a delete's share of a record, rounded up).
    fn cost(&self) -> usize {
        match &self.op {
            Op::Put { data_len, .. } => RecordHeader::len_for(*data_len) as usize,
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
                Op::Put { data_len, .. } => *data_len,
                Op::Delete { .. } => unreachable!("a put record holds a put"),
            },
            (RecordKind::Put, _) => unreachable!("a put record holds one request"),
            (RecordKind::Delete, requests) => DELETE_HEAD_LEN + requests.len() * DELETE_ENTRY_LEN,
        }
    }
}

impl Record {
    /// The key a put record is filed under and its shard's encoding; a delete record
    /// has neither.
    fn key(&self) -> (Key, EncodingTag) {
        match (&self.kind, &self.requests[0].op) {
            (RecordKind::Put, Op::Put { key, tag, .. }) => (*key, *tag),
            _ => (hive_wire::ShardName::NONE, EncodingTag(0)),
        }
    }
}

/// A run of consecutive records in one segment, written with one write.
struct Span {
    segment: u32,
    /// Byte offset of the run's first record.
    start: u32,
    /// The byte after the run's last record.
    end: u32,
    /// Whether the run opens the segment (block 0, its header, is written with it).
    opens: bool,
}

impl Span {
    /// Where the run's write starts: block 0 if it opens the segment, else the block
    /// its first record starts in (written again, when an earlier commit's records
    /// end in it).
    fn write_start(&self) -> u32 {
        if self.opens {
            0
        } else {
            self.start - self.start % BLOCK as u32
        }
    }
}

/// Consecutive whole blocks of one segment, written with one write.
struct Group {
    segment: u32,
    /// Byte offset of the first block within the segment.
    at: u32,
    buffer: DmaBuffer,
}

/// Lays out a put record in a buffer of its own: room for the header (filled when the
/// record is placed), the shard, and zeroed padding to the block. Done when the put
/// arrives, so the shard is copied once, into memory the device can write directly (a
/// record that starts a block and runs alone is written from it as it is).
pub(crate) fn record_buffer(device: &Device, shard: &[u8]) -> DmaBuffer {
    let len = buffer_len(shard.len());
    let mut buffer = device.buffer(len);
    let bytes = buffer.as_bytes_mut();
    bytes[..RECORD_HEADER_LEN].fill(0);
    bytes[RECORD_HEADER_LEN..RECORD_HEADER_LEN + shard.len()].copy_from_slice(shard);
    bytes[RECORD_HEADER_LEN + shard.len()..].fill(0);
    buffer
}

/// Bytes of a put's record buffer: its record, padded to whole blocks.
pub(crate) fn buffer_len(data_len: usize) -> usize {
    (RecordHeader::len_for(data_len) as usize).next_multiple_of(BLOCK as usize)
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
        let pos = state.borrow().offset(group.segment, group.at);
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
        Op::Delete { key, of } => {
            let (segment, life) = of.target();
            if !matches!(of, DeleteOf::Carried { .. }) {
                s.remove(key, segment, life);
            }
            s.tombstones[at.segment as usize].push(Tombstone {
                key: *key,
                segment,
                life,
            });
        }
    }
}

/// Settles what each request of the batch does against the index as every earlier
/// batch left it, and answers those that have nothing left to do:
/// - a delete of the current put names the put the index holds, or is done (none is);
///   a delete of an exact record is done if the index holds another one (a newer put
///   or a move superseded it);
/// - a reclaim move is dropped if its record is no longer the one indexed, or if
///   another put or delete of the same key is in the batch. A move never outlives
///   what superseded its source, so neither the index nor a replay at open (which
///   takes records in sequence order, a move like any put) brings back a shard that
///   was deleted or replaced while reclaim copied it.
fn resolve(s: &State, batch: Vec<Request>) -> Vec<Request> {
    let mut kept = Vec::with_capacity(batch.len());
    for mut request in batch {
        if let Op::Delete { key, of } = &mut request.op {
            let indexed = s
                .index
                .get(key)
                .map(|at| (at.segment, at.offset, s.life_of(&at)));
            let settled = match (*of, indexed) {
                (DeleteOf::Carried { .. }, _) => Some(*of),
                (DeleteOf::Current, Some((segment, offset, life))) => Some(DeleteOf::Exact {
                    segment,
                    offset,
                    life,
                }),
                (
                    DeleteOf::Exact {
                        segment,
                        offset,
                        life,
                    },
                    Some(now),
                ) if (segment, offset, life) == now => Some(*of),
                // Nothing indexed, or no longer the record named: nothing to delete.
                _ => None,
            };
            match settled {
                Some(settled) => *of = settled,
                None => {
                    request.answer(Ok(()));
                    continue;
                }
            }
        }
        kept.push(request);
    }
    let superseding: std::collections::HashSet<Key> = kept
        .iter()
        .filter_map(|r| match &r.op {
            Op::Put {
                key, moves: None, ..
            } => Some(*key),
            Op::Delete {
                key,
                of: DeleteOf::Exact { .. },
            } => Some(*key),
            _ => None,
        })
        .collect();
    let (kept, dropped): (Vec<Request>, Vec<Request>) =
        kept.into_iter().partition(|r| match &r.op {
            Op::Put {
                key,
                moves: Some(from),
                ..
            } => s.index.get(key) == Some(*from) && !superseding.contains(key),
            _ => true,
        });
    for request in dropped {
        request.answer(Ok(()));
    }
    kept
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
    let mut puts: Vec<Record> = Vec::new();
    let mut deletes: Vec<Request> = Vec::new();
    for request in resolve(&s, batch) {
        match request.op {
            Op::Put { .. } => puts.push(Record {
                requests: vec![request],
                kind: RecordKind::Put,
                at: Location::default(),
                seq: 0,
            }),
            Op::Delete { .. } => deletes.push(request),
        }
    }
    // Deletes first: they name puts that earlier batches committed, by segment and
    // life, so a put of the same key in this batch, which may land in the same segment,
    // must follow them (in the index now and in sequence order at replay) to survive.
    while !deletes.is_empty() {
        let rest = deletes.split_off(deletes.len().min(DELETES_PER_RECORD));
        unplaced.push(Record {
            requests: std::mem::replace(&mut deletes, rest),
            kind: RecordKind::Delete,
            at: Location::default(),
            seq: 0,
        });
    }
    unplaced.append(&mut puts);

    // What earlier commits left in the head's last block, before placing moves on.
    let resumed = s.tail.clone();
    let Placement {
        mut records,
        spans,
        summaries,
    } = place_all(&mut s, unplaced);
    let groups = lay_out(&mut s, device, &mut records, spans, summaries, &resumed);
    (records, groups)
}

/// Where a batch's records went: the records placed, their runs, and the encoded
/// summaries of the segments they filled, by segment.
struct Placement {
    records: Vec<Record>,
    spans: Vec<Span>,
    summaries: Vec<(u32, Vec<u8>)>,
}

/// The writes of a placed batch: one per run of records (see [`gather`]), one per
/// summary at its segment's end. Keeps the head's last partly filled block as its tail.
fn lay_out(
    s: &mut State,
    device: &Device,
    records: &mut [Record],
    spans: Vec<Span>,
    summaries: Vec<(u32, Vec<u8>)>,
    resumed: &[u8],
) -> Vec<Group> {
    let mut buffers: Vec<Option<DmaBuffer>> = records
        .iter_mut()
        .map(|record| Some(seal_record(device, record)))
        .collect();
    let mut groups = Vec::with_capacity(spans.len() + summaries.len());
    let mut next = 0;
    for span in spans {
        let count = records[next..]
            .iter()
            .take_while(|r| r.at.segment == span.segment && r.at.offset < span.end)
            .count();
        let group = if count == 1 && !span.opens && span.start.is_multiple_of(BLOCK as u32) {
            // One record alone, starting a block: its own buffer is written as it is.
            Group {
                segment: span.segment,
                at: span.start,
                buffer: buffers[next]
                    .take()
                    .expect("invariant: each record buffer is used once"),
            }
        } else {
            let run = &records[next..next + count];
            gather(s, device, &span, resumed, run, &buffers[next..])
        };
        if s.head == Some(span.segment) {
            // The records now end where this run does: keep its last, partly filled
            // block for the next commit to write again.
            let from = (span.end - span.end % BLOCK as u32 - group.at) as usize;
            let to = (span.end - group.at) as usize;
            s.tail = group.buffer.as_bytes()[from..to].to_vec();
        }
        groups.push(group);
        next += count;
    }
    debug_assert_eq!(next, records.len(), "every record lies in a span");
    // Summaries of the segments this batch filled, made durable with it, in each
    // segment's last blocks.
    for (segment, bytes) in summaries {
        let mut buffer = device.buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(&bytes);
        let at = s.sb.segment_size - u32::try_from(bytes.len()).expect("fits its segment");
        groups.push(Group {
            segment,
            at,
            buffer,
        });
    }
    groups
}

/// Places each record at the head, in order, and groups them into runs of
/// consecutive records (one write each); the summaries of the segments filled on the
/// way. Records that find no room are answered `StoreFull` here.
fn place_all(s: &mut State, unplaced: Vec<Record>) -> Placement {
    let mut records = Vec::with_capacity(unplaced.len());
    let mut summaries = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    for mut record in unplaced {
        let len = RecordHeader::len_for(record.data_len());
        // Deletes and reclaim's moves may use the reserved segments; new puts may not.
        let reserve = record
            .requests
            .iter()
            .any(|r| !matches!(r.op, Op::Put { moves: None, .. }));
        let placed = match s.place(len, reserve, record.kind, record.key()) {
            Ok(placed) => placed,
            Err(err) => {
                for request in record.requests {
                    request.answer(Err(err.clone()));
                }
                continue;
            }
        };
        if let Some(summary) = &placed.sealed {
            summaries.push((summary.segment, summary.encode()));
        }
        let end = placed.offset + len;
        match spans.last_mut() {
            Some(span)
                if !placed.opens_segment
                    && span.segment == placed.segment
                    && span.end == placed.offset =>
            {
                span.end = end
            }
            _ => spans.push(Span {
                segment: placed.segment,
                start: placed.offset,
                end,
                opens: placed.opens_segment,
            }),
        }
        record.seq = placed.seq;
        record.at = Location {
            segment: placed.segment,
            offset: placed.offset,
            len,
            tag: record.key().1,
        };
        records.push(record);
    }
    Placement {
        records,
        spans,
        summaries,
    }
}

/// Lays out one run in a buffer of whole blocks: the segment header if the run opens
/// the segment, or else the bytes an earlier commit left in the run's first block,
/// then the records, then zeros to the block.
fn gather(
    s: &State,
    device: &Device,
    span: &Span,
    resumed: &[u8],
    records: &[Record],
    sources: &[Option<DmaBuffer>],
) -> Group {
    let start = span.write_start();
    let end = span.end.next_multiple_of(BLOCK as u32);
    let mut buffer = device.buffer((end - start) as usize);
    let bytes = buffer.as_bytes_mut();
    if span.opens {
        let base_seq = s.segments[span.segment as usize]
            .base_seq
            .expect("invariant: a segment being written has a base sequence number");
        bytes[..BLOCK as usize].fill(0);
        SegmentHeader {
            store_id: s.sb.store_id,
            segment: span.segment,
            base_seq,
        }
        .encode_into(bytes);
    } else {
        let kept = (span.start - start) as usize;
        assert_eq!(
            resumed.len(),
            kept,
            "invariant: the head's tail is the written part of its last block"
        );
        bytes[..kept].copy_from_slice(resumed);
    }
    for (record, source) in records.iter().zip(sources) {
        let source = source.as_ref().expect("invariant: unused record buffer");
        let at = (record.at.offset - start) as usize;
        let len = record.at.len as usize;
        bytes[at..at + len].copy_from_slice(&source.as_bytes()[..len]);
    }
    bytes[(span.end - start) as usize..].fill(0);
    Group {
        segment: span.segment,
        at: start,
        buffer,
    }
}

/// Takes (a put) or builds (a delete) the record's buffer and writes its header.
fn seal_record(device: &Device, record: &mut Record) -> DmaBuffer {
    let at = record.at;
    let data_len = record.data_len();
    let (mut buffer, key, checksum, entries) = match record.kind {
        RecordKind::Put => match &mut record.requests[0].op {
            Op::Put {
                key, record: buf, ..
            } => (
                buf.take().expect("invariant: a put's record is taken once"),
                *key,
                0,
                0,
            ),
            Op::Delete { .. } => unreachable!("a put record holds a put"),
        },
        RecordKind::Delete => {
            let mut buffer = device.buffer(buffer_len(data_len));
            let bytes = buffer.as_bytes_mut();
            bytes.fill(0);
            let data =
                &mut bytes[RECORD_HEADER_LEN + DELETE_HEAD_LEN..RECORD_HEADER_LEN + data_len];
            for (request, slot) in record
                .requests
                .iter()
                .zip(data.chunks_exact_mut(DELETE_ENTRY_LEN))
            {
                let Op::Delete { key, of } = &request.op else {
                    unreachable!("a delete record holds deletes")
                };
                let (target_segment, target_life) = of.target();
                DeleteEntry {
                    name: *key,
                    target_segment,
                    target_life,
                }
                .encode_into(slot);
            }
            let count = u32::try_from(record.requests.len()).expect("invariant: bounded pack");
            let sum = entries_checksum(data);
            let none = hive_wire::ShardName::NONE;
            (buffer, none, sum, count)
        }
    };
    RecordHeader {
        kind: record.kind,
        seq: record.seq,
        segment: at.segment,
        offset: at.offset,
        name: key,
        data_len: u32::try_from(data_len).expect("invariant: records are at most 16 MiB"),
        entries_checksum: checksum,
        entries,
    }
    .encode_into(buffer.as_bytes_mut());
    buffer
}
