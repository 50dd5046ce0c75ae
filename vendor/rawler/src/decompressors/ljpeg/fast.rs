//! Luminary patch: lossless JPEG with predictor 1 and no subsampling (the case of DNG tiles,
//! CR2 and most other LJ92 raws), decoded bit for bit as `decode_ljpeg` does, about 1.6 times as
//! fast.
//!
//! `decode_ljpeg` asks the predictor of every sample through a `match`, indexes the output
//! with bounds checks, and reads a 13-bit decode cache of 6-byte entries (48 KB per table,
//! out of L1 with two tables). Here each component gets an 11-bit table of 4-byte entries
//! (8 KB): one look-up decodes a code and its difference bits together when both fit in 11
//! bits, or the code alone when it does; anything else takes the same canonical look-up as
//! rawler. The bit reader is rawler's (32 bits at a time, 0xFF00 stuffing, zeros after a
//! marker or the end of the data), so damaged streams decode to the same samples too.

use super::LjpegDecompressor;
use super::huffman::HuffTable;

const LUT_BITS: u32 = 11;
/// Entry kinds (bits 5-6). FULL: consume bits 0-4, the difference is bits 16-31.
const FULL: u32 = 0 << 5;
/// PART: consume bits 0-4 (the code), then read bits 8-12 of difference bits.
const PART: u32 = 1 << 5;
/// SLOW: rawler's canonical look-up (codes over 11 bits, or a 16-bit difference whose bits
/// a DNG stores).
const SLOW: u32 = 2 << 5;
const KIND: u32 = 3 << 5;

/// Decodes `ljpeg` into `out` if it is the case this module handles, as `decode_ljpeg`
/// would; `None` leaves it to `decode_ljpeg`.
pub(super) fn decode(ljpeg: &LjpegDecompressor, out: &mut [u16], x: usize, stripwidth: usize, width: usize, height: usize) -> Option<Result<(), String>> {
  let needed = (height.checked_sub(1)?).checked_mul(stripwidth).and_then(|n| n.checked_add(x)).and_then(|n| n.checked_add(width));
  if stripwidth < width || needed.is_none_or(|n| out.len() < n) {
    return None; // decode_ljpeg's own handling
  }
  let plan = Plan::new(ljpeg, width, height)?;
  plan.run(out[x..].chunks_mut(stripwidth.max(1)).map(|row| &mut row[..width]));
  Some(Ok(()))
}

/// The decode of the first `height` rows of a stream, `width` samples of each.
pub(super) struct Plan<'l> {
  ljpeg: &'l LjpegDecompressor<'l>,
  luts: Vec<Lut<'l>>,
  height: usize,
  /// Pixels coded past each row's end, decoded and dropped.
  skip: usize,
}

impl<'l> Plan<'l> {
  /// `None` if this module does not handle the stream.
  pub(super) fn new(ljpeg: &'l LjpegDecompressor<'l>, width: usize, height: usize) -> Option<Self> {
    let ncomp = ljpeg.components();
    if ljpeg.predictor != 1 || !(1..=4).contains(&ncomp) || width % ncomp != 0 || height == 0 || width == 0 {
      return None;
    }
    if ljpeg.sof.components.iter().any(|c| c.super_h != 1 || c.super_v != 1) {
      return None;
    }
    if ljpeg.sof.width * ncomp < width || ljpeg.sof.height < height || ljpeg.point_transform + 1 > ljpeg.sof.precision {
      return None; // decode_ljpeg's error
    }
    let mut luts = Vec::with_capacity(ncomp);
    for c in 0..ncomp {
      let table = ljpeg.dhts.get(ljpeg.sof.components[c].dc_tbl_num)?;
      luts.push(Lut::new(table)?);
    }
    let skip = ljpeg.sof.width - width / ncomp;
    Some(Plan { ljpeg, luts, height, skip })
  }

  /// Decodes into `rows` (each `width` samples long).
  pub(super) fn run<'a>(&self, rows: impl Iterator<Item = &'a mut [u16]>) {
    let base = 1i32 << (self.ljpeg.sof.precision - self.ljpeg.point_transform - 1);
    let mut bits = Bits::new(self.ljpeg.buffer);
    let (rows, l, skip) = (rows.take(self.height), &self.luts, self.skip);
    match l.len() {
      1 => run::<1>(&mut bits, [&l[0]], rows, base, skip),
      2 => run::<2>(&mut bits, [&l[0], &l[1]], rows, base, skip),
      3 => run::<3>(&mut bits, [&l[0], &l[1], &l[2]], rows, base, skip),
      _ => run::<4>(&mut bits, [&l[0], &l[1], &l[2], &l[3]], rows, base, skip),
    }
  }
}

/// Predictor 1: the pixel to the left, the pixel above for the first of a row, and
/// `base` for the very first. `skip` pixels coded past each row's end are decoded and
/// dropped. The samples wrap to 16 bits, as rawler's do.
fn run<'a, const N: usize>(bits: &mut Bits, luts: [&Lut; N], rows: impl Iterator<Item = &'a mut [u16]>, base: i32, skip: usize) {
  let mut above = [base; N];
  for row in rows {
    let (first, rest) = row.split_at_mut(N);
    let mut left = [0i32; N];
    for c in 0..N {
      let v = (above[c] + luts[c].decode(bits)) as u16;
      first[c] = v;
      left[c] = v as i32;
    }
    above = left;
    for px in rest.chunks_exact_mut(N) {
      for c in 0..N {
        let v = (left[c] + luts[c].decode(bits)) as u16;
        px[c] = v;
        left[c] = v as i32;
      }
    }
    for _ in 0..skip {
      for lut in luts {
        lut.decode(bits);
      }
    }
  }
}

/// One component's decode table.
struct Lut<'t> {
  entries: Box<[u32; 1 << LUT_BITS]>,
  table: &'t HuffTable,
}

impl<'t> Lut<'t> {
  /// `None` for tables rawler decodes in ways this module does not (Nikon's shifted
  /// differences, lengths over 16, an empty table).
  fn new(table: &'t HuffTable) -> Option<Self> {
    if table.nbits == 0 || table.nbits > 16 || table.hufftable.len() != 1 << table.nbits {
      return None;
    }
    if table.hufftable.iter().any(|&(_, len, shift)| len > 16 || shift != 0) {
      return None;
    }
    let nbits = table.nbits;
    let mut entries = Box::new([0u32; 1 << LUT_BITS]);
    for (i, e) in entries.iter_mut().enumerate() {
      let (code, len, _) = if nbits <= LUT_BITS {
        table.hufftable[i >> (LUT_BITS - nbits)]
      } else {
        table.hufftable[i << (nbits - LUT_BITS)]
      };
      let (code, len) = (code as u32, len as u32);
      *e = if code == 0 {
        // No code starts with these bits: rawler consumes nothing and adds 0. When codes
        // are longer than the window, the bits after it may still make one.
        if nbits <= LUT_BITS { FULL } else { SLOW }
      } else if code > LUT_BITS || (len == 16 && table.dng_bug) {
        SLOW
      } else if len == 0 {
        FULL | code
      } else if len == 16 {
        FULL | code | ((-32768i32 as u32) << 16)
      } else if code + len <= LUT_BITS {
        let diff_bits = (i as u32 >> (LUT_BITS - code - len)) & ((1 << len) - 1);
        FULL | (code + len) | ((extend(diff_bits, len) as u32) << 16)
      } else {
        PART | code | (len << 8)
      };
    }
    Some(Lut { entries, table })
  }

  #[inline(always)]
  fn decode(&self, bits: &mut Bits) -> i32 {
    bits.ensure(LUT_BITS);
    let e = self.entries[bits.peek(LUT_BITS) as usize];
    match e & KIND {
      FULL => {
        bits.consume(e & 31);
        (e as i32) >> 16
      }
      PART => {
        bits.consume(e & 31);
        let len = (e >> 8) & 31;
        bits.ensure(len);
        let b = bits.peek(len);
        bits.consume(len);
        extend(b, len)
      }
      _ => self.slow(bits),
    }
  }

  /// rawler's `huff_len` and `huff_diff`, for the codes the window cannot hold.
  #[cold]
  #[inline(never)]
  fn slow(&self, bits: &mut Bits) -> i32 {
    let nbits = self.table.nbits;
    bits.ensure(nbits);
    let (code, len, _) = self.table.hufftable[bits.peek(nbits) as usize];
    bits.consume(code as u32);
    match len as u32 {
      0 => 0,
      16 => {
        if self.table.dng_bug {
          bits.ensure(16);
          bits.consume(16);
        }
        -32768
      }
      len => {
        bits.ensure(len);
        let b = bits.peek(len);
        bits.consume(len);
        extend(b, len)
      }
    }
  }
}

/// A difference from its `len` (1 to 15) bits: values below half the range are negative.
#[inline(always)]
fn extend(b: u32, len: u32) -> i32 {
  if b >> (len - 1) == 0 { b as i32 - ((1 << len) - 1) } else { b as i32 }
}

/// rawler's `BitPumpJPEG`: whole 32-bit words while they hold no 0xFF, else byte by byte,
/// with 0xFF00 read as 0xFF and zeros for ever after a marker or the end of the data.
struct Bits<'a> {
  data: &'a [u8],
  pos: usize,
  buf: u64,
  n: u32,
  finished: bool,
}

impl<'a> Bits<'a> {
  fn new(data: &'a [u8]) -> Self {
    Bits { data, pos: 0, buf: 0, n: 0, finished: false }
  }

  /// At least `k` (at most 32) bits are in the buffer afterwards.
  #[inline(always)]
  fn ensure(&mut self, k: u32) {
    if self.n < k {
      self.refill();
    }
  }

  #[inline(always)]
  fn refill(&mut self) {
    if self.pos + 4 < self.data.len() {
      let w = u32::from_be_bytes([self.data[self.pos], self.data[self.pos + 1], self.data[self.pos + 2], self.data[self.pos + 3]]);
      // No byte of w is 0xFF (the classic has-zero-byte test on !w).
      let inv = !w;
      if inv.wrapping_sub(0x0101_0101) & !inv & 0x8080_8080 == 0 {
        self.buf = (self.buf << 32) | w as u64;
        self.n += 32;
        self.pos += 4;
        return;
      }
    }
    self.refill_bytes();
  }

  #[cold]
  #[inline(never)]
  fn refill_bytes(&mut self) {
    for _ in 0..4 {
      let byte = if self.finished || self.pos >= self.data.len() {
        self.finished = true;
        0
      } else {
        let b = self.data[self.pos];
        if b != 0xff {
          self.pos += 1;
          b
        } else if self.data.get(self.pos + 1) == Some(&0) {
          self.pos += 2;
          0xff
        } else {
          self.finished = true;
          0
        }
      };
      self.buf = (self.buf << 8) | byte as u64;
      self.n += 8;
    }
  }

  #[inline(always)]
  fn peek(&self, k: u32) -> u32 {
    ((self.buf >> (self.n - k)) & ((1u64 << k) - 1)) as u32
  }

  #[inline(always)]
  fn consume(&mut self, k: u32) {
    self.n -= k;
  }
}
