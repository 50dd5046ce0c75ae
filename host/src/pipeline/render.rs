//! Stage 3 — Render: scene-linear pixels → the display-referred base ("the original").
//!
//! The base is deliberately neutral — no added curve or saturation — so that a RAW made
//! from a photograph develops back to that photograph, and intensity 0 gives the photo as
//! the camera recorded it. It brings every pixel into 0..1 of the working space: values a
//! camera matrix pushes past white are compressed towards white along their hue (rather
//! than clipped per channel, which turns bright skies cyan and skin yellow), and negative
//! values (colours outside Rec.2020) are clipped.

use rayon::prelude::*;

use crate::image::RgbF32;

/// Brings one pixel into the 0..1 cube, keeping its hue where it has to give up saturation.
#[inline]
pub fn compress_to_display(p: &mut [f32]) {
    let (r, g, b) = (p[0].max(0.0), p[1].max(0.0), p[2].max(0.0));
    let max = r.max(g).max(b);
    if max <= 1.0 {
        p[0] = r;
        p[1] = g;
        p[2] = b;
        return;
    }
    // Same approach as rawler's highlight handling: average the hue-preserving
    // normalisation with the (clamped) Euclidean brightness, which walks to white.
    let inv = 1.0 / max;
    let e = ((r * r + g * g + b * b) / 3.0).sqrt().min(1.0);
    p[0] = 0.5 * (r * inv + e);
    p[1] = 0.5 * (g * inv + e);
    p[2] = 0.5 * (b * inv + e);
}

/// Renders the base in place.
pub fn render_base(img: &mut RgbF32) {
    img.data
        .par_chunks_mut(3 * 4096)
        .for_each(|chunk| chunk.chunks_exact_mut(3).for_each(compress_to_display));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_pixels_are_untouched_and_overexposed_ones_go_to_white() {
        let mut p = [0.2, 0.5, 0.9];
        compress_to_display(&mut p);
        assert_eq!(p, [0.2, 0.5, 0.9]);
        let mut w = [3.0, 3.0, 3.0];
        compress_to_display(&mut w);
        assert_eq!(w, [1.0, 1.0, 1.0]);
        let mut sky = [0.6, 0.9, 1.4];
        compress_to_display(&mut sky);
        assert!(sky.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            sky[2] > sky[1] && sky[1] > sky[0],
            "hue order kept: {sky:?}"
        );
    }
}
