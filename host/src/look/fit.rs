//! Learning a look from one or a few (preview, answer) pairs.
//!
//! The references cover only some colours (a wedding has no cyan, a beach no skin), yet the
//! look must map every colour, smoothly, without jumps or folds. So it is learned in three
//! steps, each a fallback for the next:
//!
//! 1. a tone curve of luma (kernel regression on 64 points, made monotone), which every
//!    colour shares;
//! 2. a 3×4 colour matrix after the tone curve (least squares, ridge toward identity):
//!    the grade's global colour part;
//! 3. at each LUT node, what the references show on top of 1–2: a weighted local linear
//!    regression of the residual over the samples in the node's eight cells (exact for
//!    anything linear there, so the node is not biased toward where its samples happen to
//!    lie), with a confidence from how many samples it had.
//!
//! Nodes without samples take their neighbours' residual by push-pull (a pyramid of
//! confidence-weighted averages, pulled toward zero — the global part — at every coarser
//! level), then a few membrane-smoothing sweeps over the filled nodes. Far from any
//! reference colour the look is its global part; near one, it follows the reference.

use rayon::prelude::*;

use super::{srgb_luma, Global, Lut};
use crate::image::RgbF32;

/// One reference: `sqrt`-domain RGB of what the engine saw and of its registered answer,
/// at the same size; `valid` weighs each pixel (0 where the answer does not cover it).
pub struct Pair<'a> {
    /// What the engine saw.
    pub src: &'a [f32],
    /// What it answered.
    pub dst: &'a [f32],
    /// Per pixel, 0..1.
    pub valid: Option<&'a [f32]>,
}

/// What learning gives.
pub struct Fitted {
    /// The global part.
    pub global: Global,
    /// The whole mapping.
    pub lut: Lut,
    /// Share of the LUT's nodes the references gave at least half a confidence.
    pub coverage: f32,
    /// Pixels used.
    pub samples: usize,
}

/// At most this many pixels are used (a 1024-px preview has about 700 000): beyond it the
/// fit is no better, only slower.
const MAX_SAMPLES: usize = 400_000;
/// Points of the tone curve.
const TONE_POINTS: usize = 64;
/// Ridge weight pulling the matrix toward identity, per unit of sample weight.
const MATRIX_RIDGE: f64 = 1e-5;
/// Ridge on the local slopes (in LUT cells), relative to the node's weight.
const SLOPE_RIDGE: f64 = 0.05;
/// Tent-weighted samples at which a node is fully trusted.
const FULL_WEIGHT: f64 = 6.0;
/// Weight of "no offset" (the global part) at each coarser push-pull level.
const PRIOR: f64 = 0.05;
/// Membrane sweeps over filled nodes.
const SMOOTH_SWEEPS: usize = 24;

/// Points of the toning table.
const TONING_POINTS: usize = 33;
/// Weight of "no toning" at each toning point.
const TONING_PRIOR: f64 = 50.0;

#[derive(Clone, Copy)]
struct Sample {
    /// `sqrt` domain.
    x: [f32; 3],
    y: [f32; 3],
    /// sRGB-encoded: the preview's colour clipped to sRGB, and the answer less what the
    /// preview had beyond sRGB.
    ex: [f32; 3],
    ey: [f32; 3],
    w: f32,
}

fn samples_of(pairs: &[Pair<'_>]) -> Vec<Sample> {
    let total: usize = pairs.iter().map(|p| p.src.len() / 3).sum();
    let stride = total.div_ceil(MAX_SAMPLES).max(1);
    let mut out = Vec::with_capacity(total / stride + pairs.len());
    for p in pairs {
        let n = p.src.len() / 3;
        let mut i = 0;
        while i < n {
            let w = p.valid.map_or(1.0, |v| v[i]);
            if w > 0.5 {
                let get =
                    |v: &[f32]| [v[3 * i], v[3 * i + 1], v[3 * i + 2]].map(|x| x.clamp(0.0, 1.0));
                let (x, y) = (get(p.src), get(p.dst));
                // The global part maps what is inside sRGB and carries the rest (see
                // `Global::map_srgb`), so it learns from the preview's colour clipped to
                // sRGB and the answer less what the preview had beyond it.
                let (ex, ey) = (super::sqrt_to_srgb(x), super::sqrt_to_srgb(y));
                let inside = ex.map(|v| v.clamp(0.0, 1.0));
                out.push(Sample {
                    x,
                    y,
                    ex: inside,
                    ey: [0, 1, 2].map(|c| ey[c] - (ex[c] - inside[c])),
                    w,
                });
            }
            i += stride;
        }
    }
    out
}

/// Local linear regression of answer luma on preview luma at [`TONE_POINTS`] points (a
/// plain weighted mean would be pulled toward wherever the samples near a point happen to
/// lie), gaps bridged linearly, ends continued at slope 1, then made monotone (pool
/// adjacent violators) — a tone curve never folds.
fn fit_tone(pairs: impl Iterator<Item = (f32, f32, f32)>) -> Vec<f32> {
    let m = (TONE_POINTS - 1) as f32;
    // Per point: Σw, Σw·d, Σw·d², Σw·y, Σw·d·y, with d the offset from the point in steps.
    let mut acc = vec![[0f64; 5]; TONE_POINTS];
    for (x, y, sw) in pairs {
        let t = x.clamp(0.0, 1.0) * m;
        let k = (t as usize).min(TONE_POINTS - 2);
        let f = t - k as f32;
        let y = y as f64;
        for (j, w, d) in [(k, 1.0 - f, f), (k + 1, f, f - 1.0)] {
            let (w, d) = ((sw * w) as f64, d as f64);
            let a = &mut acc[j];
            a[0] += w;
            a[1] += w * d;
            a[2] += w * d * d;
            a[3] += w * y;
            a[4] += w * d * y;
        }
    }
    let sw: Vec<f64> = acc.iter().map(|a| a[0]).collect();
    let fitted: Vec<f64> = acc
        .iter()
        .map(|a| {
            if a[0] <= 0.0 {
                return 0.0;
            }
            // [Σw Σwd; Σwd Σwd²+ridge] [c; slope] = [Σwy; Σwdy + ridge·s0]: the slope
            // is pulled toward identity's (1/m per step), not toward flat, so a point at
            // the end of the data is not bent toward its neighbours' mean.
            let ridge = SLOPE_RIDGE * a[0];
            let s0 = 1.0 / m as f64;
            let det = a[0] * (a[2] + ridge) - a[1] * a[1];
            if det.abs() < 1e-12 {
                a[3] / a[0]
            } else {
                (a[3] * (a[2] + ridge) - a[1] * (a[4] + ridge * s0)) / det
            }
        })
        .collect();
    let known: Vec<usize> = (0..TONE_POINTS).filter(|&k| sw[k] > 1.0).collect();
    if known.is_empty() {
        return (0..TONE_POINTS).map(|k| k as f32 / m).collect();
    }
    let at = |k: usize| fitted[k];
    let mut curve = vec![0f64; TONE_POINTS];
    for (k, v) in curve.iter_mut().enumerate() {
        let x = k as f64 / m as f64;
        let after = known.iter().position(|&j| j >= k);
        *v = match after {
            Some(0) if known[0] > k => at(known[0]) + (x - known[0] as f64 / m as f64),
            Some(i) if known[i] == k => at(k),
            Some(i) => {
                let (a, b) = (known[i - 1], known[i]);
                let f = (k - a) as f64 / (b - a) as f64;
                at(a) + f * (at(b) - at(a))
            }
            None => {
                let last = *known.last().unwrap();
                at(last) + (x - last as f64 / m as f64)
            }
        };
    }
    // Pool adjacent violators, weighted by the evidence (gaps weigh little).
    let weights: Vec<f64> = sw.iter().map(|w| w.max(1e-3)).collect();
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new(); // (mean, weight, length)
    for k in 0..TONE_POINTS {
        blocks.push((curve[k], weights[k], 1));
        while blocks.len() > 1 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let b = blocks.pop().unwrap();
            let a = blocks.last_mut().unwrap();
            let w = a.1 + b.1;
            a.0 = (a.0 * a.1 + b.0 * b.1) / w;
            a.1 = w;
            a.2 += b.2;
        }
    }
    blocks
        .iter()
        .flat_map(|&(v, _, n)| std::iter::repeat_n(v.clamp(0.0, 1.0) as f32, n))
        .collect()
}

/// Solves `a x = b` (4×4, symmetric positive definite after the ridge) by Gaussian
/// elimination with partial pivoting; `None` when singular.
fn solve4(mut a: [[f64; 4]; 4], mut b: [[f64; 3]; 4]) -> Option<[[f64; 3]; 4]> {
    for col in 0..4 {
        let piv = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in 0..4 {
            if row != col {
                let f = a[row][col] / a[col][col];
                for k in 0..4 {
                    a[row][k] -= f * a[col][k];
                }
                for k in 0..3 {
                    b[row][k] -= f * b[col][k];
                }
            }
        }
    }
    let mut x = [[0f64; 3]; 4];
    for i in 0..4 {
        for k in 0..3 {
            x[i][k] = b[i][k] / a[i][i];
        }
    }
    Some(x)
}

fn clipped(e: [f32; 3]) -> bool {
    e.iter().any(|&v| !(0.002..=0.998).contains(&v))
}

/// The 3×4 matrix after the tone curve, ridge toward identity.
fn fit_matrix(samples: &[Sample], tone: &Global) -> [[f32; 4]; 3] {
    let mut a = [[0f64; 4]; 4];
    let mut b = [[0f64; 3]; 4];
    let mut wsum = 0f64;
    for s in samples {
        let f = [
            tone.tone_at(s.ex[0]) as f64,
            tone.tone_at(s.ex[1]) as f64,
            tone.tone_at(s.ex[2]) as f64,
            1.0,
        ];
        // An answer clipped at black or white says only that it went at least that far:
        // it would bend the mixer toward the clip.
        if clipped(s.ey) {
            continue;
        }
        let w = s.w as f64;
        wsum += w;
        for i in 0..4 {
            for j in 0..4 {
                a[i][j] += w * f[i] * f[j];
            }
            for c in 0..3 {
                b[i][c] += w * f[i] * s.ey[c] as f64;
            }
        }
    }
    let lambda = MATRIX_RIDGE * wsum.max(1.0);
    for i in 0..4 {
        a[i][i] += lambda;
        if i < 3 {
            b[i][i] += lambda;
        }
    }
    let identity = Global::identity().matrix;
    match solve4(a, b) {
        Some(x) => [0, 1, 2].map(|c| [0, 1, 2, 3].map(|i| x[i][c] as f32)),
        None => identity,
    }
}

/// Toning: what the mixer leaves, by input luma — local linear regression at
/// [`TONING_POINTS`] points, each pulled toward no toning by [`TONING_PRIOR`] (so a luma
/// range the references barely cover is not toned by a handful of pixels), gaps bridged
/// linearly, ends held.
fn fit_toning(samples: &[Sample], global: &Global) -> Vec<[f32; 3]> {
    let m = (TONING_POINTS - 1) as f32;
    // Per point: Σw, Σw·d, Σw·d², then per channel Σw·r, Σw·d·r.
    let mut acc = vec![[0f64; 9]; TONING_POINTS];
    for s in samples {
        let q = global.mixed(s.ex);
        let r = [0, 1, 2].map(|c| (s.ey[c] - q[c]) as f64);
        let t = srgb_luma(s.ex).clamp(0.0, 1.0) * m;
        let k = (t as usize).min(TONING_POINTS - 2);
        let f = t - k as f32;
        for (j, w, d) in [(k, 1.0 - f, f), (k + 1, f, f - 1.0)] {
            let (w, d) = ((s.w * w) as f64, d as f64);
            let a = &mut acc[j];
            a[0] += w;
            a[1] += w * d;
            a[2] += w * d * d;
            for c in 0..3 {
                a[3 + c] += w * r[c];
                a[6 + c] += w * d * r[c];
            }
        }
    }
    let known: Vec<usize> = (0..TONING_POINTS).filter(|&k| acc[k][0] > 1.0).collect();
    if known.is_empty() {
        return vec![[0.0; 3]; TONING_POINTS];
    }
    let at = |k: usize| -> [f64; 3] {
        let a = &acc[k];
        let (w0, w1, w2) = (a[0] + TONING_PRIOR, a[1], a[2] + SLOPE_RIDGE * a[0] + 1e-9);
        let det = w0 * w2 - w1 * w1;
        [0, 1, 2].map(|c| (a[3 + c] * w2 - w1 * a[6 + c]) / det)
    };
    (0..TONING_POINTS)
        .map(|k| {
            let after = known.iter().position(|&j| j >= k);
            let v = match after {
                Some(0) => at(known[0]),
                Some(i) if known[i] == k => at(k),
                Some(i) => {
                    let (a, b) = (known[i - 1], known[i]);
                    let f = (k - a) as f64 / (b - a) as f64;
                    let (va, vb) = (at(a), at(b));
                    [0, 1, 2].map(|c| va[c] + f * (vb[c] - va[c]))
                }
                None => at(*known.last().unwrap()),
            };
            v.map(|x| x as f32)
        })
        .collect()
}

/// Per node: weight, the symmetric 4×4 moments of `[1, dr, dg, db]` (10), and their
/// products with the residual (12).
const ACC: usize = 23;

fn accumulate(samples: &[Sample], global: &Global, n: usize) -> Vec<f64> {
    let m = (n - 1) as f32;
    let threads = rayon::current_num_threads().max(1);
    let chunk = samples.len().div_ceil(threads).max(1);
    samples
        .par_chunks(chunk)
        .map(|part| {
            let mut acc = vec![0f64; n * n * n * ACC];
            for s in part {
                let p = global.map(s.x);
                let r = [s.y[0] - p[0], s.y[1] - p[1], s.y[2] - p[2]];
                let mut i = [0usize; 3];
                let mut f = [0f32; 3];
                for c in 0..3 {
                    let x = s.x[c] * m;
                    i[c] = (x as usize).min(n - 2);
                    f[c] = x - i[c] as f32;
                }
                for corner in 0..8 {
                    let up = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                    let mut t = s.w;
                    let mut d = [0f32; 3];
                    for c in 0..3 {
                        t *= if up[c] == 1 { f[c] } else { 1.0 - f[c] };
                        d[c] = f[c] - up[c] as f32;
                    }
                    if t <= 0.0 {
                        continue;
                    }
                    let node = ((i[2] + up[2]) * n + i[1] + up[1]) * n + i[0] + up[0];
                    let a = &mut acc[node * ACC..(node + 1) * ACC];
                    let v = [1.0, d[0], d[1], d[2]];
                    let t = t as f64;
                    let mut k = 0;
                    for p in 0..4 {
                        for q in p..4 {
                            a[k] += t * (v[p] * v[q]) as f64;
                            k += 1;
                        }
                    }
                    for p in 0..4 {
                        for c in 0..3 {
                            a[10 + p * 3 + c] += t * (v[p] * r[c]) as f64;
                        }
                    }
                }
            }
            acc
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0f64; n * n * n * ACC])
}

/// Each node's residual at the node (the local fit's constant term) and its confidence.
fn node_fits(acc: &[f64], n: usize) -> (Vec<[f64; 3]>, Vec<f64>) {
    let nodes = n * n * n;
    let mut value = vec![[0f64; 3]; nodes];
    let mut conf = vec![0f64; nodes];
    for node in 0..nodes {
        let a = &acc[node * ACC..(node + 1) * ACC];
        let w = a[0];
        if w < 1e-6 {
            continue;
        }
        let mut m = [[0f64; 4]; 4];
        let mut k = 0;
        for p in 0..4 {
            for q in p..4 {
                m[p][q] = a[k];
                m[q][p] = a[k];
                k += 1;
            }
        }
        for (p, row) in m.iter_mut().enumerate().skip(1) {
            row[p] += SLOPE_RIDGE * w;
        }
        let mut b = [[0f64; 3]; 4];
        for p in 0..4 {
            for c in 0..3 {
                b[p][c] = a[10 + p * 3 + c];
            }
        }
        let x = solve4(m, b).unwrap_or_else(|| {
            // Degenerate: the plain weighted mean.
            let mut x = [[0f64; 3]; 4];
            for c in 0..3 {
                x[0][c] = b[0][c] / w;
            }
            x
        });
        value[node] = x[0];
        conf[node] = (w / FULL_WEIGHT).min(1.0);
    }
    (value, conf)
}

/// Fills low-confidence nodes from their neighbours (push-pull with a pull toward zero at
/// every coarser level), in place.
fn push_pull(value: &mut [[f64; 3]], conf: &[f64], n: usize) {
    if n <= 2 {
        for (v, &c) in value.iter_mut().zip(conf) {
            for x in v.iter_mut() {
                *x *= c;
            }
        }
        return;
    }
    let nc = n.div_ceil(2);
    let mut cv = vec![[0f64; 3]; nc * nc * nc];
    let mut cc = vec![0f64; nc * nc * nc];
    let idx = |n: usize, r: usize, g: usize, b: usize| (b * n + g) * n + r;
    for b in 0..nc {
        for g in 0..nc {
            for r in 0..nc {
                let mut wsum = 0f64;
                let mut vsum = [0f64; 3];
                for db in -1i64..=1 {
                    for dg in -1i64..=1 {
                        for dr in -1i64..=1 {
                            let (fr, fg, fb) =
                                (2 * r as i64 + dr, 2 * g as i64 + dg, 2 * b as i64 + db);
                            if [fr, fg, fb].iter().any(|&x| x < 0 || x >= n as i64) {
                                continue;
                            }
                            let t = [dr, dg, db]
                                .iter()
                                .map(|&d| if d == 0 { 1.0 } else { 0.5 })
                                .product::<f64>();
                            let i = idx(n, fr as usize, fg as usize, fb as usize);
                            let w = t * conf[i];
                            wsum += w;
                            for c in 0..3 {
                                vsum[c] += w * value[i][c];
                            }
                        }
                    }
                }
                let j = idx(nc, r, g, b);
                for c in 0..3 {
                    cv[j][c] = vsum[c] / (wsum + PRIOR);
                }
                cc[j] = (wsum / 2.0).min(1.0);
            }
        }
    }
    push_pull(&mut cv, &cc, nc);
    // Pull: each fine node blends its own value with the coarse level's, interpolated.
    for b in 0..n {
        for g in 0..n {
            for r in 0..n {
                let i = idx(n, r, g, b);
                if conf[i] >= 1.0 {
                    continue;
                }
                let (r0, g0, b0) = (r / 2, g / 2, b / 2);
                let (r1, g1, b1) = (r.div_ceil(2), g.div_ceil(2), b.div_ceil(2));
                let mut up = [0f64; 3];
                for (cb, wb) in [(b0, 0.5), (b1, 0.5)] {
                    for (cg, wg) in [(g0, 0.5), (g1, 0.5)] {
                        for (cr, wr) in [(r0, 0.5), (r1, 0.5)] {
                            let j = idx(nc, cr, cg, cb);
                            for c in 0..3 {
                                up[c] += wr * wg * wb * cv[j][c];
                            }
                        }
                    }
                }
                for c in 0..3 {
                    value[i][c] = conf[i] * value[i][c] + (1.0 - conf[i]) * up[c];
                }
            }
        }
    }
}

/// Membrane smoothing of what push-pull filled: each node moves toward its neighbours'
/// mean by its lack of confidence, its own evidence held by its confidence.
fn smooth(value: &mut [[f64; 3]], data: &[[f64; 3]], conf: &[f64], n: usize) {
    let idx = |r: usize, g: usize, b: usize| (b * n + g) * n + r;
    for _ in 0..SMOOTH_SWEEPS {
        let prev = value.to_vec();
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    let i = idx(r, g, b);
                    if conf[i] >= 1.0 {
                        continue;
                    }
                    let mut sum = [0f64; 3];
                    let mut k = 0.0;
                    let mut add = |j: usize| {
                        for c in 0..3 {
                            sum[c] += prev[j][c];
                        }
                        k += 1.0;
                    };
                    if r > 0 {
                        add(idx(r - 1, g, b));
                    }
                    if r + 1 < n {
                        add(idx(r + 1, g, b));
                    }
                    if g > 0 {
                        add(idx(r, g - 1, b));
                    }
                    if g + 1 < n {
                        add(idx(r, g + 1, b));
                    }
                    if b > 0 {
                        add(idx(r, g, b - 1));
                    }
                    if b + 1 < n {
                        add(idx(r, g, b + 1));
                    }
                    for c in 0..3 {
                        value[i][c] = conf[i] * data[i][c] + (1.0 - conf[i]) * sum[c] / k;
                    }
                }
            }
        }
    }
}

/// Learns a look with `n` nodes per axis from `pairs`.
pub fn learn(pairs: &[Pair<'_>], n: usize) -> Fitted {
    assert!(n >= 2, "a LUT needs at least two nodes per axis");
    let samples = samples_of(pairs);
    // First the luma response, then the mixer and toning after it. (Refitting the curve
    // per channel through the mixer's inverse, alternately, was tried: it fits the
    // reference better and carries to other scenes worse.)
    let tone = fit_tone(
        samples
            .iter()
            .map(|s| (srgb_luma(s.ex), srgb_luma(s.ey), s.w)),
    );
    let mut global = Global {
        tone,
        matrix: Global::identity().matrix,
        toning: vec![[0.0; 3]; 2],
    };
    global.matrix = fit_matrix(&samples, &global);
    global.toning = fit_toning(&samples, &global);

    let acc = accumulate(&samples, &global, n);
    let (data, conf) = node_fits(&acc, n);
    let mut value = data.clone();
    push_pull(&mut value, &conf, n);
    smooth(&mut value, &data, &conf, n);
    let mut lut = Lut::identity(n);
    for (node, v) in lut.values.chunks_exact_mut(3).enumerate() {
        let p = global.map([v[0], v[1], v[2]]);
        for c in 0..3 {
            v[c] = (p[c] as f64 + value[node][c]).clamp(0.0, 1.0) as f32;
        }
    }
    let coverage = conf.iter().filter(|&&c| c >= 0.5).count() as f32 / conf.len() as f32;
    Fitted {
        global,
        lut,
        coverage,
        samples: samples.len(),
    }
}

/// The look of each `(seen, answer)` pair (both linear working space, any answer size):
/// registration as the transfer does it, then [`learn`].
pub fn learn_from_answers(pairs: &[(&RgbF32, &RgbF32)]) -> Fitted {
    let reg: Vec<_> = pairs
        .iter()
        .map(|(s, a)| crate::transfer::register(s, a))
        .collect();
    let fit_pairs: Vec<Pair<'_>> = reg
        .iter()
        .map(|r| Pair {
            src: &r.src,
            dst: &r.dst,
            valid: r.valid.as_deref(),
        })
        .collect();
    learn(&fit_pairs, super::LUT_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma(p: [f32; 3]) -> f32 {
        use crate::transfer::grid::GUIDE;
        GUIDE[0] * p[0] + GUIDE[1] * p[1] + GUIDE[2] * p[2]
    }

    /// A smooth, realistic test picture in the `sqrt` domain: every hue at many
    /// brightnesses, but only the warm half of the hue circle (the "reference scene").
    fn warm_scene(w: usize, h: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let hue = x as f32 / w as f32 * 0.5; // red → cyan-ish only
                let val = 0.05 + 0.9 * y as f32 / h as f32;
                let sat = 0.2 + 0.6 * ((x * 7 + y * 3) % 11) as f32 / 11.0;
                let rgb = [0.0, 1.0 / 3.0, 2.0 / 3.0].map(|o: f32| {
                    let a = ((hue + o) * std::f32::consts::TAU).cos() * 0.5 + 0.5;
                    val * (1.0 - sat + sat * a)
                });
                v.extend(rgb);
            }
        }
        v
    }

    fn grade(p: [f32; 3]) -> [f32; 3] {
        let t = |v: f32| (0.04 + 0.92 * (v * v * (3.0 - 2.0 * v) * 0.5 + 0.5 * v)).min(1.0);
        let q = [t(p[0]) * 1.05, t(p[1]), t(p[2]) * 0.9 + 0.02];
        let y = luma(q);
        q.map(|c| (y + 1.2 * (c - y)).clamp(0.0, 1.0))
    }

    #[test]
    fn learns_a_global_grade_and_extends_it_smoothly() {
        let (w, h) = (640, 420);
        let src = warm_scene(w, h);
        let dst: Vec<f32> = src
            .chunks_exact(3)
            .flat_map(|p| grade([p[0], p[1], p[2]]))
            .collect();
        let started = std::time::Instant::now();
        let f = learn(
            &[Pair {
                src: &src,
                dst: &dst,
                valid: None,
            }],
            33,
        );
        let ms = started.elapsed().as_secs_f64() * 1e3;
        println!("learned in {ms:.0} ms, coverage {:.3}", f.coverage);
        // Where the reference had colours: close to the grade.
        let mut worst = 0f32;
        for p in src.chunks_exact(3).step_by(97) {
            let (a, b) = (f.lut.lookup([p[0], p[1], p[2]]), grade([p[0], p[1], p[2]]));
            for c in 0..3 {
                worst = worst.max((a[c] - b[c]).abs());
            }
        }
        assert!(worst < 0.02, "seen colours off by {worst}");
        // No jumps anywhere: neighbouring nodes differ by little more than the grade's
        // own slope allows (a cell is 1/32; the grade's slope is below 2).
        let n = f.lut.n;
        let mut jump = 0f32;
        for b in 0..n {
            for g in 0..n {
                for r in 1..n {
                    let (i, j) = (f.lut.at(r, g, b), f.lut.at(r - 1, g, b));
                    for c in 0..3 {
                        jump = jump.max((f.lut.values[i + c] - f.lut.values[j + c]).abs());
                    }
                }
            }
        }
        assert!(
            jump < 2.5 / 32.0,
            "largest step between neighbouring nodes {jump}"
        );
        // No folds: along the neutral axis, brighter in stays brighter out.
        let mut last = -1f32;
        for k in 0..n {
            let v = k as f32 / (n - 1) as f32;
            let y = luma(f.lut.lookup([v, v, v]));
            assert!(y >= last - 1e-4, "neutral axis folds at {v}: {y} < {last}");
            last = y;
        }
        // Unseen (blue) colours: the grade's global part, not identity and not garbage.
        let blue = [0.2, 0.3, 0.8];
        let (a, b) = (f.lut.lookup(blue), grade(blue));
        for c in 0..3 {
            assert!((a[c] - b[c]).abs() < 0.06, "unseen blue {a:?} vs {b:?}");
        }
    }

    #[test]
    fn identity_pairs_learn_identity() {
        let src = warm_scene(300, 200);
        let f = learn(
            &[Pair {
                src: &src,
                dst: &src,
                valid: None,
            }],
            33,
        );
        let id = Lut::identity(33);
        let worst = f
            .lut
            .values
            .iter()
            .zip(&id.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "identity learned with error {worst}");
    }
}
