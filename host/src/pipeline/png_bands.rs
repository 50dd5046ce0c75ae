//! A PNG's image data on every core: the rows cut into bands, each band quantised,
//! filtered and deflated by its own thread, the bands joined into the one zlib stream PNG
//! asks for.
//!
//! Why by hand: the `png` crate filters and deflates on one thread (a 24 MP 16-bit photo:
//! about 360 ms of a 600 ms encode), and no maintained crate joins deflate streams
//! pigz-style. The deflating itself stays fdeflate's (the `png` crate's own fast
//! compressor). Each band is one fdeflate block; joining needs only three facts about
//! its output, all checked on every band (else the write fails with an error, never a
//! wrong file; the tests below fail first if an fdeflate update changes them):
//! * the block starts at byte 2, after the zlib header, with BFINAL as its first bit —
//!   cleared on every band but the last;
//! * the block ends with end-of-block, whose last bit is a 1, then zero padding — so the
//!   last set bit is the block's end, and the next band's bits follow it directly (deflate
//!   blocks need not start on a byte);
//! * the last four bytes are the band's Adler-32, combined into the photo's.
//!
//! A test decodes the joined stream with another inflater (which checks the Adler-32)
//! and with the `png` crate, for band cuts at every bit offset.

use std::io::Write;

use rayon::prelude::*;

/// Errors of the writer underneath, passed through (as `encode` and `jpeg` spell them).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rows per band: enough that a band's header (55 bytes) and thread hand-off are
/// nothing, few enough that two cores share the work evenly.
const BAND_ROWS: usize = 128;

/// PNG filter type 4 (Paeth) on every row. On a developed 12 MP Nikon DNG it gives
/// the size of the `png` crate's per-row adaptive choice (69.67 against 69.66 MB; a
/// 16-bit photo's low bytes are noise, so either is ~5 % under raw) for a fifth of
/// the filtering work.
const PAETH: u8 = 4;

/// Writes `height` rows of `row_bytes` bytes each as the PNG's IDAT chunks. `fill(y, row)`
/// makes row `y`'s bytes (big-endian samples); it is called from several threads, each
/// row at most twice (a band also makes the row above it, the one its filter looks at).
/// `bpp` is bytes per pixel, the filter's step.
pub fn write_image_data<W: Write>(
    writer: &mut png::Writer<W>,
    height: usize,
    row_bytes: usize,
    bpp: usize,
    fill: impl Fn(usize, &mut [u8]) + Sync,
) -> Result<(), BoxError> {
    let bands: Vec<(usize, usize)> = (0..height)
        .step_by(BAND_ROWS)
        .map(|y0| (y0, (y0 + BAND_ROWS).min(height)))
        .collect();
    if bands.is_empty() {
        return Err("a PNG needs at least one row".into());
    }
    let compressed = bands
        .par_iter()
        .map(|&(y0, y1)| deflate_band(y0, y1, row_bytes, bpp, &fill))
        .collect::<Result<Vec<_>, _>>()?;
    join(&compressed, |idat| {
        writer.write_chunk(png::chunk::IDAT, idat)
    })
}

/// Joins the bands into one zlib stream, handed to `emit` a band at a time.
fn join<E: Into<BoxError>>(
    bands: &[Band],
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), BoxError> {
    let mut joined = Joined {
        header: Some([bands[0].stream[0], bands[0].stream[1]]),
        carry: 0,
        carry_bits: 0,
        adler: None,
    };
    let mut out = Vec::new();
    for (i, band) in bands.iter().enumerate() {
        let last = i + 1 == bands.len();
        let Some((body, bits)) = band.block() else {
            return Err("fdeflate's output is not the block this writer joins".into());
        };
        out.clear();
        joined.append(&mut out, body, bits, !last);
        joined.add_adler(band.adler(), band.len);
        if last {
            joined.finish(&mut out);
        }
        emit(&out).map_err(Into::into)?;
    }
    Ok(())
}

/// One band's fdeflate output: zlib header, one block, Adler-32.
struct Band {
    stream: Vec<u8>,
    /// Uncompressed (filtered) bytes, for combining Adler-32s.
    len: usize,
}

impl Band {
    fn adler(&self) -> u32 {
        let n = self.stream.len();
        u32::from_be_bytes(self.stream[n - 4..].try_into().expect("four bytes"))
    }

    /// The block (BFINAL still set) and its length in bits, after the checks the
    /// module doc lists; `None` if fdeflate's output is not that shape.
    fn block(&self) -> Option<(&[u8], usize)> {
        let n = self.stream.len();
        let body = self.stream.get(2..n.checked_sub(4)?)?;
        let (&first, &end) = (body.first()?, body.last()?);
        if first & 1 != 1 || end == 0 {
            return None;
        }
        let bits = 8 * (body.len() - 1) + (8 - end.leading_zeros() as usize);
        ends_with_end_of_block(body, bits).then_some((body, bits))
    }
}

/// fdeflate's end-of-block code as it lands in the stream (12 bits, first bit first).
/// Read from its fixed Huffman table; the joining relies on its last bit being 1.
const END_OF_BLOCK: [u8; 12] = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1];

fn ends_with_end_of_block(body: &[u8], bits: usize) -> bool {
    let bit = |i: usize| (body[i / 8] >> (i % 8)) & 1;
    bits >= END_OF_BLOCK.len()
        && (0..END_OF_BLOCK.len()).all(|k| bit(bits - END_OF_BLOCK.len() + k) == END_OF_BLOCK[k])
}

fn deflate_band(
    y0: usize,
    y1: usize,
    row_bytes: usize,
    bpp: usize,
    fill: &(impl Fn(usize, &mut [u8]) + Sync),
) -> Result<Band, BoxError> {
    let mut prev = vec![0u8; row_bytes];
    if y0 > 0 {
        fill(y0 - 1, &mut prev);
    }
    let mut cur = vec![0u8; row_bytes];
    let mut filtered = vec![0u8; 1 + row_bytes];
    let mut z = fdeflate::Compressor::new(Vec::with_capacity((y1 - y0) * row_bytes * 3 / 4))?;
    for y in y0..y1 {
        fill(y, &mut cur);
        filtered[0] = PAETH;
        paeth(&cur, &prev, bpp, &mut filtered[1..]);
        z.write_data(&filtered)?;
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(Band {
        stream: z.finish()?,
        len: (y1 - y0) * (1 + row_bytes),
    })
}

/// PNG's Paeth filter of one row (`prev` is the row above, zeros for the first).
fn paeth(cur: &[u8], prev: &[u8], bpp: usize, out: &mut [u8]) {
    for i in 0..bpp {
        out[i] = cur[i].wrapping_sub(prev[i]);
    }
    for i in bpp..cur.len() {
        let (a, b, c) = (cur[i - bpp] as i16, prev[i] as i16, prev[i - bpp] as i16);
        let p = a + b - c;
        let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
        let pred = if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        };
        out[i] = cur[i].wrapping_sub(pred as u8);
    }
}

/// The zlib stream being joined, band by band.
struct Joined {
    /// The zlib header, until it is written.
    header: Option<[u8; 2]>,
    /// The stream's last, partly filled byte (its high bits zero) and its bits in use.
    carry: u8,
    carry_bits: usize,
    /// Adler-32 of the bands so far.
    adler: Option<u32>,
}

impl Joined {
    /// Appends `bits` bits of `block` to `out` right after the stream's last bit, with
    /// BFINAL cleared if `more` bands follow. The last partial byte is kept back (it is
    /// written with the next band's first bits, or by `finish`).
    fn append(&mut self, out: &mut Vec<u8>, block: &[u8], bits: usize, more: bool) {
        if let Some(h) = self.header.take() {
            out.extend_from_slice(&h);
        }
        let start = out.len();
        let n = bits.div_ceil(8);
        let first = if more { block[0] & !1 } else { block[0] };
        let k = self.carry_bits;
        if k == 0 {
            out.push(first);
            out.extend_from_slice(&block[1..n]);
        } else {
            out.push(self.carry | (first << k));
            out.push((first >> (8 - k)) | (block.get(1).copied().unwrap_or(0) << k));
            out.extend(
                block[1..n]
                    .windows(2)
                    .map(|p| (p[0] >> (8 - k)) | (p[1] << k)),
            );
            out.push(block[n - 1] >> (8 - k));
            if n == 1 {
                out.pop();
            }
        }
        let total = k + bits;
        self.carry_bits = total % 8;
        self.carry = if self.carry_bits > 0 {
            out[start + total / 8]
        } else {
            0
        };
        out.truncate(start + total / 8);
    }

    fn add_adler(&mut self, adler: u32, len: usize) {
        self.adler = Some(match self.adler {
            None => adler,
            Some(a) => adler32_combine(a, adler, len),
        });
    }

    /// The last partial byte and the Adler-32 of all the filtered rows.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.carry_bits > 0 {
            out.push(self.carry);
        }
        out.extend_from_slice(&self.adler.unwrap_or(1).to_be_bytes());
    }
}

/// Adler-32 of `a ‖ b` from those of `a` and `b` (`b` is `len_b` bytes): zlib's
/// `adler32_combine`.
fn adler32_combine(a: u32, b: u32, len_b: usize) -> u32 {
    const BASE: u64 = 65521;
    let rem = len_b as u64 % BASE;
    let (a1, a2) = ((a & 0xffff) as u64, (a >> 16) as u64);
    let (b1, b2) = ((b & 0xffff) as u64, (b >> 16) as u64);
    let s1 = (a1 + b1 + BASE - 1) % BASE;
    let s2 = (rem * a1 % BASE + a2 + b2 + BASE - rem) % BASE;
    (s2 << 16 | s1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A real photo's rows as 16-bit big-endian RGB, `h` rows of it.
    fn photo_rows(h: usize) -> (Vec<u8>, usize) {
        let photo = crate::image::test_photo().to_rgb16();
        let w = photo.width() as usize;
        let bytes: Vec<u8> = photo
            .as_raw()
            .iter()
            .take(w * 3 * h)
            .flat_map(|v| v.to_be_bytes())
            .collect();
        (bytes, w * 6)
    }

    fn inflate(stream: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Bands of a real photo, cut so that every band starts at each of the eight bit
    /// offsets somewhere, join into a stream another inflater (miniz_oxide, which checks
    /// the Adler-32) reads back as the filtered rows, byte for byte.
    #[test]
    fn joined_bands_inflate_to_the_filtered_rows() {
        let (bytes, row_bytes) = photo_rows(200);
        let fill = |y: usize, row: &mut [u8]| {
            row.copy_from_slice(&bytes[y * row_bytes..(y + 1) * row_bytes])
        };
        // Bands of 1 to 9 rows, so the blocks' lengths in bits vary.
        let mut cuts = vec![0];
        while *cuts.last().unwrap() < 200 {
            let y = *cuts.last().unwrap();
            cuts.push((y + 1 + y % 9).min(200));
        }
        let bands: Vec<Band> = cuts
            .windows(2)
            .map(|c| deflate_band(c[0], c[1], row_bytes, 6, &fill).unwrap())
            .collect();
        let mut offsets = [false; 8];
        let mut bits = 16;
        for b in &bands {
            offsets[bits % 8] = true;
            bits += b.block().expect("fdeflate's block shape").1;
        }
        assert_eq!(offsets, [true; 8], "every start offset is exercised");

        let mut stream = Vec::new();
        join(&bands, |b| -> Result<(), BoxError> {
            stream.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        // The same rows filtered by one band, for the expected bytes.
        let whole = deflate_band(0, 200, row_bytes, 6, &fill).unwrap();
        let want = inflate(&whole.stream).unwrap();
        assert_eq!(want.len(), 200 * (1 + row_bytes));
        assert!(
            inflate(&stream).unwrap() == want,
            "joined stream inflates to the rows"
        );

        // The checksum is checked: a wrong one is refused.
        let n = stream.len();
        stream[n - 1] ^= 1;
        assert!(
            inflate(&stream).is_err(),
            "the inflater checks the Adler-32"
        );
    }

    /// A PNG written in bands decodes (with the `png` crate) to the photo's samples.
    #[test]
    fn a_png_written_in_bands_decodes_to_the_photo() {
        let h = 700;
        let (bytes, row_bytes) = photo_rows(h);
        let w = row_bytes / 6;
        let mut file = Vec::new();
        {
            let mut info = png::Info::with_size(w as u32, h as u32);
            info.color_type = png::ColorType::Rgb;
            info.bit_depth = png::BitDepth::Sixteen;
            let mut writer = png::Encoder::with_info(&mut file, info)
                .unwrap()
                .write_header()
                .unwrap();
            write_image_data(&mut writer, h, row_bytes, 6, |y, row| {
                row.copy_from_slice(&bytes[y * row_bytes..(y + 1) * row_bytes])
            })
            .unwrap();
            writer.finish().unwrap();
        }
        let mut reader = png::Decoder::new(std::io::Cursor::new(&file))
            .read_info()
            .unwrap();
        let mut got = vec![0u8; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut got).unwrap();
        assert!(got == bytes, "decoded samples are the photo's");
        assert!(
            file.len() < bytes.len() * 9 / 10,
            "compressed: {} of {}",
            file.len(),
            bytes.len()
        );
    }

    #[test]
    fn adler32_combines_like_one_pass() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let adler = |d: &[u8]| {
            let (mut a, mut b) = (1u32, 0u32);
            for &x in d {
                a = (a + x as u32) % 65521;
                b = (b + a) % 65521;
            }
            b << 16 | a
        };
        for cut in [0, 1, 5552, 65521, 70_000, 100_000] {
            let (x, y) = data.split_at(cut);
            assert_eq!(
                adler32_combine(adler(x), adler(y), y.len()),
                adler(&data),
                "cut {cut}"
            );
        }
    }
}
