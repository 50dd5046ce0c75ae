//! Registration of the engine's answer to the preview it was given.
//!
//! Generative engines return a picture of their own size, often shifted by a few pixels
//! or slightly cropped and rescaled. A colour fit between misregistered pictures learns
//! edges as colour changes, so the answer is first mapped back onto the preview's pixel
//! grid. A coarse-to-fine search on gradient magnitudes (which a colour grade barely
//! changes) finds the scale about the centre and the shift; where the answer came on a
//! canvas of another aspect ratio, the search also tries the content having covered that
//! canvas (cropped) rather than filled it (stretched). Local matches of tiles across the
//! picture then fit a full affine motion — models scale the two axes a little differently —
//! and check it: when the tiles do not agree on one motion, the registration says it is
//! unsure, and the transfer falls back to what cannot ghost.

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

/// Maps preview pixel `p` to `c + M·(p − c) + t` in the answer (both at preview size),
/// `c` the picture's centre.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// `M` row by row: `[m00, m01, m10, m11]`.
    pub m: [f32; 4],
    /// Shift in preview pixels.
    pub tx: f32,
    /// Shift in preview pixels.
    pub ty: f32,
}

impl From<Similarity> for Affine {
    fn from(s: Similarity) -> Affine {
        Affine {
            m: [s.scale, 0.0, 0.0, s.scale],
            tx: s.tx,
            ty: s.ty,
        }
    }
}

impl Affine {
    /// No change.
    pub const IDENTITY: Affine = Affine {
        m: [1.0, 0.0, 0.0, 1.0],
        tx: 0.0,
        ty: 0.0,
    };

    /// Scales `sx`, `sy` about the centre, then shifts.
    pub fn diagonal(sx: f32, sy: f32, tx: f32, ty: f32) -> Affine {
        Affine {
            m: [sx, 0.0, 0.0, sy],
            tx,
            ty,
        }
    }

    /// Where preview pixel `(x, y)` lies in the answer; `(cx, cy)` the centre.
    #[inline]
    pub fn map(&self, x: f32, y: f32, cx: f32, cy: f32) -> (f32, f32) {
        let (dx, dy) = (x - cx, y - cy);
        (
            cx + self.m[0] * dx + self.m[1] * dy + self.tx,
            cy + self.m[2] * dx + self.m[3] * dy + self.ty,
        )
    }

    /// The mean scale (square root of the determinant).
    pub fn scale(&self) -> f32 {
        (self.m[0] * self.m[3] - self.m[1] * self.m[2]).abs().sqrt()
    }

    /// `M` scaled by `k` (a zoom about the centre), the shift kept.
    fn zoomed(self, k: f32) -> Affine {
        Affine {
            m: self.m.map(|v| v * k),
            ..self
        }
    }

    /// Whether warping would change anything visible (a quarter pixel anywhere).
    pub fn is_identity(&self, w: usize, h: usize) -> bool {
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        [(0.0, 0.0), (w as f32 - 1.0, 0.0), (0.0, h as f32 - 1.0)]
            .into_iter()
            .chain([(w as f32 - 1.0, h as f32 - 1.0)])
            .all(|(x, y)| {
                let (u, v) = self.map(x, y, cx, cy);
                (u - x).abs().max((v - y).abs()) < 0.25
            })
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
fn score(a: &[f32], b: &[f32], w: usize, h: usize, t: Affine, step: usize) -> f32 {
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
        // The row's part of the mapping hoisted out of the loop.
        let dy = y as f32 - cy;
        let (rx, ry) = (cx + t.m[1] * dy + t.tx, cy + t.m[3] * dy + t.ty);
        let ar = &a[y * w..][..w];
        for (i, x) in (mx..w - mx).step_by(step).enumerate() {
            let dx = x as f32 - cx;
            let bx = (rx + t.m[0] * dx).clamp(0.0, xmax);
            let by = (ry + t.m[2] * dx).clamp(0.0, ymax);
            let (x0, y0) = ((bx as usize).min(w - 2), (by as usize).min(h - 2));
            let (fx, fy) = (bx - x0 as f32, by - y0 as f32);
            let (r0, r1) = (&b[y0 * w + x0..][..2], &b[(y0 + 1) * w + x0..][..2]);
            let p = r0[0] + fx * (r0[1] - r0[0]);
            let q = r1[0] + fx * (r1[1] - r1[0]);
            acc[i & 3] += ar[x] * (p + fy * (q - p));
            n += 1;
        }
    }
    (acc[0] + acc[1] + acc[2] + acc[3]) / n.max(1) as f32
}

/// Best of `cands` by score.
fn best_of(
    cands: &[Affine],
    a: &[f32],
    b: &[f32],
    w: usize,
    h: usize,
    step: usize,
) -> (f32, Affine) {
    cands
        .par_iter()
        .map(|&c| (score(a, b, w, h, c, step), c))
        .reduce(
            || (f32::MIN, Affine::IDENTITY),
            |x, y| if y.0 > x.0 { y } else { x },
        )
}

/// Finds the motion taking preview luma `a` to answer luma `b` (same size `w`×`h`):
/// shifts up to 6 % of the size and scales 0.94–1.06 about each of `bases` (per-axis
/// scales to try as the starting point: `(1, 1)`, and the cover hypothesis of an answer
/// on a canvas of another aspect), coarse steps of 2 %, refined per level down to a
/// fraction of a pixel. The scale found is the same on both axes about its base; see
/// [`register`] for the full affine.
pub fn estimate(a: &[f32], b: &[f32], w: usize, h: usize) -> Affine {
    estimate_from(&pyramid(a, b, w, h), &[(1.0, 1.0)])
}

/// The pictures halved down to ~64 px on the long edge, finest first.
type Pyramid = Vec<(Vec<f32>, Vec<f32>, usize, usize)>;

fn pyramid(a: &[f32], b: &[f32], w: usize, h: usize) -> Pyramid {
    let mut levels = vec![(a.to_vec(), b.to_vec(), w, h)];
    while levels.last().is_some_and(|l| l.2.max(l.3) > 64) {
        let (la, lb, lw, lh) = levels.last().expect("a level");
        let (na, nw, nh) = half(la, *lw, *lh);
        let (nb, _, _) = half(lb, *lw, *lh);
        levels.push((na, nb, nw, nh));
    }
    levels
}

fn estimate_from(levels: &Pyramid, bases: &[(f32, f32)]) -> Affine {
    let t0 = std::time::Instant::now();
    let coarse = levels.last().expect("a level");
    let (cw, ch) = (coarse.2, coarse.3);
    let (ea, eb) = (edges(&coarse.0, cw, ch), edges(&coarse.1, cw, ch));
    let reach = (cw.max(ch) as f32 * 0.06).ceil() as i32;
    super::trace::trace("align pyramid", t0);
    let best = coarse_search(&ea, &eb, cw, ch, reach, bases);
    super::trace::trace("align coarse", t0);
    // Prefer the identity when it is as good: engines that do not move anything should
    // not be resampled because of noise in the score.
    let id = score(&ea, &eb, cw, ch, Affine::IDENTITY, 1);
    let mut t = if id >= best.0 - 1e-4 {
        Affine::IDENTITY
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
        super::trace::trace("align edges", t0);
        let step_for = |samples: f32| ((lw * lh) as f32 / samples).sqrt().ceil().max(1.0) as usize;
        let step = step_for(if li == 0 { 40_000.0 } else { 20_000.0 });
        let d = 0.5;
        let here = score(&ea, &eb, lw, lh, t, step);
        let shifts: Vec<Affine> = (-2..=2)
            .flat_map(|dy| {
                (-2..=2).map(move |dx| Affine {
                    tx: t.tx + dx as f32 * d,
                    ty: t.ty + dy as f32 * d,
                    ..t
                })
            })
            .collect();
        let (s1, c1) = best_of(&shifts, &ea, &eb, lw, lh, step);
        if s1 > here + 1e-5 {
            t = c1;
        }
        let ds = 2.0 * d / lw.max(lh) as f32;
        let scales: Vec<Affine> = (-2..=2).map(|k| t.zoomed(1.0 + k as f32 * ds)).collect();
        let here = score(&ea, &eb, lw, lh, t, step);
        let (s2, c2) = best_of(&scales, &ea, &eb, lw, lh, step);
        if s2 > here + 1e-5 {
            t = c2;
        }
        if li == 0 {
            super::trace::trace("align search", t0);
            t = subpixel(&ea, &eb, lw, lh, t, step_for(160_000.0));
        }
        super::trace::trace("align level", t0);
    }
    t
}

/// The coarse search: scales 0.94–1.06 in steps of 2 % about each base, and for each,
/// every shift of a whole step of the scaled answer up to `reach` pixels. The answer is
/// resampled once per scale (about the centre, edges clamped, padded by `reach`), after
/// which each shift's score is a plain dot product of rows — the same value [`score`]
/// gives for the motion `diag(sx, sy)` shifted by `(sx·u, sy·v)`, at a small fraction of
/// the cost of sampling bilinearly for each of the 567 candidates per base.
fn coarse_search(
    a: &[f32],
    b: &[f32],
    w: usize,
    h: usize,
    reach: i32,
    bases: &[(f32, f32)],
) -> (f32, Affine) {
    let m = reach.max(0) as usize;
    let (pw, ph) = (w + 2 * m, h + 2 * m);
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let (mx, my) = (w / 20, h / 20);
    let scales: Vec<(f32, f32)> = bases
        .iter()
        .flat_map(|&(bx, by)| {
            (-3..=3).map(move |i| {
                let s = 1.0 + i as f32 * 0.02;
                (s * bx, s * by)
            })
        })
        .collect();
    let padded: Vec<Vec<f32>> = scales
        .par_iter()
        .map(|&(sx, sy)| {
            let mut out = vec![0f32; pw * ph];
            for (py, row) in out.chunks_exact_mut(pw).enumerate() {
                let by = cy + sy * (py as f32 - m as f32 - cy);
                for (px, o) in row.iter_mut().enumerate() {
                    *o = sample(b, w, h, cx + sx * (px as f32 - m as f32 - cx), by);
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
            let (sx, sy) = scales[si];
            let t = Affine::diagonal(sx, sy, sx * u as f32, sy * v as f32);
            (acc.iter().sum::<f32>() / n, t)
        })
        .reduce(
            || (f32::MIN, Affine::IDENTITY),
            |x, y| if y.0 > x.0 { y } else { x },
        )
}

/// Refines `t` below the search's half pixel: on each axis (x shift, y shift, scale) a
/// parabola through the scores at −h, 0, +h puts the peak; the result is kept only if
/// it scores at least as well as `t`.
fn subpixel(a: &[f32], b: &[f32], w: usize, h: usize, t: Affine, step: usize) -> Affine {
    let (hs, hz) = (0.25f32, 0.5 / w.max(h) as f32);
    let probes = [
        t,
        Affine { tx: t.tx - hs, ..t },
        Affine { tx: t.tx + hs, ..t },
        Affine { ty: t.ty - hs, ..t },
        Affine { ty: t.ty + hs, ..t },
        t.zoomed(1.0 - hz),
        t.zoomed(1.0 + hz),
    ];
    let s: Vec<f32> = probes
        .par_iter()
        .map(|&p| score(a, b, w, h, p, step))
        .collect();
    let refined = Affine {
        tx: t.tx + hs * vertex(s[1], s[0], s[2]),
        ty: t.ty + hs * vertex(s[3], s[0], s[4]),
        ..t.zoomed(1.0 + hz * vertex(s[5], s[0], s[6]))
    };
    if score(a, b, w, h, refined, step) >= s[0] {
        refined
    } else {
        t
    }
}

/// Vertex of the parabola through (−1, m), (0, c), (1, p), in steps, within ±1.
fn vertex(m: f32, c: f32, p: f32) -> f32 {
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
}

/// How far a registration can be trusted.
#[derive(Clone, Debug, PartialEq)]
pub enum Quality {
    /// The answer lies on the preview as it is.
    Identity,
    /// Local matches across the picture agree on one affine motion: `agree` of the
    /// `matched` tiles with structure lie within a pixel of it, `rms` their distance in
    /// preview pixels.
    Checked {
        /// Tiles within a pixel of the motion.
        agree: usize,
        /// Tiles with structure to match.
        matched: usize,
        /// Root-mean-square distance of the agreeing tiles from the motion.
        rms: f32,
    },
    /// Too few tiles have structure to check the motion (a flat picture, where a small
    /// error cannot ghost either): the global search's motion, as found.
    Unchecked {
        /// Tiles with structure to match.
        matched: usize,
    },
    /// The tiles do not agree on one motion (content moved unevenly, or changed): the
    /// motion is a guess, and the transfer must not carry anything that would ghost.
    Unsure {
        /// Tiles within a pixel of the best motion.
        agree: usize,
        /// Tiles with structure to match.
        matched: usize,
        /// Root-mean-square distance of the agreeing tiles from it.
        rms: f32,
    },
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quality::Identity => write!(f, "in place"),
            Quality::Checked {
                agree,
                matched,
                rms,
            } => write!(f, "{agree} of {matched} tiles agree within {rms:.2} px"),
            Quality::Unchecked { matched } => {
                write!(f, "unchecked (only {matched} tiles with structure)")
            }
            Quality::Unsure {
                agree,
                matched,
                rms,
            } => write!(
                f,
                "unsure: only {agree} of {matched} tiles agree on one motion ({rms:.2} px)"
            ),
        }
    }
}

/// A registration: the motion and how far to trust it.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// Preview → answer.
    pub motion: Affine,
    /// How it was checked.
    pub quality: Quality,
}

/// Registers answer luma `b` to preview luma `a` (same size): the global search
/// ([`estimate`]) with `bases` as its starting scales, then tiles matched locally at half
/// and at full size and a robust affine fit to them, which both refines the motion
/// (per-axis scale, a little shear or rotation) and checks it.
pub fn register(a: &[f32], b: &[f32], w: usize, h: usize, bases: &[(f32, f32)]) -> Registration {
    let levels = pyramid(a, b, w, h);
    let global = estimate_from(&levels, bases);
    if levels.len() < 2 || w.min(h) < 128 {
        return Registration {
            quality: if global.is_identity(w, h) {
                Quality::Identity
            } else {
                Quality::Unchecked { matched: 0 }
            },
            motion: global,
        };
    }
    let t0 = std::time::Instant::now();
    // Half size first, with room for the per-axis scale the global search cannot see
    // (1 % at the picture's edge is 5 preview pixels), then full size near that.
    let (ha, hb, hw, hh) = &levels[1];
    let (hea, heb) = (edges(ha, *hw, *hh), edges(hb, *hw, *hh));
    let half_motion = Affine {
        tx: global.tx / 2.0,
        ty: global.ty / 2.0,
        ..global
    };
    let (coarse, _) = match_tiles(&hea, &heb, *hw, *hh, half_motion, 32, 4);
    let fitted = fit_affine(&coarse, *hw, *hh).map(|(m, _, _)| Affine {
        tx: m.tx * 2.0,
        ty: m.ty * 2.0,
        ..m
    });
    super::trace::trace("align tiles half", t0);
    let (ea, eb) = (edges(a, w, h), edges(b, w, h));
    let start = fitted.unwrap_or(global);
    let (fine, matched) = match_tiles(&ea, &eb, w, h, start, 64, 2);
    super::trace::trace("align tiles full", t0);
    let Some((motion, agree, rms)) = fit_affine(&fine, w, h) else {
        return Registration {
            motion: global,
            quality: Quality::Unchecked { matched },
        };
    };
    // A motion a quarter of the tiles cannot contradict is not checked: too little
    // structure. One most tiles contradict is unsure.
    let quality = if matched < 8 {
        return Registration {
            motion: global,
            quality: Quality::Unchecked { matched },
        };
    } else if agree * 10 >= matched * 6 && rms <= 0.6 {
        Quality::Checked {
            agree,
            matched,
            rms,
        }
    } else {
        Quality::Unsure {
            agree,
            matched,
            rms,
        }
    };
    // The affine must also do at least as well as the global motion over the whole
    // picture; otherwise the tiles were fooled.
    let step = ((w * h) as f32 / 160_000.0).sqrt().ceil().max(1.0) as usize;
    let motion = if score(&ea, &eb, w, h, motion, step) >= score(&ea, &eb, w, h, global, step) {
        motion
    } else {
        global
    };
    let quality = match quality {
        Quality::Checked { .. } if motion.is_identity(w, h) => Quality::Identity,
        q => q,
    };
    Registration { motion, quality }
}

/// One tile's local match: its centre in the preview and where it lies in the answer.
#[derive(Clone, Copy, Debug)]
struct TileMatch {
    x: f32,
    y: f32,
    u: f32,
    v: f32,
    /// Normalised cross-correlation at the match.
    ncc: f32,
}

/// Matches `t`×`t` tiles of edge map `a` (over the inner 90 % of the picture) in `b`
/// warped by `motion`, at every whole-pixel offset up to `r`, with a parabola below the
/// pixel. Returns the tiles with structure whose best match is clear (normalised
/// correlation ≥ 0.5, not on the search window's rim), and how many tiles had structure
/// at all: one with structure and no clear match does not fit the motion.
fn match_tiles(
    a: &[f32],
    b: &[f32],
    w: usize,
    h: usize,
    motion: Affine,
    t: usize,
    r: usize,
) -> (Vec<TileMatch>, usize) {
    let (mx, my) = (w / 20, h / 20);
    let (nx, ny) = ((w - 2 * mx) / t, (h - 2 * my) / t);
    if nx == 0 || ny == 0 {
        return (Vec::new(), 0);
    }
    let (ox, oy) = (
        mx + (w - 2 * mx - nx * t) / 2,
        my + (h - 2 * my - ny * t) / 2,
    );
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let side = t + 2 * r;
    let span = 2 * r + 1;
    let found: Vec<Option<TileMatch>> = (0..nx * ny)
        .into_par_iter()
        .filter_map(|i| {
            let (x0, y0) = (ox + (i % nx) * t, oy + (i / nx) * t);
            // The tile, zero mean; flat tiles (no edges to match) are skipped.
            let mut ta: Vec<f32> = (0..t * t)
                .map(|k| a[(y0 + k / t) * w + x0 + k % t])
                .collect();
            let mean = ta.iter().sum::<f32>() / ta.len() as f32;
            ta.iter_mut().for_each(|v| *v -= mean);
            let na = ta.iter().map(|v| v * v).sum::<f32>();
            if na / ((t * t) as f32) < 0.05 {
                return None;
            }
            // The answer around it, warped by the motion, with `r` pixels of margin.
            let mut pb = vec![0f32; side * side];
            for (k, o) in pb.iter_mut().enumerate() {
                let (px, py) = (
                    (x0 + k % side) as f32 - r as f32,
                    (y0 + k / side) as f32 - r as f32,
                );
                let (u, v) = motion.map(px, py, cx, cy);
                *o = sample(b, w, h, u, v);
            }
            let mut nccs = vec![0f32; span * span];
            for dy in 0..span {
                for dx in 0..span {
                    let (mut sab, mut sb, mut sbb) = (0f32, 0f32, 0f32);
                    for ty in 0..t {
                        let row = &pb[(ty + dy) * side + dx..][..t];
                        let ar = &ta[ty * t..][..t];
                        for (p, q) in ar.iter().zip(row) {
                            sab += p * q;
                            sb += q;
                            sbb += q * q;
                        }
                    }
                    let n = (t * t) as f32;
                    let vb = (sbb - sb * sb / n).max(1e-9);
                    nccs[dy * span + dx] = sab / (na * vb).sqrt();
                }
            }
            let (best, &peak) = nccs
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .expect("a window");
            let (bx, by) = (best % span, best / span);
            if peak < 0.5 || bx == 0 || by == 0 || bx == span - 1 || by == span - 1 {
                return Some(None);
            }
            let at = |x: usize, y: usize| nccs[y * span + x];
            let fx = vertex(at(bx - 1, by), peak, at(bx + 1, by));
            let fy = vertex(at(bx, by - 1), peak, at(bx, by + 1));
            // The tile's centre, and where it lies in the answer.
            let (x, y) = (
                x0 as f32 + (t as f32 - 1.0) / 2.0,
                y0 as f32 + (t as f32 - 1.0) / 2.0,
            );
            let (u, v) = motion.map(
                x + bx as f32 - r as f32 + fx,
                y + by as f32 - r as f32 + fy,
                cx,
                cy,
            );
            Some(Some(TileMatch {
                x,
                y,
                u,
                v,
                ncc: peak,
            }))
        })
        .collect();
    let structured = found.len();
    (found.into_iter().flatten().collect(), structured)
}

/// A robust least-squares affine motion through the tile matches: a few rounds of
/// reweighting that let tiles far from the current fit (changed content, a repeated
/// pattern matched at the wrong place) fade out. Returns the motion, how many tiles lie
/// within a pixel of it and their RMS distance; `None` below four matches.
fn fit_affine(m: &[TileMatch], w: usize, h: usize) -> Option<(Affine, usize, f32)> {
    if m.len() < 4 {
        return None;
    }
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut weights: Vec<f64> = m.iter().map(|t| t.ncc as f64).collect();
    let mut motion = None;
    for round in 0..6 {
        // Two independent 3-parameter fits (u and v against x − cx, y − cy, 1).
        let mut ata = [[0f64; 3]; 3];
        let (mut atu, mut atv) = ([0f64; 3], [0f64; 3]);
        for (t, &wt) in m.iter().zip(&weights) {
            let row = [(t.x - cx) as f64, (t.y - cy) as f64, 1.0];
            for i in 0..3 {
                for j in 0..3 {
                    ata[i][j] += wt * row[i] * row[j];
                }
                atu[i] += wt * row[i] * (t.u - cx) as f64;
                atv[i] += wt * row[i] * (t.v - cy) as f64;
            }
        }
        let inv = super::grid::invert3(&ata)?;
        let solve = |b: &[f64; 3]| -> [f64; 3] {
            [0, 1, 2].map(|i| (0..3).map(|j| inv[i][j] * b[j]).sum())
        };
        let (pu, pv) = (solve(&atu), solve(&atv));
        let a = Affine {
            m: [pu[0] as f32, pu[1] as f32, pv[0] as f32, pv[1] as f32],
            tx: pu[2] as f32,
            ty: pv[2] as f32,
        };
        motion = Some(a);
        // Cauchy-like weights, tightening from 2 px to half a pixel.
        let c = [2.0, 1.5, 1.0, 0.75, 0.5, 0.5][round];
        for (t, wt) in m.iter().zip(weights.iter_mut()) {
            let (u, v) = a.map(t.x, t.y, cx, cy);
            let d = (((u - t.u).powi(2) + (v - t.v).powi(2)) as f64).sqrt();
            *wt = t.ncc as f64 / (1.0 + (d / c).powi(2));
        }
    }
    let motion = motion?;
    let d: Vec<f32> = m
        .iter()
        .map(|t| {
            let (u, v) = motion.map(t.x, t.y, cx, cy);
            ((u - t.u).powi(2) + (v - t.v).powi(2)).sqrt()
        })
        .filter(|&d| d < 1.0)
        .collect();
    let rms = (d.iter().map(|v| v * v).sum::<f32>() / d.len().max(1) as f32).sqrt();
    Some((motion, d.len(), rms))
}

/// Resamples an interleaved RGB answer onto the preview grid. Returns the warped picture
/// and a per-pixel validity weight (0 where the preview pixel falls outside the answer).
pub fn warp(img: &[f32], w: usize, h: usize, t: impl Into<Affine>) -> (Vec<f32>, Vec<f32>) {
    let t: Affine = t.into();
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
            for x in 0..w {
                let (bx, by) = t.map(x as f32, y as f32, cx, cy);
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

/// How far a registered answer falls short of each edge of the preview: the depth of the
/// band it does not cover, as a fraction of the preview's height (top, bottom) or width
/// (left, right). A model whose canvas has another shape than the photo covers the canvas
/// and crops the rest (gpt-image-1's 3:2 canvas takes a sixteenth off the top and the
/// bottom of a 4:3 photo); what lies there was never in the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Coverage {
    /// Band missing at the top.
    pub top: f32,
    /// Band missing at the bottom.
    pub bottom: f32,
    /// Band missing on the left.
    pub left: f32,
    /// Band missing on the right.
    pub right: f32,
}

impl Coverage {
    /// From a warp's `valid` mask (`w`×`h`, 1 where the answer covers the preview): an edge
    /// row or column counts as missing while less than half of it is covered.
    pub fn of(valid: &[f32], w: usize, h: usize) -> Coverage {
        let mut rows = Vec::with_capacity(h);
        let mut cols = vec![0f32; w];
        for row in valid.chunks_exact(w) {
            rows.push(row.iter().sum::<f32>() / w as f32);
            cols.iter_mut()
                .zip(row)
                .for_each(|(c, &v)| *c += v / h as f32);
        }
        let run = |v: &mut dyn Iterator<Item = &f32>, n: usize| {
            v.take_while(|&&m| m < 0.5).count() as f32 / n as f32
        };
        Coverage {
            top: run(&mut rows.iter(), h),
            bottom: run(&mut rows.iter().rev(), h),
            left: run(&mut cols.iter(), w),
            right: run(&mut cols.iter().rev(), w),
        }
    }

    /// The edges whose missing band is at least `depth` deep, with that depth.
    pub fn missing(&self, depth: f32) -> Vec<(&'static str, f32)> {
        [
            ("top", self.top),
            ("bottom", self.bottom),
            ("left", self.left),
            ("right", self.right),
        ]
        .into_iter()
        .filter(|&(_, d)| d >= depth)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_measures_the_band_a_cover_crop_leaves_out() {
        // A 4:3 preview under an answer zoomed 1.125× vertically (a 3:2 canvas covered):
        // a sixteenth of the height is missing at the top and at the bottom, nothing at
        // the sides.
        let (w, h) = (400, 300);
        let t = Affine {
            m: [1.0, 0.0, 0.0, 1.125],
            tx: 0.0,
            ty: 0.0,
        };
        let (_, valid) = warp(&vec![0.5; w * h * 3], w, h, t);
        let c = Coverage::of(&valid, w, h);
        for (edge, d) in [("top", c.top), ("bottom", c.bottom)] {
            assert!((d - 0.0556).abs() < 0.01, "{edge}: {c:?}");
        }
        assert_eq!((c.left, c.right), (0.0, 0.0), "{c:?}");
        assert_eq!(
            c.missing(0.04).iter().map(|e| e.0).collect::<Vec<_>>(),
            ["top", "bottom"]
        );
        assert!(c.missing(0.06).is_empty());
        // A shift of 12 pixels to the right leaves the left edge out.
        let t = Affine {
            m: [1.0, 0.0, 0.0, 1.0],
            tx: -12.0,
            ty: 0.0,
        };
        let (_, valid) = warp(&vec![0.5; w * h * 3], w, h, t);
        let c = Coverage::of(&valid, w, h);
        assert!((c.left - 0.03).abs() < 0.004 && c.right == 0.0, "{c:?}");
    }

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
        assert!((t.scale() - 1.0).abs() < 0.006, "{t:?}");
        let same = estimate(&a, &a, w, h);
        assert!(same.is_identity(w, h), "{same:?}");
    }

    #[test]
    fn a_crop_and_rescale_is_found() {
        let (w, h) = (400, 260);
        let a = card(w, h, 0.0, 0.0);
        let b = card_zoomed(w, h, -2.0, 3.0, 1.035);
        let t = estimate(&a, &b, w, h);
        assert!((t.scale() - 1.035).abs() < 0.006, "{t:?}");
        assert!(
            (t.tx + 2.0).abs() <= 0.75 && (t.ty - 3.0).abs() <= 0.75,
            "{t:?}"
        );
    }

    /// A picture rich in structure everywhere: discs of many sizes over a smooth ripple,
    /// mapped by `f` (picture coordinates → where to read the pattern).
    fn rich(w: usize, h: usize, f: impl Fn(f32, f32) -> (f32, f32)) -> Vec<f32> {
        let discs: Vec<(f32, f32, f32)> = (0..140u32)
            .map(|i| {
                let hsh = |k: u32| {
                    let mut z = i.wrapping_mul(0x9E37_79B9) ^ k.wrapping_mul(0x85EB_CA6B);
                    z = (z ^ (z >> 16)).wrapping_mul(0x7FEB_352D);
                    (z ^ (z >> 15)) % 10_000
                };
                (
                    hsh(1) as f32 / 10_000.0 * w as f32,
                    hsh(2) as f32 / 10_000.0 * h as f32,
                    4.0 + (hsh(3) % 16) as f32,
                )
            })
            .collect();
        let mut v = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = f(x as f32, y as f32);
                let mut s = 0.3 + 0.1 * ((fx * 0.13).sin() * (fy * 0.09).cos());
                for &(cx, cy, r) in &discs {
                    if (fx - cx).powi(2) + (fy - cy).powi(2) < r * r {
                        s += 0.25;
                    }
                }
                v[y * w + x] = s;
            }
        }
        v
    }

    #[test]
    fn a_per_axis_scale_is_found_and_checked_by_the_tiles() {
        let (w, h) = (640, 420);
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let a = rich(w, h, |x, y| (x, y));
        // The answer: 1.5 % wider, 0.8 % shorter, moved: preview point p sits at
        // c + diag(1.015, 0.992)·(p − c) + (3, −2) in it.
        let (sx, sy, tx, ty) = (1.015f32, 0.992f32, 3.0f32, -2.0f32);
        let b = rich(w, h, |u, v| {
            (cx + (u - cx - tx) / sx, cy + (v - cy - ty) / sy)
        });
        let r = register(&a, &b, w, h, &[(1.0, 1.0)]);
        assert!(matches!(r.quality, Quality::Checked { .. }), "{r:?}");
        let m = r.motion;
        assert!(
            (m.m[0] - sx).abs() < 0.002 && (m.m[3] - sy).abs() < 0.002,
            "{m:?}"
        );
        assert!(m.m[1].abs() < 0.002 && m.m[2].abs() < 0.002, "{m:?}");
        assert!((m.tx - tx).abs() < 0.3 && (m.ty - ty).abs() < 0.3, "{m:?}");
        // The same picture is in place.
        let same = register(&a, &a, w, h, &[(1.0, 1.0)]);
        assert_eq!(same.quality, Quality::Identity, "{same:?}");
    }

    #[test]
    fn an_answer_torn_in_two_is_unsure() {
        let (w, h) = (640, 420);
        let a = rich(w, h, |x, y| (x, y));
        // Left half moved 4 px left, right half 4 px right: no one motion fits both.
        let b = rich(w, h, |u, v| {
            if u < w as f32 / 2.0 {
                (u + 4.0, v)
            } else {
                (u - 4.0, v)
            }
        });
        let r = register(&a, &b, w, h, &[(1.0, 1.0)]);
        assert!(matches!(r.quality, Quality::Unsure { .. }), "{r:?}");
    }

    #[test]
    fn a_canvas_covered_rather_than_filled_is_found_from_its_base() {
        // The model's canvas was 12.5 % wider than the preview; its content covers it,
        // so once stretched back to the preview the content is 12.5 % taller.
        let (w, h) = (640, 420);
        let cy = (h as f32 - 1.0) / 2.0;
        let a = rich(w, h, |x, y| (x, y));
        let b = rich(w, h, |u, v| (u, cy + (v - cy) / 1.125));
        let r = register(&a, &b, w, h, &[(1.0, 1.0), (1.0, 1.125)]);
        assert!(matches!(r.quality, Quality::Checked { .. }), "{r:?}");
        assert!(
            (r.motion.m[3] - 1.125).abs() < 0.003 && (r.motion.m[0] - 1.0).abs() < 0.003,
            "{r:?}"
        );
    }
}
