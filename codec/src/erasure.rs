//! Reed-Solomon over a stream: k data payloads that are the stream itself (plus zero
//! padding), and m parity payloads computed from them.
//!
//! Nothing is copied that does not have to be: whole data payloads are slices of the
//! caller's stream, only the padded tail is copied, and the parity stays in the
//! Reed-Solomon encoder's own buffer until the caller is done with it.

use reed_solomon_simd::{EncoderResult, ReedSolomonDecoder, ReedSolomonEncoder};

pub use hive_wire::shard_payload_len;

use crate::error::CodecError;

/// Splits streams into payloads and computes parity, reusing its state.
#[derive(Default)]
pub struct ErasureEncoder {
    rs: Option<ReedSolomonEncoder>,
    padded: Vec<u8>,
}

/// The k + m payloads of one stream, borrowed from the stream and the encoder.
pub struct Payloads<'a> {
    len: usize,
    k: usize,
    /// Whole data payloads, straight from the stream.
    whole: &'a [u8],
    /// The remaining data payloads: the stream's tail, then zeros.
    padded: &'a [u8],
    parity: Option<EncoderResult<'a>>,
    /// With k = 1 every payload is the single data payload.
    replicated: bool,
}

impl Payloads<'_> {
    /// Bytes in each payload.
    pub fn payload_len(&self) -> usize {
        self.len
    }

    /// Payload `index`: `0..k` data, `k..k+m` parity.
    pub fn get(&self, index: usize) -> &[u8] {
        let index = if self.replicated { 0 } else { index };
        let whole = self.whole.len() / self.len;
        if index < whole {
            &self.whole[index * self.len..(index + 1) * self.len]
        } else if index < self.k {
            let at = (index - whole) * self.len;
            &self.padded[at..at + self.len]
        } else {
            self.parity
                .as_ref()
                .and_then(|p| p.recovery(index - self.k))
                .expect("invariant: parity index below k + m")
        }
    }
}

impl ErasureEncoder {
    /// Splits `stream` into `k` data payloads and computes `m` parity payloads.
    pub fn encode<'a>(
        &'a mut self,
        stream: &'a [u8],
        k: u8,
        m: u8,
    ) -> Result<Payloads<'a>, CodecError> {
        let len = shard_payload_len(stream.len(), k);
        let (k, m) = (usize::from(k), usize::from(m));
        let whole = stream.len() / len;
        let (whole_part, tail) = stream.split_at(whole * len);
        self.padded.clear();
        self.padded.extend_from_slice(tail);
        self.padded.resize((k - whole) * len, 0);
        let replicated = k == 1;
        let parity = if replicated || m == 0 {
            None
        } else {
            let encoder = match self.rs.take() {
                Some(mut encoder) => encoder.reset(k, m, len).map(|()| encoder),
                None => ReedSolomonEncoder::new(k, m, len),
            };
            let encoder = self.rs.insert(encoder.map_err(CodecError::ReedSolomon)?);
            for payload in whole_part
                .chunks_exact(len)
                .chain(self.padded.chunks_exact(len))
            {
                encoder
                    .add_original_shard(payload)
                    .map_err(CodecError::ReedSolomon)?;
            }
            Some(encoder.encode().map_err(CodecError::ReedSolomon)?)
        };
        Ok(Payloads {
            len,
            k,
            whole: whole_part,
            padded: &self.padded,
            parity,
            replicated,
        })
    }
}

/// Rebuilds streams from any k payloads, reusing its state.
#[derive(Default)]
pub struct ErasureDecoder {
    rs: Option<ReedSolomonDecoder>,
    stream: Vec<u8>,
}

impl ErasureDecoder {
    /// The stream the last decode with k > 1 rebuilt.
    pub fn stream(&self) -> &[u8] {
        &self.stream
    }

    /// The first `stream_len` bytes of the data payloads, from `present` (indexed by
    /// shard index, `k + m` entries, at least `k` of them `Some`, each `len` bytes).
    pub fn decode<'a>(
        &'a mut self,
        k: u8,
        m: u8,
        len: usize,
        stream_len: usize,
        present: &[Option<&'a [u8]>],
    ) -> Result<&'a [u8], CodecError> {
        let (k, m) = (usize::from(k), usize::from(m));
        assert_eq!(present.len(), k + m, "one entry per shard index");
        assert!(stream_len <= k * len, "the stream fits in k payloads");
        if k == 1 {
            // Replication: every payload holds the whole stream.
            let payload = present
                .iter()
                .flatten()
                .next()
                .expect("invariant: the caller has at least k = 1 payload");
            return Ok(&payload[..stream_len]);
        }
        self.stream.clear();
        if present[..k].iter().all(Option::is_some) {
            for payload in present[..k].iter().flatten() {
                self.stream.extend_from_slice(payload);
            }
        } else {
            self.recover(k, m, len, present)?;
        }
        self.stream.truncate(stream_len);
        Ok(&self.stream)
    }

    fn recover(
        &mut self,
        k: usize,
        m: usize,
        len: usize,
        present: &[Option<&[u8]>],
    ) -> Result<(), CodecError> {
        let decoder = match self.rs.take() {
            Some(mut decoder) => decoder.reset(k, m, len).map(|()| decoder),
            None => ReedSolomonDecoder::new(k, m, len),
        };
        let decoder = self.rs.insert(decoder.map_err(CodecError::ReedSolomon)?);
        let mut given = 0;
        for (index, payload) in present.iter().enumerate() {
            // Exactly k payloads: more would only cost the decoder time.
            if let Some(payload) = payload
                && given < k
            {
                given += 1;
                if index < k {
                    decoder.add_original_shard(index, payload)
                } else {
                    decoder.add_recovery_shard(index - k, payload)
                }
                .map_err(CodecError::ReedSolomon)?;
            }
        }
        let result = decoder.decode().map_err(CodecError::ReedSolomon)?;
        for (index, payload) in present[..k].iter().enumerate() {
            let data = match payload {
                Some(payload) => payload,
                None => result
                    .restored_original(index)
                    .expect("invariant: the decoder restores every missing original"),
            };
            self.stream.extend_from_slice(data);
        }
        Ok(())
    }
}
