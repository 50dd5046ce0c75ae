//! Baseline JPEG on every core: horizontal bands of whole MCU rows, each encoded by
//! jpeg-encoder with a restart marker after every MCU row, joined into one scan.
//!
//! A restart marker resets the DC predictors and starts on a byte, so bands encoded apart
//! make one valid scan once their `RSTn` markers continue the cycle of eight and one marker
//! joins each band to the next. The blocks are exactly the ones a single encoder writes
//! (bands hold whole MCU rows, so no band is padded but the last, as a single encoder pads
//! it), so the file decodes to the same pixels. Hand-written because no JPEG encoder in
//! Rust (nor libjpeg-turbo) encodes one image on several cores; the joining is the only
//! new part, and the test decodes its files against a single encoder's.

use rayon::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bands below this many pixels are not worth a thread.
const MIN_BAND_PIXELS: usize = 1 << 20;

/// What goes into the file besides the pixels.
pub struct JpegHeader<'a> {
    /// 1..=100; from 90 up the chroma is kept at full resolution (4:4:4), below it is
    /// halved both ways (4:2:0), as jpeg-encoder chooses.
    pub quality: u8,
    /// APPn segments written after the JFIF header, in order: (n, body).
    pub app_segments: &'a [(u8, Vec<u8>)],
    /// The ICC profile (APP2 chunks after the others).
    pub icc: &'a [u8],
}

/// Encodes interleaved 8-bit RGB `pixels` (`width`×`height`) as one baseline JPEG.
#[cfg(test)]
pub fn encode_rgb8(
    pixels: &[u8],
    width: usize,
    height: usize,
    header: &JpegHeader<'_>,
) -> Result<Vec<u8>, BoxError> {
    encode_rows(width, height, header, |y0, band| {
        let at = y0 * width * 3;
        band.copy_from_slice(&pixels[at..at + band.len()]);
    })
}

/// Encodes a `width`×`height` picture whose 8-bit RGB rows `fill(first_row, band)` writes
/// into `band` (whole rows, interleaved): each band's rows are made by the thread that
/// encodes them, so the picture never exists in full at 8 bits.
pub fn encode_rows(
    width: usize,
    height: usize,
    header: &JpegHeader<'_>,
    fill: impl Fn(usize, &mut [u8]) + Sync,
) -> Result<Vec<u8>, BoxError> {
    let too_big = || "JPEG is limited to 65535 pixels a side";
    let w = u16::try_from(width).map_err(|_| too_big())?;
    u16::try_from(height).map_err(|_| too_big())?;
    let sampling = if header.quality >= 90 {
        jpeg_encoder::SamplingFactor::F_1_1
    } else {
        jpeg_encoder::SamplingFactor::F_2_2
    };
    let mcu = if header.quality >= 90 { 8 } else { 16 };
    let mcu_rows = height.div_ceil(mcu);
    let bands = (rayon::current_num_threads() * 2)
        .min(width * height / MIN_BAND_PIXELS)
        .min(mcu_rows)
        .max(1);
    let band_rows = mcu_rows.div_ceil(bands) * mcu;
    let starts: Vec<usize> = (0..height).step_by(band_rows).collect();
    let encode_band = |(i, &y0): (usize, &usize)| -> Result<Vec<u8>, BoxError> {
        let h = band_rows.min(height - y0);
        let mut band = vec![0u8; width * h * 3];
        fill(y0, &mut band);
        let mut buf = Vec::with_capacity(band.len() / 6);
        let mut enc = jpeg_encoder::Encoder::new(&mut buf, header.quality.clamp(1, 100));
        enc.set_sampling_factor(sampling);
        if starts.len() > 1 {
            enc.set_restart_interval(width.div_ceil(mcu) as u16);
        }
        if i == 0 {
            for (n, body) in header.app_segments {
                enc.add_app_segment(*n, body)?;
            }
            enc.add_icc_profile(header.icc)?;
        }
        enc.encode(&band, w, h as u16, jpeg_encoder::ColorType::Rgb)?;
        Ok(buf)
    };
    let parts: Vec<Vec<u8>> = starts
        .par_iter()
        .enumerate()
        .map(encode_band)
        .collect::<Result<_, _>>()?;
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().unwrap_or_default());
    }
    join(parts, height)
}

/// One file from the bands: the first band's headers with the whole height, every band's
/// scan with its restart markers renumbered, a marker between bands, one EOI.
fn join(parts: Vec<Vec<u8>>, height: usize) -> Result<Vec<u8>, BoxError> {
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    let mut restarts = 0u32;
    for (i, part) in parts.iter().enumerate() {
        let (sof, scan) = scan_of(part)?;
        if i == 0 {
            out.extend_from_slice(&part[..scan.start]);
            // SOF: FF C0, length, precision, then the height.
            let at = sof + 5;
            out[at..at + 2].copy_from_slice(&(height as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[0xFF, 0xD0 + (restarts % 8) as u8]);
            restarts += 1;
        }
        let data = &part[scan];
        let mut k = 0;
        while k < data.len() {
            let b = data[k];
            out.push(b);
            if b == 0xFF && k + 1 < data.len() {
                let next = data[k + 1];
                if (0xD0..=0xD7).contains(&next) {
                    out.push(0xD0 + (restarts % 8) as u8);
                    restarts += 1;
                } else {
                    out.push(next);
                }
                k += 1;
            }
            k += 1;
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// Where a one-scan JPEG's frame header starts and its entropy-coded data lies.
fn scan_of(jpeg: &[u8]) -> Result<(usize, std::ops::Range<usize>), BoxError> {
    let bad = || -> BoxError { "jpeg band: unexpected encoder output".into() };
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || jpeg[jpeg.len() - 2..] != [0xFF, 0xD9] {
        return Err(bad());
    }
    let (mut at, mut sof) = (2, None);
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return Err(bad());
        }
        let marker = jpeg[at + 1];
        let len = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        if marker == 0xC0 {
            sof = Some(at);
        }
        at += 2 + len;
        if marker == 0xDA {
            return Ok((sof.ok_or_else(bad)?, at..jpeg.len() - 2));
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(pixels: &[u8], w: usize, h: usize, quality: u8) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut buf, quality);
        enc.set_sampling_factor(if quality >= 90 {
            jpeg_encoder::SamplingFactor::F_1_1
        } else {
            jpeg_encoder::SamplingFactor::F_2_2
        });
        enc.encode(pixels, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        buf
    }

    /// A real photo tiled to several megapixels, with heights that end in a partial MCU
    /// row and widths that end in a partial MCU, at 4:4:4 and 4:2:0: the banded file
    /// decodes to exactly the pixels of one encoder's file, and keeps its headers.
    #[test]
    fn banded_jpeg_decodes_like_one_encoder() {
        let photo = crate::image::test_photo().to_rgb32f();
        let photo = crate::image::RgbF32::new(
            photo.width() as usize,
            photo.height() as usize,
            photo.into_raw(),
        );
        for (w, h, quality) in [(2501u32, 1603u32, 95), (2048, 1536, 80), (1999, 1100, 90)] {
            let tiled = crate::transfer::fidelity::mirror_tile(&photo, w as usize, h as usize);
            let pixels: Vec<u8> = tiled
                .data
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
                .collect();
            let pixels = &pixels[..];
            let app = [(1u8, b"Exif\0\0MM\0*\0\0\0\x08\0\0".to_vec())];
            let icc = crate::color::OutputSpace::Srgb.icc();
            let header = JpegHeader {
                quality,
                app_segments: &app,
                icc,
            };
            let banded = encode_rgb8(pixels, w as usize, h as usize, &header).unwrap();
            let one = single(pixels, w as usize, h as usize, quality);
            let restarts = banded
                .windows(2)
                .filter(|p| p[0] == 0xFF && (0xD0..=0xD7).contains(&p[1]))
                .count();
            assert!(restarts > 0, "{w}×{h}: not banded");
            let a = image::load_from_memory(&banded).unwrap().to_rgb8();
            let b = image::load_from_memory(&one).unwrap().to_rgb8();
            assert_eq!(a.dimensions(), (w, h));
            assert!(
                a == b,
                "{w}×{h} q{quality}: the banded file decodes differently"
            );
            use image::ImageDecoder;
            let mut dec =
                image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&banded)).unwrap();
            assert_eq!(dec.icc_profile().unwrap().as_deref(), Some(icc));
            assert!(dec.exif_metadata().unwrap().is_some());
        }
    }
}
