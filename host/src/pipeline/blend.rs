//! Stage 8 — Blend: `out = base + intensity · (edited − base)`, in linear light.
//!
//! Linear light is where mixing two renderings behaves like mixing two exposures, and it
//! makes intensity exact at both ends: 0 is the base bit for bit, 1 the edit.

use rayon::prelude::*;

use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;

/// Checks an intensity from a request.
pub fn validate_intensity(intensity: f64) -> Result<f64, JobError> {
    if intensity.is_finite() && (0.0..=1.0).contains(&intensity) {
        Ok(intensity)
    } else {
        Err(JobError::new(
            ErrorCode::BadRequest,
            format!("intensity must be between 0 and 1 (got {intensity})"),
        ))
    }
}

/// Blends a plugin's pixel function output `edited` (interleaved RGB, e.g. its shared
/// memory) into `base` at `intensity`. Whatever the plugin wrote, the result stays a
/// displayable picture: non-finite values become 0 and values past white are brought back
/// along their hue ([`crate::display::compress_to_display`]). Blocks of pixels as channel
/// arrays through [`crate::display::compress_block`] (the same values), so it vectorises.
///
/// A pass of its own on purpose. Blending each row inside encode, just before it is
/// quantised (so the blended picture is never written in full), was built and measured on
/// the 12 MP Nikon DNG with `cinestill-800t`: the engine stage lost this pass's 15–18 ms,
/// but the 16-bit TIFF encode, now reading the plugin's shared memory, went from 63 to
/// 89 ms and JPEG q95 from 130–139 to 145–149 ms; the whole job got slower (354–371
/// against 337–346 ms). The files were the same to the byte.
pub fn blend_plugin_edit(base: &mut [f32], edited: &[f32], intensity: f32) {
    assert_eq!(base.len(), edited.len(), "blend needs equal sizes");
    const CHUNK: usize = 3 << 14;
    let simd = crate::simd::Simd::Best;
    base.par_chunks_mut(CHUNK)
        .zip(edited.par_chunks(CHUNK))
        .for_each(|(b, e)| plugin_edit_chunk(b, e, intensity, simd));
}

fn plugin_edit_chunk(b: &mut [f32], e: &[f32], t: f32, simd: crate::simd::Simd) {
    use crate::display::{compress_block, BLOCK};
    #[inline(always)]
    fn plain(b: &mut [f32], e: &[f32], t: f32, simd: crate::simd::Simd) {
        for (bb, eb) in b.chunks_mut(3 * BLOCK).zip(e.chunks(3 * BLOCK)) {
            let mut px = [[0f32; BLOCK]; 3];
            crate::simd::split_rgb(simd, eb, &mut px);
            for c in px.iter_mut() {
                for v in c.iter_mut() {
                    *v = if v.is_finite() { *v } else { 0.0 };
                }
            }
            let [r, g, bl] = &mut px;
            compress_block(r, g, bl);
            if t >= 1.0 {
                // The edit itself, exactly (`b + 1·(e − b)` can round off it), without
                // reading the base: streamed past the cache, so the base is not read in
                // only to be overwritten.
                let mut out = [0f32; 3 * BLOCK];
                let out = &mut out[..bb.len()];
                crate::simd::merge_rgb(simd, &px, out);
                crate::simd::stream_copy(simd, out, bb);
                continue;
            }
            let mut base = [[0f32; BLOCK]; 3];
            crate::simd::split_rgb(simd, bb, &mut base);
            for k in 0..3 {
                for i in 0..BLOCK {
                    base[k][i] += t * (px[k][i] - base[k][i]);
                }
            }
            crate::simd::merge_rgb(simd, &base, bb);
        }
    }
    crate::simd::dispatch!(simd, plain(b: &mut [f32], e: &[f32], t: f32, simd: crate::simd::Simd));
    crate::simd::stream_fence(simd);
}

/// Blends into `edited` in place (it becomes the output), consuming no extra memory.
pub fn blend_into(base: &RgbF32, edited: &mut RgbF32, intensity: f32) {
    assert_eq!(
        (base.width, base.height),
        (edited.width, edited.height),
        "blend needs equal sizes"
    );
    if intensity >= 1.0 {
        return;
    }
    if intensity <= 0.0 {
        edited.data.copy_from_slice(&base.data);
        return;
    }
    edited
        .data
        .par_chunks_mut(1 << 16)
        .zip(base.data.par_chunks(1 << 16))
        .for_each(|(e, b)| {
            for (ev, bv) in e.iter_mut().zip(b) {
                *ev = bv + intensity * (*ev - bv);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block kernel gives what the pixel-at-a-time blend gave, to the bit, on a real
    /// photo with what a plugin may write: values past white, negative, NaN and infinite,
    /// a length that does not fill the last block. At intensity 1 that is the (displayable)
    /// edit itself, not `base + 1·(edit − base)`, which can round a bit off it.
    #[test]
    fn a_plugin_edit_blends_like_the_pixel_at_a_time_loop() {
        let photo = crate::image::test_photo().to_rgb32f();
        let base: Vec<f32> = photo.into_raw();
        let n = base.len() / 3 - 17;
        let base = &base[..n * 3];
        let edited: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(i, &v)| match i % 101 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -0.3,
                _ => v * 1.7 - 0.05,
            })
            .collect();
        for t in [1.0f32, 0.45] {
            let mut want = base.to_vec();
            for (bp, ep) in want.chunks_exact_mut(3).zip(edited.chunks_exact(3)) {
                let mut e = [ep[0], ep[1], ep[2]].map(|v| if v.is_finite() { v } else { 0.0 });
                crate::display::compress_to_display(&mut e);
                for k in 0..3 {
                    // At full intensity the edit itself, to the bit.
                    bp[k] = if t >= 1.0 {
                        e[k]
                    } else {
                        bp[k] + t * (e[k] - bp[k])
                    };
                }
            }
            // Into a picture 32-byte aligned (full-size buffers are: the edit is streamed
            // past the cache there) and one that is not (plain stores).
            let mut room = vec![0f32; base.len() + 16];
            let aligned = (0..8)
                .find(|k| (room[*k..].as_ptr() as usize).is_multiple_of(32))
                .unwrap();
            for at in [aligned, aligned + 1] {
                let got = &mut room[at..at + base.len()];
                got.copy_from_slice(base);
                blend_plugin_edit(got, &edited, t);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "intensity {t}, {} bytes past 32-byte alignment",
                    4 * (at - aligned)
                );
                assert!(got.iter().all(|v| v.is_finite()));
            }
        }
    }

    #[test]
    fn intensity_ends_are_exact_and_the_middle_is_halfway() {
        let base = RgbF32::new(2, 1, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        let edit = RgbF32::new(2, 1, vec![0.3, 0.0, 0.9, 0.4, 1.0, 0.0]);
        let mut zero = edit.clone();
        blend_into(&base, &mut zero, 0.0);
        assert_eq!(zero, base);
        let mut one = edit.clone();
        blend_into(&base, &mut one, 1.0);
        assert_eq!(one, edit);
        let mut half = edit.clone();
        blend_into(&base, &mut half, 0.5);
        for i in 0..6 {
            assert!((half.data[i] - (base.data[i] + edit.data[i]) / 2.0).abs() < 1e-6);
        }
        assert!(validate_intensity(1.5).is_err() && validate_intensity(f64::NAN).is_err());
    }
}
