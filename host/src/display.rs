//! Into the display cube: every stage that may leave values past white or below black (a
//! camera matrix, the offline engine's operators, a plugin's pixel function) brings them
//! back into 0..1 here, along their hue where a pixel has to give up saturation, rather
//! than clipping each channel (which turns bright skies cyan and skin yellow). Below the
//! pipeline and the engines, which all use it.

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

/// Pixels per block of the block kernels (render, the offline engine's pass, the plugin
/// blend): channel arrays of this many pixels.
pub(crate) const BLOCK: usize = 64;

/// [`compress_to_display`] over a block of pixels held as one array per channel, without
/// a branch per pixel (so it vectorises); the same values.
#[inline(always)]
pub(crate) fn compress_block(r: &mut [f32; BLOCK], g: &mut [f32; BLOCK], b: &mut [f32; BLOCK]) {
    // Most blocks of a photograph lie inside the cube, where only the clamp at zero
    // applies: skip the division and square root there. (A NaN sample counts as inside
    // and becomes 0, as it does in the full path.)
    let mut outside = false;
    for i in 0..BLOCK {
        outside |= (r[i] > 1.0) | (g[i] > 1.0) | (b[i] > 1.0);
    }
    if !outside {
        for i in 0..BLOCK {
            r[i] = r[i].max(0.0);
            g[i] = g[i].max(0.0);
            b[i] = b[i].max(0.0);
        }
        return;
    }
    for i in 0..BLOCK {
        let (cr, cg, cb) = (r[i].max(0.0), g[i].max(0.0), b[i].max(0.0));
        let max = cr.max(cg).max(cb);
        let inv = 1.0 / max;
        let e = ((cr * cr + cg * cg + cb * cb) / 3.0).sqrt().min(1.0);
        let inside = max <= 1.0;
        r[i] = if inside { cr } else { 0.5 * (cr * inv + e) };
        g[i] = if inside { cg } else { 0.5 * (cg * inv + e) };
        b[i] = if inside { cb } else { 0.5 * (cb * inv + e) };
    }
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
