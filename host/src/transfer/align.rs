//! Registration of the engine's answer to the preview it was given.
//!
//! Generative engines return a picture of their own size, often shifted by a few pixels
//! or slightly cropped and rescaled. A colour fit between misregistered pictures learns
//! edges as colour changes, so the answer is first mapped back onto the preview's pixel
//! grid: a similarity (scale about the centre plus a shift) found by a coarse-to-fine
//! search on gradient magnitudes, which a colour grade barely changes.

use rayon::prelude::*;

/// Maps preview pixel `(x, y)` to `(cx + s·(x − cx) + tx, cy + s·(y − cy) + ty)` in the
/// answer (both at preview size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// Scale about the centre.
    pub scale: f32,
    /// Shift in preview pixels.
    pub tx: f32,
    /// Shift in preview pixels.
    pub ty: f32,
}

impl Similarity {
    /// No change.
    pub const IDENTITY: Similarity = Similarity {
        scale: 1.0,
        tx: 0.0,
        ty: 0.0,
    };

    /// Whether warping would change anything visible (a quarter pixel anywhere).
    pub fn is_identity(&self, w: usize, h: usize) -> bool {
        let edge = (self.scale - 1.0).abs() * w.max(h) as f32 / 2.0;
        edge + self.tx.abs().max(self.ty.abs()) < 0.25
    }
}

/// Bilinear sample of a planar image with edge clamping.
#[inline]
fn sample(img: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let a = img[y0 * w + x0] + fx * (img[y0 * w + x1] - img[y0 * w + x0]);
    let b = img[y1 * w + x0] + fx * (img[y1 * w + x1] - img[y1 * w + x0]);
    a + fy * (b - a)
}

/// Halves a planar image (2×2 means).
fn half(img: &[f32], w: usize, h: usize) -> (Vec<f32>, usize, usize) {
    let (ow, oh) = ((w / 2).max(1), (h / 2).max(1));
    let mut out = vec![0f32; ow * oh];
    out.par_chunks_mut(ow).enumerate().for_each(|(y, row)| {
        let (y0, y1) = ((2 * y).min(h - 1), (2 * y + 1).min(h - 1));
        for (x, o) in row.iter_mut().enumerate() {
            let (x0, x1) = ((2 * x).min(w - 1), (2 * x + 1).min(w - 1));
            *o = 0.25 * (img[y0 * w + x0] + img[y0 * w + x1] + img[y1 * w + x0] + img[y1 * w + x1]);
        }
    });
    (out, ow, oh)
}

/// Gradient magnitude, normalised to zero mean and unit variance.
fn edges(img: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut g = vec![0f32; w * h];
    let (sum, sum2) = g
        .par_chunks_mut(w)
        .enumerate()
        .map(|(y, row)| {
            let (up, mid, down) = (
                &img[y.saturating_sub(1) * w..][..w],
                &img[y * w..][..w],
                &img[(y + 1).min(h - 1) * w..][..w],
            );
            let at = |x: usize| {
                let dx = mid[(x + 1).min(w - 1)] - mid[x.saturating_sub(1)];
                let dy = down[x] - up[x];
                (dx * dx + dy * dy).sqrt()
            };
            // The interior as one vector loop; the two end pixels clamp.
            if w > 2 {
                let (l, m, r) = (&mid[..w - 2], &mid[2..], &mut row[1..w - 1]);
                for (((o, (&lv, &rv)), &u), &d) in r
                    .iter_mut()
                    .zip(l.iter().zip(m))
                    .zip(&up[1..])
                    .zip(&down[1..])
                {
                    let (dx, dy) = (rv - lv, d - u);
                    *o = (dx * dx + dy * dy).sqrt();
                }
            }
            row[0] = at(0);
            row[w - 1] = at(w - 1);
            // Eight partial sums, so the loop vectorises; f32 is plenty within a row.
            let (mut s, mut s2) = ([0f32; 8], [0f32; 8]);
            let chunks = row.chunks_exact(8);
            let tail: f32 = chunks.remainder().iter().sum();
            let tail2: f32 = chunks.remainder().iter().map(|v| v * v).sum();
            for c in chunks {
                for i in 0..8 {
                    s[i] += c[i];
                    s2[i] += c[i] * c[i];
                }
            }
            (
                (s.iter().sum::<f32>() + tail) as f64,
                (s2.iter().sum::<f32>() + tail2) as f64,
            )
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = g.len() as f64;
    let mean = sum / n;
    let sd = (sum2 / n - mean * mean).max(0.0).sqrt().max(1e-6);
    let (mean, k) = (mean as f32, (1.0 / sd) as f32);
    g.par_iter_mut().for_each(|v| *v = (*v - mean) * k);
    g
}

/// Correlation of `a` with `b` warped by `t` (coordinates in this level's pixels), over
/// the inner 90 % of the picture so borders the engine may have invented do not count,
/// sampled every `step` pixels (a few ten thousand samples decide a shift as well as a
/// million do).
fn score(a: &[f32], b: &[f32], w: usize, h: usize, t: Similarity, step: usize) -> f32 {
    if w < 2 || h < 2 {
        return 0.0;
    }
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (mx, my) = (w / 20, h / 20);
    let (xmax, ymax) = ((w - 1) as f32, (h - 1) as f32);
    // Four partial sums: one chain of dependent adds would set the pace otherwise.
    let mut acc = [0f32; 4];
    let mut n = 0usize;
    for y in (my..h - my).step_by(step) {
        // Bilinear sampling with edge clamping, the row's part hoisted out of the loop.
        let by = (cy + t.scale * (y as f32 - cy) + t.ty).clamp(0.0, ymax);
        let y0 = (by as usize).min(h - 2);
        let fy = by - y0 as f32;
        let (r0, r1) = (&b[y0 * w..][..w], &b[(y0 + 1) * w..][..w]);
        let ar = &a[y * w..][..w];
        for (i, x) in (mx..w - mx).step_by(step).enumerate() {
            let bx = (cx + t.scale * (x as f32 - cx) + t.tx).clamp(0.0, xmax);
            let x0 = (bx as usize).min(w - 2);
            let fx = bx - x0 as f32;
            let p = r0[x0] + fx * (r0[x0 + 1] - r0[x0]);
            let q = r1[x0] + fx * (r1[x0 + 1] - r1[x0]);
            acc[i & 3] += ar[x] * (p + fy * (q - p));
            n += 1;
        }
    }
    (acc[0] + acc[1] + acc[2] + acc[3]) / n.max(1) as f32
}

/// Best of `cands` by score.
fn best_of(
    cands: &[Similarity],
    a: &[f32],
    b: &[f32],
    w: usize,
    h: usize,
    step: usize,
) -> (f32, Similarity) {
    cands
        .par_iter()
        .map(|&c| (score(a, b, w, h, c, step), c))
        .reduce(
            || (f32::MIN, Similarity::IDENTITY),
            |x, y| if y.0 > x.0 { y } else { x },
        )
}

/// Finds the similarity taking preview luma `a` to answer luma `b` (same size `w`×`h`),
/// searching shifts up to 6 % of the size and scales 0.94–1.06 (coarse steps of 2 %, refined per level).
pub fn estimate(a: &[f32], b: &[f32], w: usize, h: usize) -> Similarity {
    let t0 = std::time::Instant::now();
    // Pyramid down to ~64 px on the long edge.
    let mut levels = vec![(a.to_vec(), b.to_vec(), w, h)];
    while levels.last().is_some_and(|l| l.2.max(l.3) > 64) {
        let (la, lb, lw, lh) = levels.last().expect("a level");
        let (na, nw, nh) = half(la, *lw, *lh);
        let (nb, _, _) = half(lb, *lw, *lh);
        levels.push((na, nb, nw, nh));
    }
    let coarse = levels.last().expect("a level");
    let (cw, ch) = (coarse.2, coarse.3);
    let (ea, eb) = (edges(&coarse.0, cw, ch), edges(&coarse.1, cw, ch));
    let reach = (cw.max(ch) as f32 * 0.06).ceil() as i32;
    super::trace("align pyramid", t0);
    let best = coarse_search(&ea, &eb, cw, ch, reach);
    super::trace("align coarse", t0);
    // Prefer the identity when it is as good: engines that do not move anything should
    // not be resampled because of noise in the score.
    let id = score(&ea, &eb, cw, ch, Similarity::IDENTITY, 1);
    let mut t = if id >= best.0 - 1e-4 {
        Similarity::IDENTITY
    } else {
        best.1
    };
    // Refine level by level: shifts double, then a local search of the shift (±1 px in
    // half pixels) and of the scale, on a sample of pixels. The finest level then goes
    // below a pixel with a parabola through the scores on each axis, on a denser
    // sample: a quarter-pixel error at preview size is a pixel and a half at 24 MP,
    // enough to make edges ghost. (A parabola costs 7 scores where a search down to
    // eighth pixels cost about 90, most of the fit's time.)
    for (li, (la, lb, lw, lh)) in levels.iter().enumerate().rev().skip(1) {
        let (lw, lh) = (*lw, *lh);
        t.tx *= 2.0;
        t.ty *= 2.0;
        let (ea, eb) = (edges(la, lw, lh), edges(lb, lw, lh));
        super::trace("align edges", t0);
        let step_for = |samples: f32| ((lw * lh) as f32 / samples).sqrt().ceil().max(1.0) as usize;
        let step = step_for(if li == 0 { 40_000.0 } else { 20_000.0 });
        let d = 0.5;
        let here = score(&ea, &eb, lw, lh, t, step);
        let shifts: Vec<Similarity> = (-2..=2)
            .flat_map(|dy| {
                (-2..=2).map(move |dx| Similarity {
                    scale: t.scale,
                    tx: t.tx + dx as f32 * d,
                    ty: t.ty + dy as f32 * d,
                })
            })
            .collect();
        let (s1, c1) = best_of(&shifts, &ea, &eb, lw, lh, step);
        if s1 > here + 1e-5 {
            t = c1;
        }
        let ds = 2.0 * d / lw.max(lh) as f32;
        let scales: Vec<Similarity> = (-2..=2)
            .map(|k| Similarity {
                scale: t.scale + k as f32 * ds,
                ..t
            })
            .collect();
        let here = score(&ea, &eb, lw, lh, t, step);
        let (s2, c2) = best_of(&scales, &ea, &eb, lw, lh, step);
        if s2 > here + 1e-5 {
            t = c2;
        }
        if li == 0 {
            super::trace("align search", t0);
            t = subpixel(&ea, &eb, lw, lh, t, step_for(160_000.0));
        }
        super::trace("align level", t0);
    }
    t
}

/// The coarse search: scales 0.94–1.06 in steps of 2 %, and for each, every shift of a
/// whole step of the scaled answer up to `reach` pixels. The answer is resampled once per
/// scale (about the centre, edges clamped, padded by `reach`), after which each shift's
/// score is a plain dot product of rows — the same value [`score`] gives for the
/// similarity `(s, s·u, s·v)`, at a small fraction of the cost of sampling bilinearly for
/// each of the 567 candidates.
fn coarse_search(a: &[f32], b: &[f32], w: usize, h: usize, reach: i32) -> (f32, Similarity) {
    let m = reach.max(0) as usize;
    let (pw, ph) = (w + 2 * m, h + 2 * m);
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (mx, my) = (w / 20, h / 20);
    let scales: Vec<f32> = (-3..=3).map(|i| 1.0 + i as f32 * 0.02).collect();
    let padded: Vec<Vec<f32>> = scales
        .par_iter()
        .map(|&s| {
            let mut out = vec![0f32; pw * ph];
            for (py, row) in out.chunks_exact_mut(pw).enumerate() {
                let by = cy + s * (py as f32 - m as f32 - cy);
                for (px, o) in row.iter_mut().enumerate() {
                    *o = sample(b, w, h, cx + s * (px as f32 - m as f32 - cx), by);
                }
            }
            out
        })
        .collect();
    let n = ((h - 2 * my) * (w - 2 * mx)).max(1) as f32;
    let cands: Vec<(usize, i32, i32)> = (0..scales.len())
        .flat_map(|si| {
            (-reach..=reach).flat_map(move |v| (-reach..=reach).map(move |u| (si, u, v)))
        })
        .collect();
    cands
        .par_iter()
        .map(|&(si, u, v)| {
            let bs = &padded[si];
            let mut acc = [0f32; 8];
            for y in my..h - my {
                let ar = &a[y * w + mx..y * w + w - mx];
                // Never negative: the padding is `reach` and |u|, |v| ≤ reach.
                let by = (y as i32 + v + m as i32) as usize;
                let bx = (mx as i32 + u + m as i32) as usize;
                let br = &bs[by * pw + bx..][..ar.len()];
                let (ca, cb) = (ar.chunks_exact(8), br.chunks_exact(8));
                for (p, q) in ca.remainder().iter().zip(cb.remainder()) {
                    acc[0] += p * q;
                }
                for (p, q) in ca.zip(cb) {
                    for k in 0..8 {
                        acc[k] += p[k] * q[k];
                    }
                }
            }
            let s = scales[si];
            let t = Similarity {
                scale: s,
                tx: s * u as f32,
                ty: s * v as f32,
            };
            (acc.iter().sum::<f32>() / n, t)
        })
        .reduce(
            || (f32::MIN, Similarity::IDENTITY),
            |x, y| if y.0 > x.0 { y } else { x },
        )
}

/// Refines `t` below the search's half pixel: on each axis (x shift, y shift, scale) a
/// parabola through the scores at −h, 0, +h puts the peak; the result is kept only if
/// it scores at least as well as `t`.
fn subpixel(a: &[f32], b: &[f32], w: usize, h: usize, t: Similarity, step: usize) -> Similarity {
    let (hs, hz) = (0.25f32, 0.5 / w.max(h) as f32);
    let probes = [
        t,
        Similarity { tx: t.tx - hs, ..t },
        Similarity { tx: t.tx + hs, ..t },
        Similarity { ty: t.ty - hs, ..t },
        Similarity { ty: t.ty + hs, ..t },
        Similarity {
            scale: t.scale - hz,
            ..t
        },
        Similarity {
            scale: t.scale + hz,
            ..t
        },
    ];
    let s: Vec<f32> = probes
        .par_iter()
        .map(|&p| score(a, b, w, h, p, step))
        .collect();
    // Vertex of the parabola through (−1, m), (0, c), (1, p), in steps, within ±1.
    let vertex = |m: f32, c: f32, p: f32| -> f32 {
        let curv = m - 2.0 * c + p;
        if curv < -1e-9 {
            (0.5 * (m - p) / curv).clamp(-1.0, 1.0)
        } else if p > m {
            1.0
        } else if m > p {
            -1.0
        } else {
            0.0
        }
    };
    let refined = Similarity {
        tx: t.tx + hs * vertex(s[1], s[0], s[2]),
        ty: t.ty + hs * vertex(s[3], s[0], s[4]),
        scale: t.scale + hz * vertex(s[5], s[0], s[6]),
    };
    if score(a, b, w, h, refined, step) >= s[0] {
        refined
    } else {
        t
    }
}

/// Resamples an interleaved RGB answer onto the preview grid. Returns the warped picture
/// and a per-pixel validity weight (0 where the preview pixel falls outside the answer).
pub fn warp(img: &[f32], w: usize, h: usize, t: Similarity) -> (Vec<f32>, Vec<f32>) {
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let planes: Vec<Vec<f32>> = (0..3)
        .map(|c| img.iter().skip(c).step_by(3).copied().collect())
        .collect();
    let mut out = vec![0f32; w * h * 3];
    let mut valid = vec![0f32; w * h];
    out.par_chunks_mut(w * 3)
        .zip(valid.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (row, vrow))| {
            let by = cy + t.scale * (y as f32 - cy) + t.ty;
            for x in 0..w {
                let bx = cx + t.scale * (x as f32 - cx) + t.tx;
                let inside =
                    bx >= -0.5 && by >= -0.5 && bx <= w as f32 - 0.5 && by <= h as f32 - 0.5;
                vrow[x] = if inside { 1.0 } else { 0.0 };
                for c in 0..3 {
                    row[x * 3 + c] = sample(&planes[c], w, h, bx, by);
                }
            }
        });
    (out, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured test card: overlapping discs and bars at several scales.
    fn card(w: usize, h: usize, dx: f32, dy: f32) -> Vec<f32> {
        card_zoomed(w, h, dx, dy, 1.0)
    }

    /// The card zoomed by `z` about the centre, then shifted: what an engine that crops
    /// and rescales returns.
    fn card_zoomed(w: usize, h: usize, dx: f32, dy: f32, z: f32) -> Vec<f32> {
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let mut v = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (cx + (x as f32 - dx - cx) / z, cy + (y as f32 - dy - cy) / z);
                let mut s = 0.3 + 0.2 * ((fx * 0.11).sin() * (fy * 0.07).cos());
                for (cx, cy, r) in [
                    (60.0, 50.0, 25.0),
                    (180.0, 120.0, 40.0),
                    (300.0, 80.0, 15.0),
                ] {
                    if (fx - cx).powi(2) + (fy - cy).powi(2) < r * r {
                        s += 0.4;
                    }
                }
                v[y * w + x] = s;
            }
        }
        v
    }

    #[test]
    fn a_shift_is_found_to_a_fraction_of_a_pixel_and_none_is_identity() {
        let (w, h) = (400, 260);
        let a = card(w, h, 0.0, 0.0);
        let b = card(w, h, 5.0, -3.0);
        let t = estimate(&a, &b, w, h);
        assert!(
            (t.tx - 5.0).abs() <= 0.5 && (t.ty + 3.0).abs() <= 0.5,
            "{t:?}"
        );
        assert!((t.scale - 1.0).abs() < 0.006, "{t:?}");
        let same = estimate(&a, &a, w, h);
        assert!(same.is_identity(w, h), "{same:?}");
    }

    #[test]
    fn a_crop_and_rescale_is_found() {
        let (w, h) = (400, 260);
        let a = card(w, h, 0.0, 0.0);
        let b = card_zoomed(w, h, -2.0, 3.0, 1.035);
        let t = estimate(&a, &b, w, h);
        assert!((t.scale - 1.035).abs() < 0.006, "{t:?}");
        assert!(
            (t.tx + 2.0).abs() <= 0.75 && (t.ty - 3.0).abs() <= 0.75,
            "{t:?}"
        );
    }
}
