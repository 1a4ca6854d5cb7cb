//! zstd compression that only keeps its result when it pays.

use crate::config::CompressionConfig;
use crate::constants::{
    PROBE_MIN_LEN, PROBE_WINDOW, PROBE_WINDOWS, SMALL_CHUNK_LEN, SMALL_CHUNK_LEVEL,
};
use crate::error::CodecError;

/// A reusable zstd context and the policy that decides whether a chunk is stored
/// compressed.
pub struct Compressor {
    config: CompressionConfig,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// The level `zstd` is set to now: the policy's, or at least
    /// [`SMALL_CHUNK_LEVEL`] for a small chunk.
    level: i32,
    /// The probe's sample of a chunk, and room for its compressed form.
    sample: Vec<u8>,
    sample_out: Vec<u8>,
}

impl Compressor {
    /// A compressor for a validated policy; level 0 never compresses.
    pub fn new(config: CompressionConfig) -> Result<Self, CodecError> {
        config.validate()?;
        let zstd = if config.level == 0 {
            None
        } else {
            Some(zstd::bulk::Compressor::new(config.level).map_err(CodecError::Zstd)?)
        };
        Ok(Self {
            config,
            zstd,
            level: config.level,
            sample: Vec::with_capacity(PROBE_WINDOWS * PROBE_WINDOW),
            sample_out: vec![0; PROBE_WINDOWS * PROBE_WINDOW],
        })
    }

    /// The policy in use.
    pub fn config(&self) -> CompressionConfig {
        self.config
    }

    /// The longest compressed form of a `len`-byte chunk that is still worth keeping.
    pub fn max_kept_len(&self, len: usize) -> usize {
        len.saturating_sub(self.config.min_saving.of_ceil(len).max(1))
    }

    /// Compresses `chunk` into the front of `out` and returns the compressed length, or
    /// `None` when compression is off or would not save the configured fraction.
    ///
    /// A long chunk is probed first: a sample of windows spread over it is compressed,
    /// and if the sample does not save the configured fraction the chunk is left as it
    /// is, so incompressible data (media, archives, encrypted files) costs a few percent
    /// of a full attempt. zstd is handed only the room a worthwhile result may take, so
    /// when it does run on data that does not compress, it stops once that room is full.
    pub fn compress_into(&mut self, chunk: &[u8], out: &mut [u8]) -> Option<usize> {
        let room = self.max_kept_len(chunk.len()).min(out.len());
        if room == 0 || self.zstd.is_none() {
            return None;
        }
        let level = if chunk.len() < SMALL_CHUNK_LEN {
            self.config.level.max(SMALL_CHUNK_LEVEL)
        } else {
            self.config.level
        };
        if level != self.level {
            // A level zstd refuses leaves the chunk stored as it is.
            self.zstd.as_mut()?.set_compression_level(level).ok()?;
            self.level = level;
        }
        if chunk.len() >= PROBE_MIN_LEN && !self.sample_pays(chunk) {
            return None;
        }
        let zstd = self.zstd.as_mut()?;
        // An error here means "did not fit": the chunk is stored as it is.
        zstd.compress_to_buffer(chunk, &mut out[..room]).ok()
    }

    /// Whether a sample of `chunk` compresses by the configured fraction, at the level
    /// set for the chunk.
    fn sample_pays(&mut self, chunk: &[u8]) -> bool {
        let stride = chunk.len() / PROBE_WINDOWS;
        debug_assert!(stride >= PROBE_WINDOW, "probe windows must not overlap");
        self.sample.clear();
        for window in 0..PROBE_WINDOWS {
            let at = window * stride;
            self.sample.extend_from_slice(&chunk[at..at + PROBE_WINDOW]);
        }
        let room = self.max_kept_len(self.sample.len());
        match self.zstd.as_mut() {
            Some(zstd) => zstd
                .compress_to_buffer(&self.sample[..], &mut self.sample_out[..room])
                .is_ok(),
            None => false,
        }
    }
}
