//! Content-defined chunking: boundaries follow the content, so an insertion early in a
//! file changes only the chunks around it and the rest still deduplicate.

use fastcdc::v2020::FastCDC;

use crate::config::ChunkerConfig;
use crate::error::CodecError;

/// Cuts buffers into chunks with FastCDC (2020 variant, normalisation level 1).
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    config: ChunkerConfig,
}

impl Chunker {
    /// A chunker with validated bounds.
    pub fn new(config: ChunkerConfig) -> Result<Self, CodecError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The bounds in use.
    pub fn config(&self) -> ChunkerConfig {
        self.config
    }

    /// Splits `data` at content-defined boundaries. The same bytes always give the same
    /// chunks; empty input gives no chunks.
    pub fn split<'a>(&self, data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let c = self.config;
        FastCDC::new(data, c.min as usize, c.avg as usize, c.max as usize)
            .map(move |chunk| &data[chunk.offset..chunk.offset + chunk.length])
    }

    /// Cuts the chunks at the front of `data` that a cut of the whole stream would also
    /// make, whatever bytes follow: every chunk but the last, or all of them when
    /// `at_end` says the stream ends with `data`. Returns them and the bytes they cover;
    /// the rest must be passed again with the stream's next bytes appended. Fed windows
    /// of at least twice the maximum chunk size, it always makes progress, and the
    /// chunks are exactly those of [`Chunker::split`] over the whole stream.
    pub fn split_prefix<'a>(&self, data: &'a [u8], at_end: bool) -> (Vec<&'a [u8]>, usize) {
        let mut chunks: Vec<&[u8]> = self.split(data).collect();
        // A chunk that ends before the data does ended at a cut point or at the maximum
        // size: both depend only on bytes already here. The last one may end only
        // because the data does.
        if !at_end {
            chunks.pop();
        }
        let covered = chunks.iter().map(|c| c.len()).sum();
        (chunks, covered)
    }

    /// Keeps a buffer no longer than the maximum chunk size whole: the path for small
    /// writes, where cutting would only add overhead.
    pub fn single<'a>(&self, data: &'a [u8]) -> Result<&'a [u8], CodecError> {
        if data.len() > self.config.max as usize {
            return Err(CodecError::ChunkTooLarge {
                len: data.len() as u64,
                max: self.config.max,
            });
        }
        Ok(data)
    }
}
