//! Bayer RAW → camera-referred RGB in the working space, in two fused passes.
//!
//! rawler decodes the sensor data; this module does what its develop step would (levels,
//! white balance, demosaic, crop, camera matrix) about five times faster, because every
//! step is fused into one parallel pass over a normalised plane and nothing is copied in
//! between. Demosaicing is Malvar–He–Cutler ("High-quality linear interpolation for
//! demosaicing of Bayer-patterned color images", ICASSP 2004): gradient-corrected 5×5
//! linear filters, clearly sharper than bilinear and free of the zipper artefacts of
//! simpler methods, at a cost low enough for 60 MP files. Non-Bayer sensors (X-Trans,
//! four-colour) still go through rawler.

use rayon::prelude::*;

use crate::image::RgbF32;

/// Sensor data and the facts needed to develop it.
pub struct Bayer<'a> {
    /// Raw samples, row-major, one per photosite.
    pub samples: Samples<'a>,
    /// Full sensor width.
    pub width: usize,
    /// Full sensor height.
    pub height: usize,
    /// Colour (0 R, 1 G, 2 B) of each position of the 2×2 tile, `[row][col]` in sensor
    /// coordinates.
    pub colors: [[usize; 2]; 2],
    /// Black level per 2×2 position (`row * 2 + col`).
    pub black: [f32; 4],
    /// White level per 2×2 position.
    pub white: [f32; 4],
}

/// Integer or float sensor data (some DNGs store floats).
pub enum Samples<'a> {
    /// The usual case.
    U16(&'a [u16]),
    /// Floating-point DNGs.
    F32(&'a [f32]),
}

/// The visible part of the sensor: `(x, y, width, height)`.
pub type Rect = (usize, usize, usize, usize);

/// Develops `raw` within `rect`: levels, white balance `wb` (camera RGB gains, the
/// smallest 1), clipping at the level where the least amplified channel clips (so blown
/// highlights stay neutral), demosaic, then `cam_to_work`.
pub fn develop(raw: &Bayer<'_>, rect: Rect, wb: [f32; 3], cam_to_work: [[f32; 3]; 3]) -> RgbF32 {
    let (w, h) = (raw.width, raw.height);
    // Pass 1: normalised, white-balanced, clipped plane.
    let mut plane = vec![0f32; w * h];
    plane.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let mut scale = [0f32; 2];
        let mut black = [0f32; 2];
        for c in 0..2 {
            let i = (y % 2) * 2 + c;
            black[c] = raw.black[i];
            scale[c] = wb[raw.colors[y % 2][c]] / (raw.white[i] - raw.black[i]).max(1.0);
        }
        match &raw.samples {
            Samples::U16(s) => {
                for (x, (o, &v)) in row.iter_mut().zip(&s[y * w..(y + 1) * w]).enumerate() {
                    *o = ((v as f32 - black[x & 1]).max(0.0) * scale[x & 1]).min(1.0);
                }
            }
            Samples::F32(s) => {
                for (x, (o, &v)) in row.iter_mut().zip(&s[y * w..(y + 1) * w]).enumerate() {
                    *o = ((v - black[x & 1]).max(0.0) * scale[x & 1]).min(1.0);
                }
            }
        }
    });

    // Pass 2: demosaic + matrix, output rows in parallel.
    let (rx, ry, rw, rh) = rect;
    let m = cam_to_work;
    let mut out = vec![0f32; rw * rh * 3];
    out.par_chunks_mut(rw * 3)
        .enumerate()
        .for_each(|(oy, orow)| {
            let y = ry + oy;
            for (ox, px) in orow.chunks_exact_mut(3).enumerate() {
                let x = rx + ox;
                let rgb = if x >= 2 && y >= 2 && x + 2 < w && y + 2 < h {
                    mhc(&plane, w, x, y, raw.colors, |dx, dy| {
                        (x as isize + dx) as usize + (y as isize + dy) as usize * w
                    })
                } else {
                    // Borders: reflect, which keeps the CFA phase.
                    let refl = |v: isize, n: usize| -> usize {
                        let n = n as isize;
                        let r = if v < 0 {
                            -v
                        } else if v >= n {
                            2 * (n - 1) - v
                        } else {
                            v
                        };
                        r.clamp(0, n - 1) as usize
                    };
                    mhc(&plane, w, x, y, raw.colors, |dx, dy| {
                        refl(x as isize + dx, w) + refl(y as isize + dy, h) * w
                    })
                };
                let [r, g, b] = rgb.map(|v| v.clamp(0.0, 1.0));
                px[0] = m[0][0] * r + m[0][1] * g + m[0][2] * b;
                px[1] = m[1][0] * r + m[1][1] * g + m[1][2] * b;
                px[2] = m[2][0] * r + m[2][1] * g + m[2][2] * b;
            }
        });
    RgbF32::new(rw, rh, out)
}

/// Malvar–He–Cutler at one photosite. `at(dx, dy)` gives the plane index of a neighbour.
#[inline(always)]
fn mhc(
    plane: &[f32],
    _w: usize,
    x: usize,
    y: usize,
    colors: [[usize; 2]; 2],
    at: impl Fn(isize, isize) -> usize,
) -> [f32; 3] {
    let p = |dx: isize, dy: isize| plane[at(dx, dy)];
    let c = colors[y & 1][x & 1];
    let c0 = p(0, 0);
    let cross1 = p(-1, 0) + p(1, 0) + p(0, -1) + p(0, 1);
    let cross2 = p(-2, 0) + p(2, 0) + p(0, -2) + p(0, 2);
    let diag = p(-1, -1) + p(1, -1) + p(-1, 1) + p(1, 1);
    let mut out = [0f32; 3];
    if c == 1 {
        // Green site: one of R/B sits left-right, the other above-below.
        let horiz = colors[y & 1][(x + 1) & 1];
        let h1 = p(-1, 0) + p(1, 0);
        let h2 = p(-2, 0) + p(2, 0);
        let v1 = p(0, -1) + p(0, 1);
        let v2 = p(0, -2) + p(0, 2);
        let along_row = (5.0 * c0 + 4.0 * h1 - h2 - diag + 0.5 * v2) / 8.0;
        let along_col = (5.0 * c0 + 4.0 * v1 - v2 - diag + 0.5 * h2) / 8.0;
        out[1] = c0;
        out[horiz] = along_row;
        out[2 - horiz] = along_col;
    } else {
        out[c] = c0;
        out[1] = (4.0 * c0 + 2.0 * cross1 - cross2) / 8.0;
        out[2 - c] = (6.0 * c0 + 2.0 * diag - 1.5 * cross2) / 8.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mosaic(img: &[[f32; 3]], w: usize, h: usize, colors: [[usize; 2]; 2]) -> Vec<u16> {
        (0..w * h)
            .map(|i| (img[i][colors[(i / w) % 2][(i % w) % 2]] * 4000.0) as u16 + 100)
            .collect()
    }

    const IDENTITY: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    #[test]
    fn flat_colour_comes_back_exactly_for_every_cfa_layout() {
        let (w, h) = (16, 12);
        let colour = [0.2f32, 0.5, 0.8];
        let img = vec![colour; w * h];
        for colors in [
            [[0, 1], [1, 2]],
            [[1, 0], [2, 1]],
            [[1, 2], [0, 1]],
            [[2, 1], [1, 0]],
        ] {
            let samples = mosaic(&img, w, h, colors);
            let raw = Bayer {
                samples: Samples::U16(&samples),
                width: w,
                height: h,
                colors,
                black: [100.0; 4],
                white: [4100.0; 4],
            };
            let out = develop(&raw, (0, 0, w, h), [1.0; 3], IDENTITY);
            for p in out.data.chunks_exact(3) {
                for c in 0..3 {
                    assert!((p[c] - colour[c]).abs() < 1e-3, "{colors:?}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn smooth_gradients_are_reconstructed_closely() {
        let (w, h) = (64, 48);
        let img: Vec<[f32; 3]> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                [0.1 + 0.6 * x, 0.2 + 0.5 * y, 0.3 + 0.3 * x * y]
            })
            .collect();
        let colors = [[0, 1], [1, 2]];
        let samples = mosaic(&img, w, h, colors);
        let raw = Bayer {
            samples: Samples::U16(&samples),
            width: w,
            height: h,
            colors,
            black: [100.0; 4],
            white: [4100.0; 4],
        };
        let out = develop(&raw, (2, 2, w - 4, h - 4), [1.0; 3], IDENTITY);
        for (i, p) in out.data.chunks_exact(3).enumerate() {
            let (x, y) = (i % (w - 4) + 2, i / (w - 4) + 2);
            for c in 0..3 {
                assert!(
                    (p[c] - img[y * w + x][c]).abs() < 2e-3,
                    "at {x},{y}: {p:?} vs {:?}",
                    img[y * w + x]
                );
            }
        }
    }
}
