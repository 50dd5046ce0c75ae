//! A TIFF's strips made as they are written, the next one quantised while this one goes
//! to the file: no full-size copy of the photo in file order (144 MB at 24 MP, whose
//! fresh pages alone cost ~35 ms), and the quantising overlaps the writing.
//!
//! kamadak-exif's writer lays out the IFDs (EXIF, GPS, ICC, XMP) and then writes each
//! strip it was given with one `write_all`, in order. It is given strips that are all
//! slices of one placeholder buffer; [`StripWriter`] recognises a strip by that address
//! and writes the real rows in its place. A strip that arrives in pieces, out of order or
//! with the wrong length is an error, never a wrong file (and a test decodes the result).

use std::io::{self, Seek, SeekFrom, Write};

/// Passes the exif writer's output through to `inner`, with each placeholder strip
/// replaced by `make`'s bytes for it.
pub struct StripWriter<'a, W, F> {
    inner: &'a mut W,
    /// The placeholder's address range.
    placeholder: std::ops::Range<usize>,
    lens: Vec<usize>,
    make: F,
    next: usize,
    /// Strip `next`, made while the strip before it was written.
    ready: Vec<u8>,
    spare: Vec<u8>,
}

impl<'a, W, F> StripWriter<'a, W, F>
where
    W: Write + Send,
    F: Fn(usize, &mut Vec<u8>) + Sync,
{
    /// `placeholder` is the buffer every strip handed to the exif writer slices (from its
    /// start), `lens` the strips' lengths, `make(i, buf)` fills `buf` with strip `i`.
    pub fn new(inner: &'a mut W, placeholder: &[u8], lens: Vec<usize>, make: F) -> Self {
        StripWriter {
            inner,
            placeholder: placeholder.as_ptr_range().start as usize
                ..placeholder.as_ptr_range().end as usize,
            lens,
            make,
            next: 0,
            ready: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Strips written so far.
    pub fn written(&self) -> usize {
        self.next
    }

    fn strip(&mut self, len: usize) -> io::Result<()> {
        let i = self.next;
        if self.lens.get(i) != Some(&len) {
            return Err(io::Error::other(format!(
                "TIFF writer asked for strip {i} of {len} bytes, not the strip planned"
            )));
        }
        if i == 0 {
            (self.make)(0, &mut self.ready);
        }
        let (inner, ready, spare, make) =
            (&mut *self.inner, &self.ready, &mut self.spare, &self.make);
        let more = i + 1 < self.lens.len();
        let (written, ()) = rayon::join(
            || inner.write_all(ready),
            || {
                if more {
                    make(i + 1, spare)
                }
            },
        );
        written?;
        std::mem::swap(&mut self.ready, &mut self.spare);
        self.next += 1;
        Ok(())
    }
}

impl<W, F> Write for StripWriter<'_, W, F>
where
    W: Write + Send,
    F: Fn(usize, &mut Vec<u8>) + Sync,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = buf.as_ptr() as usize;
        if at == self.placeholder.start && !buf.is_empty() {
            self.strip(buf.len())?;
            return Ok(buf.len());
        }
        if self.placeholder.contains(&at) {
            return Err(io::Error::other("TIFF writer wrote part of a strip"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W, F> Seek for StripWriter<'_, W, F>
where
    W: Write + Seek + Send,
    F: Fn(usize, &mut Vec<u8>) + Sync,
{
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}
