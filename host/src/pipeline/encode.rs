//! Stage 9 — Encode: working space → file, atomically, never overwriting.
//!
//! * 16-bit TIFF (default): uncompressed — an LZW 24 MP TIFF takes seconds to write and
//!   editors import it as a new version anyway. Written through kamadak-exif's TIFF writer,
//!   which places the EXIF and GPS sub-IFDs, the ICC profile (tag 34675) and XMP (700) in
//!   one pass with the strips; the strips are quantised as they are written
//!   (`tiff_strips.rs`).
//! * JPEG: 8-bit with triangular dither (no banding in skies), ICC, EXIF and XMP.
//! * PNG: 16-bit with iCCP, eXIf and an XMP iTXt chunk; the image data deflated in bands
//!   on every core (`png_bands.rs`).
//!
//! Every output is written under no visible name in the target folder, flushed to disk,
//! then given its name with no clobbering (`publish.rs`): a reader never sees half a
//! file, an existing file is never replaced (the name gets `-2`, `-3`, …), and a failed,
//! cancelled or killed job leaves nothing behind.

use crate::simd::Simd;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use exif::{Context, Field, In, Rational, Tag, Value};
use rayon::prelude::*;

use crate::color::OutputSpace;
use crate::config::Format;
use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;

/// Any encoder's error; its I/O cause, if any, is found again by [`io_words`].
/// Any writer's failure (a `JobError` passes through `publish_with` as itself).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Plain words for why writing failed, from the I/O error at the root of `err`.
fn io_words(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                std::io::ErrorKind::StorageFull => "the disk is full",
                std::io::ErrorKind::ReadOnlyFilesystem => "the folder is on a read-only disk",
                std::io::ErrorKind::PermissionDenied => "no permission to write in this folder",
                _ => return None,
            });
        }
        cur = e.source();
    }
    None
}

fn write_failure(e: &(dyn std::error::Error + 'static)) -> String {
    match io_words(e) {
        Some(words) => format!("cannot write the result: {words} ({e})"),
        None => format!("cannot write the result ({e})"),
    }
}

/// How to encode.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// File format.
    pub format: Format,
    /// Output colour space (and embedded profile).
    pub space: OutputSpace,
    /// JPEG quality 1–100.
    pub jpeg_quality: u8,
}

/// Metadata for the output.
pub struct OutputMeta {
    /// EXIF fields (already normalised).
    pub exif: Vec<Field>,
    /// XMP packet.
    pub xmp: String,
}

/// Quantises to 16-bit output-space code values.
pub fn to_u16(img: &RgbF32, space: OutputSpace) -> Vec<u16> {
    let enc = space.encoder();
    let mut out = vec![0u16; img.data.len()];
    out.par_chunks_mut(3 * 4096)
        .zip(img.data.par_chunks(3 * 4096))
        .for_each(|(o, i)| enc.encode_u16(i, o, Simd::Best));
    out
}

/// Row `y` as 16-bit code values laid out as bytes (little- or big-endian), the form
/// the file writers take. With `alpha`, a fourth sample per pixel: straight
/// (unassociated) alpha — the colour stays the photo's own, never multiplied by coverage
/// — and linear (coverage is not gamma-encoded).
fn row_u16_bytes(
    img: &RgbF32,
    alpha: Option<&[f32]>,
    enc: &crate::color::Encoder,
    little_endian: bool,
    y: usize,
    out: &mut [u8],
) {
    let w = img.width;
    let src = &img.data[3 * w * y..3 * w * (y + 1)];
    let bytes = |v: u16| {
        if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let Some(alpha) = alpha else {
        // The common case: the block kernel, then each code value's bytes in file order.
        let mut codes = vec![0u16; src.len()];
        enc.encode_u16(src, &mut codes, Simd::Best);
        for (b, v) in out.chunks_exact_mut(2).zip(&codes) {
            b.copy_from_slice(&bytes(*v));
        }
        return;
    };
    let alpha = &alpha[w * y..w * (y + 1)];
    for ((o, p), a) in out.chunks_exact_mut(8).zip(src.chunks_exact(3)).zip(alpha) {
        let e = enc.encode(p);
        let samples = [e[0], e[1], e[2], a.clamp(0.0, 1.0)];
        for (k, v) in samples.into_iter().enumerate() {
            o[2 * k..2 * k + 2].copy_from_slice(&bytes((v * 65535.0 + 0.5) as u16));
        }
    }
}

/// Quantises to 8 bits with triangular (TPDF) dither, deterministic per pixel.
fn to_u8_dithered(img: &RgbF32, space: OutputSpace) -> Vec<u8> {
    let enc = space.encoder();
    let w = img.width;
    let simd = crate::simd::Simd::Best.available();
    let mut out = vec![0u8; img.data.len()];
    out.par_chunks_mut(w * 3)
        .zip(img.data.par_chunks(w * 3))
        .enumerate()
        .for_each(|(y, (o, i))| enc.encode_u8_dithered(i, o, y as u32, simd));
    out
}

fn write_tiff<W: Write + Seek + Send>(
    w: &mut W,
    img: &RgbF32,
    alpha: Option<&[f32]>,
    opts: &EncodeOptions,
    meta: &OutputMeta,
) -> Result<(), BoxError> {
    let samples = if alpha.is_some() { 4 } else { 3 };
    let row_bytes = img.width * 2 * samples;
    let rows_per_strip = ((1 << 20) / row_bytes).max(1);
    let lens: Vec<usize> = (0..img.height)
        .step_by(rows_per_strip)
        .map(|y| (img.height - y).min(rows_per_strip) * row_bytes)
        .collect();
    let placeholder = vec![0u8; rows_per_strip * row_bytes];
    let strips: Vec<&[u8]> = lens.iter().map(|&n| &placeholder[..n]).collect();
    let tiff = |n: u16, value: Value| Field {
        tag: Tag(Context::Tiff, n),
        ifd_num: In::PRIMARY,
        value,
    };
    let res = Value::Rational(vec![Rational { num: 300, denom: 1 }]);
    let mut own = vec![
        tiff(256, Value::Long(vec![img.width as u32])),
        tiff(257, Value::Long(vec![img.height as u32])),
        tiff(258, Value::Short(vec![16; samples])),
        tiff(259, Value::Short(vec![1])),
        tiff(262, Value::Short(vec![2])),
        tiff(277, Value::Short(vec![samples as u16])),
        tiff(278, Value::Long(vec![rows_per_strip as u32])),
        tiff(282, res.clone()),
        tiff(283, res),
        tiff(284, Value::Short(vec![1])),
        tiff(296, Value::Short(vec![2])),
        tiff(700, Value::Byte(meta.xmp.as_bytes().to_vec())),
        tiff(34675, Value::Undefined(opts.space.icc().to_vec(), 0)),
    ];
    if alpha.is_some() {
        // ExtraSamples = 2: unassociated (straight) alpha.
        own.push(tiff(338, Value::Short(vec![2])));
    }
    let mut writer = exif::experimental::Writer::new();
    for f in own.iter().chain(meta.exif.iter()) {
        writer.push_field(f);
    }
    writer.set_strips(&strips, In::PRIMARY);
    let enc = opts.space.encoder();
    let count = lens.len();
    let mut out = super::tiff_strips::StripWriter::new(w, &placeholder, lens, |i, buf| {
        let y0 = i * rows_per_strip;
        let rows = (img.height - y0).min(rows_per_strip);
        buf.resize(rows * row_bytes, 0);
        buf.par_chunks_mut(row_bytes)
            .enumerate()
            .for_each(|(k, row)| row_u16_bytes(img, alpha, enc, true, y0 + k, row));
    });
    writer.write(&mut out, true).map_err(BoxError::from)?;
    if out.written() != count {
        return Err(format!("TIFF writer wrote {} of {count} strips", out.written()).into());
    }
    Ok(())
}

/// A 16-bit PNG's writer with the output's ICC profile, EXIF and XMP, its header written.
pub(crate) fn png_writer<W: Write>(
    w: W,
    (width, height): (usize, usize),
    color: png::ColorType,
    space: OutputSpace,
    meta: &OutputMeta,
) -> Result<png::Writer<W>, BoxError> {
    let exif = crate::metadata::exif_blob(&meta.exif);
    let mut info = png::Info::with_size(width as u32, height as u32);
    info.color_type = color;
    info.bit_depth = png::BitDepth::Sixteen;
    info.icc_profile = Some(space.icc().into());
    if !exif.is_empty() {
        info.exif_metadata = Some(exif.into());
    }
    let mut enc = png::Encoder::with_info(w, info)?;
    enc.set_compression(png::Compression::Fast);
    enc.add_itxt_chunk("XML:com.adobe.xmp".into(), meta.xmp.clone())?;
    Ok(enc.write_header()?)
}

fn write_png<W: Write>(
    w: W,
    img: &RgbF32,
    alpha: Option<&[f32]>,
    opts: &EncodeOptions,
    meta: &OutputMeta,
) -> Result<(), BoxError> {
    // PNG's alpha is straight (unassociated) by definition.
    let color = if alpha.is_some() {
        png::ColorType::Rgba
    } else {
        png::ColorType::Rgb
    };
    let mut writer = png_writer(w, (img.width, img.height), color, opts.space, meta)?;
    let samples = if alpha.is_some() { 4 } else { 3 };
    let enc = opts.space.encoder();
    super::png_bands::write_image_data(
        &mut writer,
        img.height,
        img.width * samples * 2,
        samples * 2,
        |y, row| row_u16_bytes(img, alpha, enc, false, y, row),
    )?;
    writer.finish().map_err(BoxError::from)
}

fn write_jpeg<W: Write>(
    mut w: W,
    img: &RgbF32,
    opts: &EncodeOptions,
    meta: &OutputMeta,
) -> Result<(), BoxError> {
    // APP1 Exif, APP1 XMP, then APP2 ICC, after the JFIF header, as cameras and
    // Lightroom write them.
    let mut app = Vec::new();
    let exif = crate::metadata::exif_blob(&meta.exif);
    if !exif.is_empty() {
        let mut seg = b"Exif\0\0".to_vec();
        seg.extend_from_slice(&exif);
        app.push((1, seg));
    }
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend_from_slice(meta.xmp.as_bytes());
    if xmp.len() > 65533 {
        return Err("XMP packet too large for a JPEG segment".into());
    }
    app.push((1, xmp));
    // jpeg-encoder (its AVX2 path chosen at run time) in bands on every core, each band
    // quantised by its own thread: 4:4:4 from quality 90 up, libjpeg's quantisation
    // tables. A 24 MP q95 encode stage went 1140 -> 685 ms against `image`'s encoder;
    // the bands took it to 444 ms.
    let header = super::jpeg::JpegHeader {
        quality: opts.jpeg_quality.clamp(1, 100),
        app_segments: &app,
        icc: opts.space.icc(),
    };
    let (enc, width) = (opts.space.encoder(), img.width);
    let simd = crate::simd::Simd::Best.available();
    let buf = super::jpeg::encode_rows(width, img.height, &header, |y0, band| {
        let src = &img.data[y0 * width * 3..y0 * width * 3 + band.len()];
        let rows = band.chunks_mut(width * 3).zip(src.chunks(width * 3));
        for (dy, (o, i)) in rows.enumerate() {
            enc.encode_u8_dithered(i, o, (y0 + dy) as u32, simd);
        }
    })?;
    w.write_all(&buf).map_err(BoxError::from)
}

/// A preview's file: 8-bit (dithered) in `space` with its ICC profile and no other
/// metadata, as JPEG quality 90 or PNG. Previews are for looking, in memory first.
pub fn preview_bytes(img: &RgbF32, png: bool, space: OutputSpace) -> Result<Vec<u8>, BoxError> {
    let pixels = to_u8_dithered(img, space);
    let mut buf = Vec::with_capacity(pixels.len() / 4);
    if png {
        let mut info = png::Info::with_size(img.width as u32, img.height as u32);
        info.color_type = png::ColorType::Rgb;
        info.bit_depth = png::BitDepth::Eight;
        info.icc_profile = Some(space.icc().into());
        let mut enc = png::Encoder::with_info(&mut buf, info).map_err(BoxError::from)?;
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(BoxError::from)?;
        writer.write_image_data(&pixels).map_err(BoxError::from)?;
        writer.finish().map_err(BoxError::from)?;
    } else {
        // jpeg-encoder (SIMD, about 4× the `image` crate's encoder here): a preview is
        // encoded on every slider step.
        let mut enc = jpeg_encoder::Encoder::new(&mut buf, 90);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
        enc.add_icc_profile(space.icc()).map_err(BoxError::from)?;
        enc.encode(
            &pixels,
            u16::try_from(img.width).map_err(BoxError::from)?,
            u16::try_from(img.height).map_err(BoxError::from)?,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(BoxError::from)?;
    }
    Ok(buf)
}

/// Why a cut-out cannot be a JPEG.
pub const NO_ALPHA_IN_JPEG: &str =
    "a cut-out has a transparent background, which JPEG cannot hold: \
use --format tiff (16-bit, the default) or --format png";

/// Candidate file names: `name.ext`, `name-2.ext`, `name-3.ext`, …
fn candidate(dir: &Path, stem: &str, ext: &str, n: u32) -> PathBuf {
    if n == 1 {
        dir.join(format!("{stem}.{ext}"))
    } else {
        dir.join(format!("{stem}-{n}.{ext}"))
    }
}

/// Encodes `img` and publishes it atomically as `dir/stem.ext` (or the first free
/// `-N` variant). Returns the final path.
pub fn write_output(
    img: &RgbF32,
    opts: &EncodeOptions,
    meta: &OutputMeta,
    dir: &Path,
    stem: &str,
) -> Result<PathBuf, JobError> {
    write_output_with_alpha(img, None, opts, meta, dir, stem)
}

/// [`write_output`] with an alpha channel (`width * height` coverages): 16-bit RGBA,
/// straight alpha, in TIFF (ExtraSamples 2) or PNG. JPEG has no alpha and is refused.
pub fn write_output_with_alpha(
    img: &RgbF32,
    alpha: Option<&[f32]>,
    opts: &EncodeOptions,
    meta: &OutputMeta,
    dir: &Path,
    stem: &str,
) -> Result<PathBuf, JobError> {
    if let Some(a) = alpha {
        assert_eq!(a.len(), img.width * img.height, "alpha size");
        if opts.format == Format::Jpeg {
            return Err(JobError::new(ErrorCode::BadRequest, NO_ALPHA_IN_JPEG));
        }
    }
    let ext = opts.format.extension();
    publish_with(dir, stem, ext, |w| match opts.format {
        Format::Tiff => write_tiff(w, img, alpha, opts, meta),
        Format::Png => write_png(w, img, alpha, opts, meta),
        Format::Jpeg => write_jpeg(w, img, opts, meta),
    })
}

/// Writes a new file in `dir` through `write` under no visible name, syncs it and gives it
/// the name `stem.ext` (or the first free `-N` variant) — the one way every output
/// appears. On any error, nothing is left in the folder.
pub fn publish_with(
    dir: &Path,
    stem: &str,
    ext: &str,
    write: impl FnOnce(&mut BufWriter<super::publish::Writeback<'_>>) -> Result<(), BoxError>,
) -> Result<PathBuf, JobError> {
    let fail = |why: String| JobError::file(ErrorCode::OutputFailed, dir, why);
    let pending = super::publish::Pending::create(dir).map_err(|e| {
        fail(format!(
            "cannot create a file in this folder: {} ({e})",
            io_words(&e).unwrap_or("is it writable?")
        ))
    })?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, pending.writer());
        write(&mut w).map_err(|e| match e.downcast::<JobError>() {
            // A job error raised while writing (cancelled, an engine's failure) stays itself.
            Ok(job) => *job,
            Err(e) => fail(write_failure(e.as_ref())),
        })?;
        w.flush().map_err(|e| fail(write_failure(&e)))?;
    }
    let t = std::time::Instant::now();
    pending
        .file()
        .sync_all()
        .map_err(|e| fail(write_failure(&e)))?;
    tracing::debug!("fsync {:?}", t.elapsed());
    hold_for_tests("rename");
    match pending.publish((1..10_000).map(|n| candidate(dir, stem, ext, n))) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => Err(fail(format!(
            "too many existing outputs named {stem}-N.{ext}"
        ))),
        Err(e) => Err(fail(format!("cannot publish {stem}.{ext} ({e})"))),
    }
}

/// Kill tests need the daemon stopped at an exact moment — here, the output complete and
/// synced, not yet published. With `LUMINARY_TEST_HOLD` naming
/// `point`, a debug build writes the file `LUMINARY_TEST_HOLD_FILE` and waits (up to a
/// minute) while it exists. Release builds compile this to nothing.
fn hold_for_tests(point: &str) {
    if !cfg!(debug_assertions) || std::env::var("LUMINARY_TEST_HOLD").as_deref() != Ok(point) {
        return;
    }
    let Some(marker) = std::env::var_os("LUMINARY_TEST_HOLD_FILE").map(PathBuf::from) else {
        return;
    };
    if std::fs::write(&marker, point).is_err() {
        return;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while marker.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_outputs_are_never_replaced_and_no_temp_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbF32::new(
            32,
            16,
            (0..32 * 16 * 3).map(|i| (i % 97) as f32 / 97.0).collect(),
        );
        let meta = OutputMeta {
            exif: vec![],
            xmp: "<x/>".into(),
        };
        let opts = EncodeOptions {
            format: Format::Png,
            space: OutputSpace::Srgb,
            jpeg_quality: 95,
        };
        let a = write_output(&img, &opts, &meta, dir.path(), "photo").unwrap();
        let b = write_output(&img, &opts, &meta, dir.path(), "photo").unwrap();
        assert_eq!(a.file_name().unwrap(), "photo.png");
        assert_eq!(b.file_name().unwrap(), "photo-2.png");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// A TIFF whose strips are made as they are written (twenty strips here, the last
    /// one short) holds every pixel's code values, RGB and RGBA, with the metadata IFD
    /// entries before them: decoded by the `tiff` crate, it is the per-pixel encode.
    #[test]
    fn a_tiff_written_strip_by_strip_is_the_photos_code_values() {
        let photo = crate::image::test_photo().to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let data: Vec<f32> = photo.into_raw().iter().map(|v| v * v).collect();
        let img = RgbF32::new(w, h, data);
        let alpha: Vec<f32> = (0..w * h).map(|i| (i % 251) as f32 / 250.0).collect();
        let meta = OutputMeta {
            exif: vec![],
            xmp: "<x:xmpmeta/>".into(),
        };
        let opts = EncodeOptions {
            format: Format::Tiff,
            space: OutputSpace::AdobeRgb,
            jpeg_quality: 95,
        };
        let enc = opts.space.encoder();
        for with_alpha in [false, true] {
            let a = with_alpha.then_some(&alpha[..]);
            let mut file = std::io::Cursor::new(Vec::new());
            write_tiff(&mut file, &img, a, &opts, &meta).unwrap();
            let mut dec =
                tiff::decoder::Decoder::new(std::io::Cursor::new(file.into_inner())).unwrap();
            assert_eq!(dec.dimensions().unwrap(), (w as u32, h as u32));
            let icc = dec.get_tag_u8_vec(tiff::tags::Tag::Unknown(34675)).unwrap();
            assert_eq!(icc, opts.space.icc());
            let tiff::decoder::DecodingResult::U16(got) = dec.read_image().unwrap() else {
                panic!("not 16-bit");
            };
            let n = if with_alpha { 4 } else { 3 };
            assert_eq!(got.len(), w * h * n);
            for (i, (p, g)) in img
                .data
                .chunks_exact(3)
                .zip(got.chunks_exact(n))
                .enumerate()
            {
                let e = enc.encode(p).map(|v| (v * 65535.0 + 0.5) as u16);
                assert_eq!(&g[..3], &e, "pixel {i}, alpha {with_alpha}");
                if with_alpha {
                    assert_eq!(g[3], (alpha[i] * 65535.0 + 0.5) as u16, "alpha {i}");
                }
            }
        }
    }
}
