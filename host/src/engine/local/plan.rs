//! [`Plan::resolve`]: a preset's recipe turned into concrete numbers for one photo,
//! measuring the preview for everything automatic (white balance, exposure, contrast), so
//! the result does not depend on resolution. Applying a plan is `pass`'s.

use luminary_plugin_api::{Recipe, Tint};

use crate::image::{luma, RgbF32, LUMA};

/// A zero-luminance colour offset for a hue, largest component 1.
pub(super) fn hue_offset(hue_deg: f32) -> [f32; 3] {
    let h = hue_deg.rem_euclid(360.0) / 60.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let rgb = match h as u32 {
        0 => [1.0, x, 0.0],
        1 => [x, 1.0, 0.0],
        2 => [0.0, 1.0, x],
        3 => [0.0, x, 1.0],
        4 => [x, 0.0, 1.0],
        _ => [1.0, 0.0, x],
    };
    let y = luma(&rgb);
    let off = [rgb[0] - y, rgb[1] - y, rgb[2] - y];
    let m = off.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    off.map(|v| v / m)
}

/// Monotone cubic interpolation (Fritsch–Carlson) through `pts`, sampled into a table.
pub(super) fn monotone_curve(pts: &[(f32, f32)], samples: usize, x_max: f32) -> Vec<f32> {
    let n = pts.len();
    let d: Vec<f32> = (0..n - 1)
        .map(|i| (pts[i + 1].1 - pts[i].1) / (pts[i + 1].0 - pts[i].0))
        .collect();
    let mut m = vec![0f32; n];
    m[0] = d[0];
    m[n - 1] = d[n - 2];
    for i in 1..n - 1 {
        m[i] = if d[i - 1] * d[i] <= 0.0 {
            0.0
        } else {
            (d[i - 1] + d[i]) / 2.0
        };
    }
    for i in 0..n - 1 {
        if d[i] == 0.0 {
            m[i] = 0.0;
            m[i + 1] = 0.0;
            continue;
        }
        let (a, b) = (m[i] / d[i], m[i + 1] / d[i]);
        let s = a * a + b * b;
        if s > 9.0 {
            let t = 3.0 / s.sqrt();
            m[i] = t * a * d[i];
            m[i + 1] = t * b * d[i];
        }
    }
    (0..samples)
        .map(|k| {
            let x = k as f32 / (samples - 1) as f32 * x_max;
            let last = pts[n - 1];
            if x >= last.0 {
                return last.1 + (x - last.0) * m[n - 1];
            }
            let i = (0..n - 1).find(|&i| x < pts[i + 1].0).unwrap_or(n - 2);
            let (x0, y0) = pts[i];
            let (x1, y1) = pts[i + 1];
            let h = x1 - x0;
            let t = (x - x0) / h;
            let (t2, t3) = (t * t, t * t * t);
            (2.0 * t3 - 3.0 * t2 + 1.0) * y0
                + (t3 - 2.0 * t2 + t) * h * m[i]
                + (-2.0 * t3 + 3.0 * t2) * y1
                + (t3 - t2) * h * m[i + 1]
        })
        .collect()
}

/// Table size and input range of the tone curve (perceptual input up to 1.5, i.e. linear
/// 2.25: headroom for exposure pushes before the shoulder rolls them off).
pub(super) const TONE_SAMPLES: usize = 4096;
pub(super) const TONE_MAX: f32 = 1.5;

/// Three-way grade: shadow, midtone and highlight offsets, and the shadow/highlight split.
pub(super) type Grading = ([f32; 3], [f32; 3], [f32; 3], f32);

/// Concrete operator parameters for one photo.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Per-channel gain: white balance × exposure.
    pub(super) gains: [f32; 3],
    /// Highlights, shadows and clarity amounts (0 = skip the edge-aware pass).
    pub(super) highlights: f32,
    pub(super) shadows: f32,
    pub(super) clarity: f32,
    /// Normalised monochrome weights.
    pub(super) mono: Option<[f32; 3]>,
    /// Perceptual luminance in → out, when any tone operator is active.
    pub(super) tone_lut: Option<Vec<f32>>,
    pub(super) vibrance: f32,
    pub(super) saturation: f32,
    pub(super) grade: Option<Grading>,
    pub(super) vignette: (f32, f32, f32),
    pub(super) grain: (f32, f32),
}

impl Plan {
    /// Resolves a recipe against the preview (for the automatic operators).
    pub fn resolve(r: &Recipe, preview: &RgbF32) -> Plan {
        let c = |v: f32, lo: f32, hi: f32| if v.is_finite() { v.clamp(lo, hi) } else { 0.0 };

        // White balance: grey-world weighted towards near-neutral, mid-bright pixels, so a
        // colourful subject does not decide the cast; then temperature/tint on top.
        let mut wb = [1f32; 3];
        let auto_wb = c(r.white_balance.auto, 0.0, 1.0);
        if auto_wb > 0.0 {
            let mut acc = [0f64; 3];
            for p in preview.data.chunks_exact(3) {
                let y = luma(p);
                let max = p[0].max(p[1]).max(p[2]);
                if !(0.02..0.9).contains(&y) || max > 0.98 {
                    continue;
                }
                let sat = (max - p[0].min(p[1]).min(p[2])) / max;
                let w = ((1.0 - sat) * (1.0 - sat)) as f64;
                for k in 0..3 {
                    acc[k] += w * p[k] as f64;
                }
            }
            if acc.iter().all(|&v| v > 1e-9) {
                let y = LUMA[0] as f64 * acc[0] + LUMA[1] as f64 * acc[1] + LUMA[2] as f64 * acc[2];
                for k in 0..3 {
                    wb[k] = ((y / acc[k]) as f32).clamp(0.6, 1.6).powf(auto_wb);
                }
            }
        }
        let t = c(r.white_balance.temperature, -1.0, 1.0);
        let tint = c(r.white_balance.tint, -1.0, 1.0);
        wb[0] *= (0.4 * t).exp2();
        wb[2] *= (-0.4 * t).exp2();
        wb[1] *= (-0.3 * tint).exp2();
        let norm = LUMA[0] * wb[0] + LUMA[1] * wb[1] + LUMA[2] * wb[2];
        wb.iter_mut().for_each(|v| *v /= norm);

        // Exposure: towards a log-average of 0.14 (a display-referred photo's typical key),
        // never pushing the 99th percentile far past white.
        let lum: Vec<f32> = preview
            .data
            .chunks_exact(3)
            .map(|p| LUMA[0] * wb[0] * p[0] + LUMA[1] * wb[1] * p[1] + LUMA[2] * wb[2] * p[2])
            .collect();
        // The two order statistics used (1st and 99th percentile), found by selection, not
        // a full sort: the same values, in linear time.
        let order_stat = |q: f32| -> f32 {
            if lum.is_empty() {
                return 0.0;
            }
            let mut v = lum.clone();
            let k = ((v.len() - 1) as f32 * q) as usize;
            *v.select_nth_unstable_by(k, f32::total_cmp).1
        };
        let (p01, p99_raw) = rayon::join(|| order_stat(0.01), || order_stat(0.99));
        let pct = |q: f32| if q < 0.5 { p01 } else { p99_raw };
        let mut ev = c(r.exposure.ev, -4.0, 4.0);
        let auto_ev = c(r.exposure.auto, 0.0, 1.0);
        if auto_ev > 0.0 && !lum.is_empty() {
            let key = (lum.iter().map(|&y| (y.max(1e-4) as f64).ln()).sum::<f64>()
                / lum.len() as f64)
                .exp() as f32;
            let mut want = (0.14 / key).log2().clamp(-1.5, 1.5);
            want = want.min((1.3 / pct(0.99).max(1e-4)).log2());
            ev += auto_ev * want;
        }
        let exposure = ev.exp2();
        let gains = wb.map(|g| g * exposure);

        // Tone curve: levels (auto contrast, whites, blacks), shoulder, S-curve, fade.
        let tone = &r.tone;
        let (contrast, whites, blacks, fade, auto_t) = (
            c(tone.contrast, -1.0, 1.0),
            c(tone.whites, -1.0, 1.0),
            c(tone.blacks, -1.0, 1.0),
            c(tone.fade, 0.0, 1.0),
            c(tone.auto, 0.0, 1.0),
        );
        let p1 = pct(0.01) * exposure;
        let p99 = pct(0.99) * exposure;
        let tone_active = contrast != 0.0
            || whites != 0.0
            || blacks != 0.0
            || fade != 0.0
            || auto_t > 0.0
            || ev > 0.0;
        let tone_lut = tone_active.then(|| {
            let bp = auto_t * p1.min(0.03) * 0.8 - 0.03 * blacks;
            let wp = (1.0 + auto_t * ((p99 / 0.97).clamp(0.6, 1.0) - 1.0)) * (-0.5 * whites).exp2();
            // Only roll off when something can exceed white.
            let knee = if ev > 0.0 || whites > 0.0 || p99 / wp > 1.0 {
                0.8
            } else {
                f32::INFINITY
            };
            let pv = 0.18f32.sqrt();
            let k = 0.07 * contrast;
            let s_curve = monotone_curve(
                &[
                    (0.0, 0.0),
                    (pv * 0.5, pv * 0.5 - k * 0.8),
                    (pv, pv),
                    (pv + (1.0 - pv) * 0.5, pv + (1.0 - pv) * 0.5 + k),
                    (1.0, 1.0),
                ],
                TONE_SAMPLES,
                TONE_MAX,
            );
            (0..TONE_SAMPLES)
                .map(|i| {
                    let v = i as f32 / (TONE_SAMPLES - 1) as f32 * TONE_MAX;
                    let y = v * v;
                    let mut y1 = ((y - bp) / (wp - bp)).max(0.0);
                    if y1 > knee {
                        y1 = knee + (1.0 - knee) * (1.0 - (-(y1 - knee) / (1.0 - knee)).exp());
                    }
                    let v1 = y1.sqrt().min(TONE_MAX);
                    let idx = v1 / TONE_MAX * (TONE_SAMPLES - 1) as f32;
                    let j = (idx as usize).min(TONE_SAMPLES - 2);
                    let f = idx - j as f32;
                    let v2 = (s_curve[j] * (1.0 - f) + s_curve[j + 1] * f).max(0.0);
                    v2 + fade * 0.12 * (1.0 - v2.min(1.0)).powi(2)
                })
                .collect()
        });

        let mono = r.monochrome.as_ref().map(|m| {
            let w = [m.red, m.green, m.blue].map(|v| if v.is_finite() { v } else { 0.0 });
            let sum: f32 = w.iter().sum();
            if sum.abs() < 1e-3 {
                LUMA
            } else {
                w.map(|v| v / sum)
            }
        });

        let g = &r.grade;
        let amount = |t: &Tint| c(t.amount, 0.0, 1.0);
        let grade =
            (amount(&g.shadows) + amount(&g.midtones) + amount(&g.highlights) > 0.0).then(|| {
                let o = |t: &Tint| hue_offset(t.hue).map(|v| v * amount(t) * 0.15);
                (
                    o(&g.shadows),
                    o(&g.midtones),
                    o(&g.highlights),
                    0.5 + 0.2 * c(g.balance, -1.0, 1.0),
                )
            });

        Plan {
            gains,
            highlights: c(tone.highlights, -1.0, 1.0),
            shadows: c(tone.shadows, -1.0, 1.0),
            clarity: c(r.clarity, -1.0, 1.0),
            mono,
            tone_lut,
            vibrance: c(r.vibrance, -1.0, 1.0),
            saturation: c(r.saturation, -1.0, 1.0),
            grade,
            vignette: (
                c(r.vignette.amount, -1.0, 1.0),
                c(r.vignette.midpoint, 0.0, 1.0),
                c(r.vignette.feather, 0.0, 1.0),
            ),
            grain: (c(r.grain.amount, 0.0, 1.0), c(r.grain.size, 0.5, 4.0)),
        }
    }
}
