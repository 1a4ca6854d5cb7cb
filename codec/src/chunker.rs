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
