//! Frames on QUIC streams: `[header length: u32 LE][body length: u32 LE][header][body]`.
//!
//! The header is a small message; the body carries bulk bytes (a shard) and is sent as
//! its own `Bytes`, so quinn queues it without a copy. Both lengths are checked against
//! fixed maximums before anything is allocated.

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};

/// Largest frame header: a message, never bulk data.
pub const MAX_FRAME_HEADER: u32 = 64 * 1024;
/// Largest frame body: one shard of the largest chunk (16 MiB) with its header and
/// room to spare.
pub const MAX_FRAME_BODY: u32 = 17 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended before a whole frame arrived.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the frame declared.
        expected: usize,
    },
    /// A declared length above the maximum.
    #[error("frame {part} of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Header or body.
        part: &'static str,
        /// Declared length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// The stream failed.
    #[error("stream: {0}")]
    Stream(String),
}

/// Writes one frame and finishes the stream's sending side.
pub async fn write_frame(
    send: &mut SendStream,
    header: &[u8],
    body: Bytes,
) -> Result<(), FrameError> {
    let (header_len, body_len) = (
        len_u32(header.len(), "header", MAX_FRAME_HEADER)?,
        len_u32(body.len(), "body", MAX_FRAME_BODY)?,
    );
    let mut head = BytesMut::with_capacity(8 + header.len());
    head.extend_from_slice(&header_len.to_le_bytes());
    head.extend_from_slice(&body_len.to_le_bytes());
    head.extend_from_slice(header);
    let mut chunks = [head.freeze(), body];
    send.write_all_chunks(&mut chunks)
        .await
        .map_err(|e| FrameError::Stream(e.to_string()))?;
    send.finish().map_err(|e| FrameError::Stream(e.to_string()))
}

fn len_u32(len: usize, part: &'static str, max: u32) -> Result<u32, FrameError> {
    match u32::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge {
            part,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            max,
        }),
    }
}

/// Reads one frame: its header and body.
pub async fn read_frame(recv: &mut RecvStream) -> Result<(Bytes, Bytes), FrameError> {
    let (header_len, body_len) = read_lengths(recv).await?;
    read_parts(recv, header_len, body_len).await
}

/// Reads and checks a frame's two lengths.
pub async fn read_lengths(recv: &mut RecvStream) -> Result<(u32, u32), FrameError> {
    let mut lengths = [0u8; 8];
    read_exact(recv, &mut lengths).await?;
    let header_len = u32::from_le_bytes([lengths[0], lengths[1], lengths[2], lengths[3]]);
    let body_len = u32::from_le_bytes([lengths[4], lengths[5], lengths[6], lengths[7]]);
    if header_len > MAX_FRAME_HEADER {
        return Err(FrameError::TooLarge {
            part: "header",
            len: header_len,
            max: MAX_FRAME_HEADER,
        });
    }
    if body_len > MAX_FRAME_BODY {
        return Err(FrameError::TooLarge {
            part: "body",
            len: body_len,
            max: MAX_FRAME_BODY,
        });
    }
    Ok((header_len, body_len))
}

/// Reads the header and body whose lengths [`read_lengths`] returned.
pub async fn read_parts(
    recv: &mut RecvStream,
    header_len: u32,
    body_len: u32,
) -> Result<(Bytes, Bytes), FrameError> {
    let mut header = vec![0u8; header_len as usize];
    read_exact(recv, &mut header).await?;
    let mut body = vec![0u8; body_len as usize];
    read_exact(recv, &mut body).await?;
    Ok((Bytes::from(header), Bytes::from(body)))
}

async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> Result<(), FrameError> {
    let expected = buf.len();
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => FrameError::Truncated { got, expected },
        quinn::ReadExactError::ReadError(e) => FrameError::Stream(e.to_string()),
    })
}
