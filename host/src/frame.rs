//! Length-prefixed JSON frames: a 4-byte little-endian length, then that many bytes of
//! UTF-8 JSON. The client protocol ([`crate::protocol`]) and the pipe to a plugin's runner
//! process (`plugins::runner`) both speak them, so they live below both.

use std::io::{self, Read, Write};

use serde::Serialize;

/// Largest JSON frame accepted (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer sent a length over the limit.
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    /// The connection failed or closed mid-frame.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Writes one message as a frame and flushes.
pub fn write_frame(w: &mut impl Write, msg: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message exceeds the frame limit",
        ));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        let msg = serde_json::json!({"type": "status", "id": "7"});
        write_frame(&mut buf, &msg).unwrap();
        let body = read_frame(&mut &buf[..]).unwrap().unwrap();
        let back: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, msg);
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        let big = "x".repeat(MAX_FRAME);
        assert!(
            write_frame(&mut Vec::new(), &big).is_err(),
            "over the limit once quoted"
        );
    }
}
