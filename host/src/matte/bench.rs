//! The cut-out benchmark: a subject with a known alpha matte — a soft-edged shape with a
//! few hundred hair-like strands, one to three pixels wide — cut from one real photo and
//! pasted onto another, at full resolution. A segmentation model working on the preview can
//! at best answer the matte's coverage at preview size; the table compares that matte only
//! upscaled with the same matte refined on the full-resolution composite, against the truth.

use std::time::Instant;

use rayon::prelude::*;

use super::score::{score, Scores};
use super::{refine, Matte, Refine};
use crate::image::RgbF32;
use crate::transfer::fidelity::mirror_tile;

/// A deterministic pseudo-random sequence (the scene must be the same on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// The true matte at `w`×`h`: a wavy blob in the middle and `strands` curved hairs
/// leaving its edge, anti-aliased.
pub fn truth(w: usize, h: usize, strands: usize) -> Vec<f32> {
    let (cx, cy) = (w as f32 * 0.5, h as f32 * 0.52);
    let base_r = h as f32 * 0.28;
    let radius = |t: f32| base_r * (1.0 + 0.08 * (3.0 * t).sin() + 0.05 * (7.0 * t + 1.0).sin());
    let mut alpha = vec![0f32; w * h];
    alpha.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (x, a) in row.iter_mut().enumerate() {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let d = (dx * dx + dy * dy).sqrt();
            let t = dy.atan2(dx);
            // One pixel of anti-aliasing across the shape's edge.
            *a = (radius(t) - d + 0.5).clamp(0.0, 1.0);
        }
    });
    let mut rng = Rng(0x5eed);
    let scale = h as f32 / 4000.0;
    for _ in 0..strands {
        let t = rng.next() * std::f32::consts::TAU;
        let r0 = radius(t) - 2.0;
        let (sx, sy) = (cx + r0 * t.cos(), cy + r0 * t.sin());
        let len = h as f32 * (0.02 + 0.05 * rng.next());
        let bend = (rng.next() - 0.5) * 1.2;
        let width = (1.0 + 2.0 * rng.next()) * scale.max(0.5);
        let strength = 0.75 + 0.25 * rng.next();
        let steps = (len * 2.0) as usize;
        for k in 0..=steps {
            let s = k as f32 / steps as f32;
            let ang = t + bend * s;
            let (px, py) = (sx + len * s * ang.cos(), sy + len * s * ang.sin());
            // Strands thin out towards their tips.
            let half = 0.5 * width * (1.0 - 0.6 * s);
            let reach = half + 1.0;
            let (x0, x1) = (
                (px - reach).floor().max(0.0) as usize,
                ((px + reach).ceil() as usize).min(w),
            );
            let (y0, y1) = (
                (py - reach).floor().max(0.0) as usize,
                ((py + reach).ceil() as usize).min(h),
            );
            for y in y0..y1 {
                for x in x0..x1 {
                    let d = ((x as f32 + 0.5 - px).powi(2) + (y as f32 + 0.5 - py).powi(2)).sqrt();
                    let cover = (half - d + 0.5).clamp(0.0, 1.0) * strength;
                    let a = &mut alpha[y * w + x];
                    *a = a.max(cover);
                }
            }
        }
    }
    alpha
}

/// `alpha·fg + (1 − alpha)·bg`, linear light.
pub fn composite(fg: &RgbF32, bg: &RgbF32, alpha: &[f32]) -> RgbF32 {
    let mut out = bg.clone();
    out.data
        .par_chunks_mut(3)
        .zip(fg.data.par_chunks(3))
        .zip(alpha.par_iter())
        .for_each(|((o, f), &a)| {
            for k in 0..3 {
                o[k] += a * (f[k] - o[k]);
            }
        });
    out
}

/// What the best model on a `preview`-pixel preview answers: the true coverage there,
/// quantised to 8 bits as a PNG mask carries it.
pub fn model_answer(truth: &[f32], w: usize, h: usize, preview: usize) -> Matte {
    let s = preview as f64 / w.max(h) as f64;
    let (pw, ph) = (
        ((w as f64 * s).round() as usize).max(1),
        ((h as f64 * s).round() as usize).max(1),
    );
    // The truth as a grey picture, area-averaged by the same code as every preview.
    let grey = RgbF32::new(w, h, truth.iter().flat_map(|&a| [a, a, a]).collect());
    let small = crate::resample::resize_area(&grey, pw, ph);
    Matte {
        width: pw,
        height: ph,
        alpha: small
            .data
            .chunks_exact(3)
            .map(|p| (p[0] * 255.0).round() / 255.0)
            .collect(),
    }
}

/// One line of the table.
pub struct Row {
    /// What was scored.
    pub name: &'static str,
    /// Its scores against the truth.
    pub scores: Scores,
    /// Milliseconds it took (0 for the upscale reference's own cost, not measured).
    pub ms: f64,
}

/// The table for `fg` pasted on `bg` at `w`×`h`.
pub fn run(fg: &RgbF32, bg: &RgbF32, w: usize, h: usize, preview: usize) -> Vec<Row> {
    let fg = mirror_tile(fg, w, h);
    let bg = mirror_tile(bg, w, h);
    let truth = truth(w, h, 400);
    let photo = composite(&fg, &bg, &truth);
    drop((fg, bg));
    let answer = model_answer(&truth, w, h, preview);
    let tol = (w.max(h) / 2000).max(2);
    let t = Instant::now();
    let up = answer.upsample(w, h);
    let up_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let refined = refine(&photo, &answer, Refine::default());
    let refine_ms = t.elapsed().as_secs_f64() * 1e3;
    vec![
        Row {
            name: "upscaled (bilinear)",
            scores: score(&up, &truth, w, h, tol),
            ms: up_ms,
        },
        Row {
            name: "refined (colour line)",
            scores: score(&refined, &truth, w, h, tol),
            ms: refine_ms,
        },
    ]
}

/// The table's lines.
pub fn print(rows: &[Row], w: usize, h: usize) {
    println!(
        "cut-out at {:.1} MP (a subject with 400 strands on another photo, matte from a 1024 px preview)",
        (w * h) as f64 / 1e6
    );
    println!(
        "{:<22} {:>7} {:>11} {:>11} {:>9}",
        "matte", "IoU", "boundary F", "edge error", "ms"
    );
    for r in rows {
        println!(
            "{:<22} {:>7.4} {:>11.4} {:>11.4} {:>9.0}",
            r.name, r.scores.iou, r.scores.boundary_f, r.scores.edge_error, r.ms
        );
    }
}
