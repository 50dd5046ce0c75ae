//! Upscaling: the one job whose engine input is the full-resolution photo. The photo is cut
//! into overlapping tiles (each small enough for a super-resolution model), each tile goes
//! through the edit cache and the ledger like any engine call (so a cancelled job keeps
//! the tiles it paid for), and the answers are cross-faded across their overlaps into a
//! strip of output rows that is written out as soon as no later tile touches it. Memory is
//! the photo plus one strip (for 4× of a 24 MP photo: about 0.3 GB of strip for a 2.3 GB
//! result); TIFF becomes BigTIFF past 4 GB.

use std::io::{Seek, Write};
use std::path::PathBuf;

use luminary_engines::Provider;
use rayon::prelude::*;

use crate::color::OutputSpace;
use crate::config::Format;
use crate::engine::remote::{EditJob, Engines};
use crate::error::{check, Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::pipeline::encode::{self, BoxError};

/// Input pixels per tile side: what ESRGAN-family services take comfortably.
pub const TILE: usize = 512;
/// Input pixels two neighbouring tiles share, cross-faded.
pub const OVERLAP: usize = 32;
/// Tiles asked for at once (the engine's `concurrency` still caps what is in flight).
const IN_FLIGHT: usize = 2;

/// The factor of a `scale` parameter (`"2x"` or `"4x"`).
pub fn factor(params: &serde_json::Map<String, serde_json::Value>) -> Result<u32, JobError> {
    match params.get("scale").and_then(|v| v.as_str()).unwrap_or("2x") {
        "2x" => Ok(2),
        "4x" => Ok(4),
        other => Err(JobError::new(
            ErrorCode::BadRequest,
            format!("scale must be 2x or 4x, not {other}"),
        )),
    }
}

/// Tile starts and lengths along one axis of `len` pixels: as few tiles of at most `tile`
/// as cover it with neighbours sharing at least `overlap`, spread evenly.
pub fn axis(len: usize, tile: usize, overlap: usize) -> Vec<(usize, usize)> {
    if len <= tile {
        return vec![(0, len)];
    }
    let n = (len - overlap).div_ceil(tile - overlap);
    (0..n)
        .map(|i| ((i * (len - tile) + (n - 1) / 2) / (n - 1), tile))
        .collect()
}

/// How many engine calls an upscale of a `w`×`h` photo makes.
pub fn tile_count(w: usize, h: usize) -> usize {
    axis(w, TILE, OVERLAP).len() * axis(h, TILE, OVERLAP).len()
}

/// The cross-fade weight of tile `i` (of `tiles`, in output pixels, with overlaps of at
/// least `ramp`) at output position `x`: each tile rises linearly over `ramp` pixels from
/// its inner edges, normalised by all tiles covering `x`, so the weights sum to one
/// however many tiles overlap there.
fn weight(tiles: &[(usize, usize)], i: usize, x: usize, ramp: usize) -> f32 {
    let len = tiles.last().map_or(0, |(s, l)| s + l);
    let rise = |j: usize| -> f32 {
        let (s, l) = tiles[j];
        if !(s..s + l).contains(&x) {
            return 0.0;
        }
        let xc = x as f32 + 0.5;
        // The photo's own edges are no seam: full weight there.
        let left = if s == 0 {
            1.0
        } else {
            (xc - s as f32) / ramp as f32
        };
        let right = if s + l == len {
            1.0
        } else {
            ((s + l) as f32 - xc) / ramp as f32
        };
        left.min(right).clamp(1e-4, 1.0)
    };
    let own = rise(i);
    if own == 0.0 {
        return 0.0;
    }
    let lo = i.saturating_sub(3);
    let hi = (i + 4).min(tiles.len());
    own / (lo..hi).map(rise).sum::<f32>()
}

/// What one tile's engine call needs besides its pixels.
pub struct TileCall<'a> {
    /// The engine.
    pub provider: &'a dyn Provider,
    /// Its model for this preset.
    pub model: &'a str,
    /// The cache, ledger and budget.
    pub engines: &'a Engines,
    /// The edit's identity (the tile's own pixels complete the cache key).
    pub job: EditJob<'a>,
}

/// The outcome: size, cost of the calls made, whether every tile came from the cache.
pub struct Upscaled {
    /// The output file.
    pub path: PathBuf,
    /// Its width.
    pub width: usize,
    /// Its height.
    pub height: usize,
    /// US dollars spent on this run's calls.
    pub cost: f64,
    /// Tiles, and of them answered from the cache.
    pub tiles: (usize, usize),
}

/// Upscales `photo` by `f` through `call`, writing `dir/stem.ext` as it goes.
#[allow(clippy::too_many_arguments)]
pub fn run(
    photo: &RgbF32,
    f: u32,
    call: &TileCall<'_>,
    (format, space): (Format, OutputSpace),
    meta: &encode::OutputMeta,
    dir: &std::path::Path,
    stem: &str,
    progress: &(dyn Fn(&str, f32) + Sync),
    cancel: &Cancel,
) -> Result<Upscaled, JobError> {
    let f = f as usize;
    let (w, h) = (photo.width, photo.height);
    let (ow, oh) = (w * f, h * f);
    let xs = axis(w, TILE, OVERLAP);
    let ys = axis(h, TILE, OVERLAP);
    let n = xs.len() * ys.len();
    let (mut cost, mut cached) = (0.0, 0usize);
    let mut produce =
        |emit: &mut dyn FnMut(&[u16]) -> Result<(), BoxError>| -> Result<(), BoxError> {
            let oxs: Vec<(usize, usize)> = xs.iter().map(|&(s, l)| (s * f, l * f)).collect();
            let oys: Vec<(usize, usize)> = ys.iter().map(|&(s, l)| (s * f, l * f)).collect();
            let row = ow * 3;
            // The strip: output rows [y0, y0 + rows) in output-space 16-bit code values.
            let mut strip: Vec<u16> = Vec::new();
            let mut y0 = 0usize;
            let enc = space.encoder();
            for (ty, &(sy, ly)) in ys.iter().enumerate() {
                let (oy, oly) = oys[ty];
                // Rows above this tile row are final: out with them, keep the rest on top.
                if oy > y0 {
                    let done = (oy - y0).min(strip.len() / row);
                    emit(&strip[..done * row])?;
                    strip.drain(..done * row);
                    y0 = oy;
                }
                strip.resize(oly * row, 0);
                // Tiles of a row go out a few at a time (the engine's own concurrency limit
                // decides how many are in flight), and are blended in order.
                let fetch = |tx: usize| -> Result<crate::engine::remote::Answer, JobError> {
                    let (sx, lx) = xs[tx];
                    let k = ty * xs.len() + tx;
                    let at = 0.2 + 0.75 * k as f32 / n as f32;
                    progress(&format!("engine · tile {} of {n}", k + 1), at);
                    let tile = crop(photo, sx, sy, lx, ly);
                    let sent = encode::preview_bytes(&tile, true, OutputSpace::Srgb)
                        .map_err(|e| JobError::new(ErrorCode::Internal, e.to_string()))?;
                    let status = |msg: &str| {
                        progress(&format!("engine · tile {} of {n} · {msg}", k + 1), at)
                    };
                    call.engines.answer(
                        call.provider,
                        call.model,
                        &sent,
                        (lx, ly),
                        &call.job,
                        cancel,
                        &status,
                    )
                };
                let columns: Vec<usize> = (0..xs.len()).collect();
                for group in columns.chunks(IN_FLIGHT) {
                    check(cancel)?;
                    let answers: Vec<Result<_, JobError>> = std::thread::scope(|scope| {
                        let handles: Vec<_> = group
                            .iter()
                            .map(|&tx| scope.spawn(move || fetch(tx)))
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(JobError::new(
                                        ErrorCode::Internal,
                                        "a tile's thread panicked",
                                    ))
                                })
                            })
                            .collect()
                    });
                    for (&tx, answer) in group.iter().zip(answers) {
                        let answer = answer?;
                        let (_, lx) = xs[tx];
                        let k = ty * xs.len() + tx;
                        cost += answer.cost;
                        cached += answer.cached as usize;
                        let (tw, th) = (lx * f, ly * f);
                        let big = if (answer.image.width, answer.image.height) == (tw, th) {
                            answer.image
                        } else {
                            // A model that answers another size: brought to the expected one.
                            tracing::warn!(
                                "tile {} answered {}×{}, expected {tw}×{th}; resampled",
                                k + 1,
                                answer.image.width,
                                answer.image.height
                            );
                            crate::transfer::resize_bilinear(&answer.image, tw, th)
                        };
                        let (ox, _) = oxs[tx];
                        let wy: Vec<f32> = (0..th)
                            .map(|y| weight(&oys, ty, oy + y, OVERLAP * f))
                            .collect();
                        let wx: Vec<f32> = (0..tw)
                            .map(|x| weight(&oxs, tx, ox + x, OVERLAP * f))
                            .collect();
                        strip
                            .par_chunks_mut(row)
                            .take(th)
                            .zip(big.data.par_chunks(tw * 3))
                            .enumerate()
                            .for_each(|(y, (dst, src))| {
                                for (x, p) in src.chunks_exact(3).enumerate() {
                                    let wgt = wy[y] * wx[x];
                                    if wgt <= 0.0 {
                                        continue;
                                    }
                                    let e = enc.encode(p);
                                    let d = &mut dst[(ox + x) * 3..(ox + x) * 3 + 3];
                                    for c in 0..3 {
                                        let v = d[c] as f32 + wgt * e[c].clamp(0.0, 1.0) * 65535.0;
                                        d[c] = v.round().min(65535.0) as u16;
                                    }
                                }
                            });
                    }
                }
            }
            emit(&strip)?;
            Ok(())
        };
    let ext = format.extension();
    let path = encode::publish_with(dir, stem, ext, |out| match format {
        Format::Tiff => stream_tiff(out, ow, oh, space, meta, &mut produce),
        Format::Png => stream_png(out, ow, oh, space, meta, &mut produce),
        Format::Jpeg => Err(Box::new(JobError::new(ErrorCode::BadRequest, NO_JPEG))),
    });
    let path = path?;
    Ok(Upscaled {
        path,
        width: ow,
        height: oh,
        cost,
        tiles: (n, cached),
    })
}

/// Why an upscale cannot be a JPEG.
pub const NO_JPEG: &str = "an upscale is written as it is made, in 16 bits: use --format tiff \
(the default; BigTIFF past 4 GB) or --format png";

fn crop(img: &RgbF32, x: usize, y: usize, w: usize, h: usize) -> RgbF32 {
    let mut data = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let start = (row * img.width + x) * 3;
        data.extend_from_slice(&img.data[start..start + w * 3]);
    }
    RgbF32::new(w, h, data)
}

type Produce<'a> =
    dyn FnMut(&mut dyn FnMut(&[u16]) -> Result<(), BoxError>) -> Result<(), BoxError> + 'a;

/// Classic TIFF holds 4 GiB; past that (with room for the tags), BigTIFF.
const BIGTIFF_ABOVE: u64 = 4_000_000_000;

/// A 16-bit RGB TIFF written strip by strip as `produce` hands out rows.
fn stream_tiff<W: Write + Seek>(
    out: &mut W,
    w: usize,
    h: usize,
    space: OutputSpace,
    meta: &encode::OutputMeta,
    produce: &mut Produce<'_>,
) -> Result<(), BoxError> {
    let bytes = (w * h * 6) as u64;
    let big = bytes > BIGTIFF_ABOVE
        || std::env::var("LUMINARY_TEST_BIGTIFF").is_ok_and(|v| v == "1") && cfg!(debug_assertions);
    if big {
        let mut enc = tiff::encoder::TiffEncoder::new_big(out)?;
        write_tiff_image(&mut enc, w, h, space, meta, produce)
    } else {
        let mut enc = tiff::encoder::TiffEncoder::new(out)?;
        write_tiff_image(&mut enc, w, h, space, meta, produce)
    }
}

fn write_tiff_image<W: Write + Seek, K: tiff::encoder::TiffKind>(
    enc: &mut tiff::encoder::TiffEncoder<W, K>,
    w: usize,
    h: usize,
    space: OutputSpace,
    meta: &encode::OutputMeta,
    produce: &mut Produce<'_>,
) -> Result<(), BoxError> {
    use tiff::tags::Tag;
    let mut image = enc.new_image::<tiff::encoder::colortype::RGB16>(w as u32, h as u32)?;
    let rows_per_strip = ((1usize << 20) / (w * 6)).max(1);
    image.rows_per_strip(rows_per_strip as u32)?;
    image
        .encoder()
        .write_tag(Tag::Unknown(34675), space.icc())?;
    image
        .encoder()
        .write_tag(Tag::Unknown(700), meta.xmp.as_bytes())?;
    for field in &meta.exif {
        // The main IFD's text fields (camera, date, artist, copyright) travel; the EXIF
        // sub-directory does not (it needs the whole file in memory with this writer).
        if field.ifd_num == exif::In::PRIMARY && field.tag.0 == exif::Context::Tiff {
            if let exif::Value::Ascii(v) = &field.value {
                if let Some(text) = v.first().and_then(|b| std::str::from_utf8(b).ok()) {
                    if [271u16, 272, 306, 315, 33432].contains(&field.tag.1) {
                        image.encoder().write_tag(Tag::Unknown(field.tag.1), text)?;
                    }
                }
            }
        }
    }
    let strip_len = rows_per_strip * w * 3;
    let mut pending: Vec<u16> = Vec::with_capacity(strip_len);
    let mut rows_done = 0usize;
    produce(&mut |rows: &[u16]| {
        let mut rows = rows;
        while !rows.is_empty() {
            let take = (strip_len - pending.len()).min(rows.len());
            pending.extend_from_slice(&rows[..take]);
            rows = &rows[take..];
            if pending.len() == strip_len {
                image.write_strip(&pending)?;
                rows_done += rows_per_strip;
                pending.clear();
            }
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        rows_done += pending.len() / (w * 3);
        image.write_strip(&pending)?;
    }
    if rows_done != h {
        return Err(format!("wrote {rows_done} of {h} rows").into());
    }
    image.finish()?;
    Ok(())
}

/// A 16-bit RGB PNG written row by row as `produce` hands them out.
fn stream_png<W: Write>(
    out: &mut W,
    w: usize,
    h: usize,
    space: OutputSpace,
    meta: &encode::OutputMeta,
    produce: &mut Produce<'_>,
) -> Result<(), BoxError> {
    let mut writer = encode::png_writer(out, (w, h), png::ColorType::Rgb, space, meta)?;
    let mut stream = writer.stream_writer()?;
    let mut be = Vec::new();
    produce(&mut |rows: &[u16]| {
        be.clear();
        be.extend(rows.iter().flat_map(|v| v.to_be_bytes()));
        stream.write_all(&be)?;
        Ok(())
    })?;
    stream.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_photo_with_overlaps_and_weights_that_sum_to_one() {
        for len in [100, 512, 513, 1000, 6000, 4000, 8256] {
            let t = axis(len, TILE, OVERLAP);
            assert_eq!(t[0].0, 0);
            assert_eq!(t.last().map(|(s, l)| s + l), Some(len), "{len}");
            for pair in t.windows(2) {
                let overlap = pair[0].0 + pair[0].1 - pair[1].0;
                assert!(overlap >= OVERLAP, "{len}: {pair:?}");
            }
            for x in 0..len {
                let sum: f32 = (0..t.len()).map(|i| weight(&t, i, x, OVERLAP)).sum();
                assert!((sum - 1.0).abs() < 1e-5, "{len} at {x}: {sum}");
            }
            // Inside a tile, away from its neighbours, only it counts.
            if t.len() > 1 {
                assert_eq!(weight(&t, 0, 0, OVERLAP), 1.0);
            }
        }
        assert_eq!(tile_count(6000, 4000), 13 * 9);
    }
}
