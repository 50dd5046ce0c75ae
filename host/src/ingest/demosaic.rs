//! Bayer demosaicing of a normalised, white-balanced mosaic, fused with whatever comes
//! next per pixel (the colour matrix), so a 24 MP develop is one parallel pass.
//!
//! Demosaicing is Malvar–He–Cutler ("High-quality linear interpolation for
//! demosaicing of Bayer-patterned color images", ICASSP 2004): gradient-corrected 5×5
//! linear filters, clearly sharper than bilinear and free of the zipper artefacts of
//! simpler methods, at a cost low enough for 60 MP files. Non-Bayer sensors (X-Trans,
//! four-colour) go through rawler in the decoder process.

use rayon::prelude::*;

use crate::image::RgbF32;
use crate::simd::Simd;

/// The visible part of the sensor: `(x, y, width, height)`.
pub type Rect = (usize, usize, usize, usize);

/// Demosaics `rect` of a normalised, white-balanced mosaic `plane` (`w`×`h`, colour
/// `colors[y % 2][x % 2]`) and passes each pixel's camera RGB, clamped to 0..1, through
/// `finish` (the colour matrix, usually). Rows run in parallel.
pub fn demosaic(
    plane: &[f32],
    w: usize,
    h: usize,
    colors: [[usize; 2]; 2],
    rect: Rect,
    finish: impl Fn([f32; 3]) -> [f32; 3] + Sync,
) -> RgbF32 {
    demosaic_with(plane, w, h, colors, rect, finish, Simd::Best)
}

/// [`demosaic`] with the kernel `simd` (or the next one down this CPU runs).
pub(crate) fn demosaic_with(
    plane: &[f32],
    w: usize,
    h: usize,
    colors: [[usize; 2]; 2],
    rect: Rect,
    finish: impl Fn([f32; 3]) -> [f32; 3] + Sync,
    simd: Simd,
) -> RgbF32 {
    let (rx, ry, rw, rh) = rect;
    let simd = simd.available();
    // Every pixel is written below: the interior by the kernel, the rest one by one.
    let mut out = crate::memory::reusable_f32(rw * rh * 3);
    out.par_chunks_mut(rw * 3)
        .enumerate()
        .for_each(|(oy, orow)| {
            let y = ry + oy;
            // The interior of the sensor: no border to reflect, a kernel that vectorises.
            let (x0, x1) = (rx.max(2), (rx + rw).min(w.saturating_sub(2)));
            let fast = y >= 2 && y + 2 < h && x0 < x1;
            if fast {
                interior(
                    plane,
                    w,
                    y,
                    (x0, x1),
                    colors,
                    &mut orow[(x0 - rx) * 3..(x1 - rx) * 3],
                    &finish,
                    simd,
                );
            }
            for (ox, px) in orow.chunks_exact_mut(3).enumerate() {
                let x = rx + ox;
                if fast && (x0..x1).contains(&x) {
                    continue;
                }
                let rgb = if x >= 2 && y >= 2 && x + 2 < w && y + 2 < h {
                    mhc(plane, w, x, y, colors, |dx, dy| {
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
                    mhc(plane, w, x, y, colors, |dx, dy| {
                        refl(x as isize + dx, w) + refl(y as isize + dy, h) * w
                    })
                };
                px.copy_from_slice(&finish(rgb.map(|v| v.clamp(0.0, 1.0))));
            }
        });
    RgbF32::new(rw, rh, out)
}

/// Malvar–He–Cutler over columns `x0..x1` of row `y`, all at least two photosites from
/// every edge, into `out` (interleaved RGB after `finish`). Every candidate value is
/// computed for every photosite and the site's own picked by column parity, so the loop
/// has no branch and vectorises; the arithmetic is [`mhc`]'s, value for value.
#[allow(clippy::too_many_arguments)]
fn interior<F: Fn([f32; 3]) -> [f32; 3]>(
    plane: &[f32],
    w: usize,
    y: usize,
    (x0, x1): (usize, usize),
    colors: [[usize; 2]; 2],
    out: &mut [f32],
    finish: &F,
    simd: Simd,
) {
    let row = colors[y & 1];
    macro_rules! go {
        ($($e:literal, $o:literal);*) => {
            match (row[x0 & 1], row[(x0 + 1) & 1]) {
                $(($e, $o) => return run::<$e, $o, F>(plane, w, y, (x0, x1), out, finish, simd),)*
                _ => {}
            }
        };
    }
    go!(0, 1; 1, 0; 2, 1; 1, 2; 1, 1; 0, 0; 2, 2; 0, 2; 2, 0);
    unreachable!("colour indices are checked before the demosaic");
}

/// [`interior`] for a row whose first column's site is colour `E` and the next `O`.
#[allow(clippy::too_many_arguments)]
fn run<const E: usize, const O: usize, F: Fn([f32; 3]) -> [f32; 3]>(
    plane: &[f32],
    w: usize,
    y: usize,
    xs: (usize, usize),
    out: &mut [f32],
    finish: &F,
    simd: Simd,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide<const E: usize, const O: usize, F: Fn([f32; 3]) -> [f32; 3]>(
            plane: &[f32],
            w: usize,
            y: usize,
            xs: (usize, usize),
            out: &mut [f32],
            finish: &F,
        ) {
            kernel::<E, O, F>(plane, w, y, xs, out, finish)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<const E: usize, const O: usize, F: Fn([f32; 3]) -> [f32; 3]>(
            plane: &[f32],
            w: usize,
            y: usize,
            xs: (usize, usize),
            out: &mut [f32],
            finish: &F,
        ) {
            kernel::<E, O, F>(plane, w, y, xs, out, finish)
        }
        match simd {
            // SAFETY: `Simd::available` detected the features on this CPU.
            Simd::Avx512 => return unsafe { wide::<E, O, F>(plane, w, y, xs, out, finish) },
            Simd::Avx2 => return unsafe { avx2::<E, O, F>(plane, w, y, xs, out, finish) },
            _ => {}
        }
    }
    let _ = simd;
    kernel::<E, O, F>(plane, w, y, xs, out, finish)
}

/// The site's camera RGB from the candidates, for a site of colour `C` whose row
/// neighbours are colour `N` (constants: this folds to moves).
#[inline(always)]
fn site<const C: usize, const N: usize>(c0: f32, row: f32, col: f32, g: f32, opp: f32) -> [f32; 3] {
    let mut out = [0f32; 3];
    if C == 1 {
        out[1] = c0;
        out[N] = row;
        out[2 - N] = col;
    } else {
        out[C] = c0;
        out[1] = g;
        out[2 - C] = opp;
    }
    out
}

#[inline(always)]
fn kernel<const E: usize, const O: usize, F: Fn([f32; 3]) -> [f32; 3]>(
    plane: &[f32],
    w: usize,
    y: usize,
    (x0, x1): (usize, usize),
    out: &mut [f32],
    finish: &F,
) {
    let n = x1 - x0;
    // Each neighbour as a slice of `n` aligned with the output columns.
    let at = |dx: isize, dy: isize| -> &[f32] {
        let start = ((y as isize + dy) as usize) * w + (x0 as isize + dx) as usize;
        &plane[start..start + n]
    };
    let (c, l1, r1, u1, d1) = (at(0, 0), at(-1, 0), at(1, 0), at(0, -1), at(0, 1));
    let (l2, r2, u2, d2) = (at(-2, 0), at(2, 0), at(0, -2), at(0, 2));
    let (ul, ur, dl, dr) = (at(-1, -1), at(1, -1), at(-1, 1), at(1, 1));
    let out = &mut out[..n * 3];
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let c0 = c[i];
        let cross1 = l1[i] + r1[i] + u1[i] + d1[i];
        let cross2 = l2[i] + r2[i] + u2[i] + d2[i];
        let diag = ul[i] + ur[i] + dl[i] + dr[i];
        let h1 = l1[i] + r1[i];
        let h2 = l2[i] + r2[i];
        let v1 = u1[i] + d1[i];
        let v2 = u2[i] + d2[i];
        let along_row = (5.0 * c0 + 4.0 * h1 - h2 - diag + 0.5 * v2) / 8.0;
        let along_col = (5.0 * c0 + 4.0 * v1 - v2 - diag + 0.5 * h2) / 8.0;
        let g = (4.0 * c0 + 2.0 * cross1 - cross2) / 8.0;
        let opp = (6.0 * c0 + 2.0 * diag - 1.5 * cross2) / 8.0;
        let even = site::<E, O>(c0, along_row, along_col, g, opp);
        let odd = site::<O, E>(c0, along_row, along_col, g, opp);
        let rgb = if i & 1 == 0 { even } else { odd };
        px.copy_from_slice(&finish(rgb.map(|v| v.clamp(0.0, 1.0))));
    }
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

    fn mosaic(img: &[[f32; 3]], w: usize, colors: [[usize; 2]; 2]) -> Vec<f32> {
        (0..img.len())
            .map(|i| img[i][colors[(i / w) % 2][(i % w) % 2]])
            .collect()
    }

    /// Every kernel demosaics a real photo, mosaicked in each Bayer layout and developed
    /// through a colour matrix, to the values of [`mhc`] one photosite at a time, to the bit
    /// (crop rectangles that touch the borders and ones that do not).
    #[test]
    fn every_kernel_gives_the_values_of_mhc_per_photosite() {
        let photo = crate::image::test_photo()
            .resize(1201, 1201, ::image::imageops::FilterType::Triangle)
            .to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let img: Vec<[f32; 3]> = photo.pixels().map(|p| p.0.map(|v| v * v)).collect();
        let m = [[1.6f32, -0.5, -0.1], [-0.2, 1.4, -0.2], [0.05, -0.45, 1.4]];
        let finish =
            move |p: [f32; 3]| [0, 1, 2].map(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2]);
        for colors in [
            [[0, 1], [1, 2]],
            [[1, 0], [2, 1]],
            [[1, 2], [0, 1]],
            [[2, 1], [1, 0]],
        ] {
            let plane = mosaic(&img, w, colors);
            for rect in [(0, 0, w, h), (3, 1, w - 7, h - 4), (2, 2, 101, 77)] {
                let (rx, ry, rw, rh) = rect;
                let want: Vec<f32> = (0..rw * rh)
                    .flat_map(|i| {
                        let (x, y) = (rx + i % rw, ry + i / rw);
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
                        let rgb = mhc(&plane, w, x, y, colors, |dx, dy| {
                            refl(x as isize + dx, w) + refl(y as isize + dy, h) * w
                        });
                        finish(rgb.map(|v| v.clamp(0.0, 1.0)))
                    })
                    .collect();
                for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
                    if simd.available() != simd {
                        continue;
                    }
                    let got = demosaic_with(&plane, w, h, colors, rect, finish, simd);
                    assert!(
                        got.data
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{simd:?} {colors:?} {rect:?}"
                    );
                }
            }
        }
    }

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
            let plane = mosaic(&img, w, colors);
            let out = demosaic(&plane, w, h, colors, (0, 0, w, h), |p| p);
            for p in out.data.chunks_exact(3) {
                for c in 0..3 {
                    assert!((p[c] - colour[c]).abs() < 1e-5, "{colors:?}: {p:?}");
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
        let plane = mosaic(&img, w, colors);
        let out = demosaic(&plane, w, h, colors, (2, 2, w - 4, h - 4), |p| p);
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
