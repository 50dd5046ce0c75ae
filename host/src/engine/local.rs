//! The built-in offline engine: a preset's local recipe run as photographic operators.
//!
//! Two steps, a file each, below this one (which only runs them as an [`Engine`]).
//! [`Plan::resolve`] (`plan.rs`) turns the recipe into concrete numbers, measuring the
//! preview for everything automatic (white balance, exposure, contrast), so the result does
//! not depend on resolution. [`Plan::apply`] (`pass.rs`) then runs all operators in one
//! fused, parallel pass over the rows (plus a cheap low-resolution pre-pass for the
//! edge-aware base layer), in the order the recipe documents.
//!
//! Internally "perceptual" means the square root of linear light: close enough to a
//! display gamma for placing curves and tints, and far cheaper than `powf` per pixel.

use luminary_plugin_api::EngineRequest;

use super::contract::{Edited, Engine, JobInfo};
use crate::error::{check, Cancel, JobError};
use crate::image::RgbF32;

mod pass;
mod plan;

pub use plan::Plan;

/// The offline engine.
pub struct LocalEngine;

impl Engine for LocalEngine {
    fn name(&self) -> &str {
        "local"
    }

    fn model(&self) -> String {
        concat!("luminary-local-", env!("CARGO_PKG_VERSION")).to_string()
    }

    fn run(
        &self,
        req: &EngineRequest,
        _job: &JobInfo<'_>,
        mut base: RgbF32,
        preview: &RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<Edited, JobError> {
        let plan = Plan::resolve(&req.recipe, preview);
        check(cancel)?;
        plan.apply_blended(&mut base, intensity, cancel)?;
        Ok(Edited::Blended(base))
    }
}

#[cfg(test)]
mod tests {
    use super::pass::{fast_exp2, fast_log2, hash, smoothstep};
    use super::plan::{monotone_curve, TONE_MAX, TONE_SAMPLES};
    use super::*;
    use crate::display::compress_to_display;
    use crate::image::{luma, LUMA};
    use crate::simd::Simd;
    use luminary_plugin_api::{Grain, Recipe, Tint, Tone};
    use rayon::prelude::*;

    /// The pass one pixel at a time, as it was before the block kernels: the reference
    /// every kernel must reproduce.
    fn reference_apply(
        plan: &Plan,
        w: usize,
        h: usize,
        data: &mut [f32],
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        if intensity <= 0.0 {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let base = plan.base_layer(w, h, data, Simd::Portable);
        tracing::debug!("base layer {:?}", t.elapsed());
        check(cancel)?;
        let columns = base.as_ref().map(|g| g.columns(w)).unwrap_or_default();
        let diag = ((w * w + h * h) as f32).sqrt();
        let half_diag = diag / 2.0;
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let (v_amount, v_mid, v_feather) = plan.vignette;
        let v_end = (v_mid + (1.0 - v_mid) * (0.3 + 0.7 * v_feather)).max(v_mid + 1e-3);
        // Vignette gain as a function of the squared radius: no sqrt or exp per pixel.
        const VIG: usize = 4096;
        let vignette: Vec<f32> = if v_amount != 0.0 {
            (0..=VIG)
                .map(|i| {
                    (v_amount * 1.5 * smoothstep(v_mid, v_end, (i as f32 / VIG as f32).sqrt()))
                        .exp2()
                })
                .collect()
        } else {
            Vec::new()
        };
        let (g_amount, g_size) = plan.grain;
        let grain_cell = (g_size * diag / 3000.0).max(0.5);
        let inv_cell = 1.0 / grain_cell;
        let lut = plan.tone_lut.as_deref();

        data.par_chunks_mut(w * 3)
            .enumerate()
            .try_for_each(|(y, row)| {
                if y % 64 == 0 {
                    check(cancel)?;
                }
                let (mut a_row, mut b_row) = (Vec::new(), Vec::new());
                if let Some(g) = &base {
                    a_row.resize(w, 0.0);
                    b_row.resize(w, 0.0);
                    g.row(y, &columns, &mut a_row, &mut b_row);
                }
                let dy = (y as f32 + 0.5 - cy) / half_diag;
                let dy2 = dy * dy;
                // Grain lattice for this row: two rows of hashed values, refreshed as x moves.
                let gy = y as f32 * inv_cell;
                let (giy, gty) = (gy.floor() as i32, gy - gy.floor());
                let mut cached_ix = i32::MIN;
                let mut lattice = [0f32; 4];
                for (x, p) in row.chunks_exact_mut(3).enumerate() {
                    let orig = [p[0], p[1], p[2]];
                    for k in 0..3 {
                        p[k] *= plan.gains[k];
                    }
                    // Highlights, shadows, clarity: move the smooth base, scale the detail.
                    if base.is_some() {
                        let yl = luma(p).max(1e-5);
                        let l = fast_log2(yl);
                        let bl = a_row[x] * l + b_row[x];
                        let detail = l - bl;
                        let mask_h = smoothstep(-3.32, -0.15, bl);
                        let mask_s = 1.0 - smoothstep(-6.64, -2.0, bl);
                        let mid = (1.0 - (bl + 2.5).abs() / 4.0).clamp(0.0, 1.0);
                        let delta = plan.highlights * 1.2 * mask_h
                            + plan.shadows * 1.5 * mask_s
                            + 0.8 * plan.clarity * mid * detail;
                        let ratio = fast_exp2(delta);
                        for v in p.iter_mut() {
                            *v *= ratio;
                        }
                    }
                    if let Some(m) = plan.mono {
                        let v = (m[0] * p[0] + m[1] * p[1] + m[2] * p[2]).max(0.0);
                        p.fill(v);
                    }
                    if let Some(lut) = lut {
                        let yl = luma(p).max(0.0);
                        let t = (yl.sqrt() * (1.0 / TONE_MAX)).min(1.0) * (TONE_SAMPLES - 1) as f32;
                        let i = (t as usize).min(TONE_SAMPLES - 2);
                        let f = t - i as f32;
                        let v = lut[i] * (1.0 - f) + lut[i + 1] * f;
                        let y2 = v * v;
                        if yl > 1e-6 {
                            let r = y2 / yl;
                            p.iter_mut().for_each(|c| *c *= r);
                        } else {
                            p.fill(y2);
                        }
                    }
                    if plan.vibrance != 0.0 || plan.saturation != 0.0 {
                        let yl = luma(p);
                        let max = p[0].max(p[1]).max(p[2]);
                        let min = p[0].min(p[1]).min(p[2]);
                        let sat = if max > 1e-5 {
                            ((max - min) / max).clamp(0.0, 1.0)
                        } else {
                            0.0
                        };
                        let skin = if p[0] > p[1] && p[1] > p[2] { 0.5 } else { 1.0 };
                        let vib = if plan.vibrance > 0.0 {
                            1.0 + plan.vibrance * (1.0 - sat).powi(2) * skin
                        } else {
                            1.0 + plan.vibrance
                        };
                        let mut f = vib * (1.0 + plan.saturation);
                        // Stay inside the working gamut: no channel may go negative.
                        for k in 0..3 {
                            let d = p[k] - yl;
                            if d < 0.0 && yl + d * f < 0.0 {
                                f = f.min(yl / -d);
                            }
                        }
                        for v in p.iter_mut() {
                            *v = yl + (*v - yl) * f;
                        }
                    }
                    if let Some((os, om, oh, split)) = &plan.grade {
                        let v = luma(p).max(0.0).sqrt().min(1.0);
                        let ws = (1.0 - v * (1.0 / split)).clamp(0.0, 1.0).powi(2);
                        let wh = ((v - split) * (1.0 / (1.0 - split)))
                            .clamp(0.0, 1.0)
                            .powi(2);
                        let wm = (1.0 - ws - wh).max(0.0);
                        for k in 0..3 {
                            let q = p[k].max(0.0).sqrt() + ws * os[k] + wm * om[k] + wh * oh[k];
                            p[k] = q.max(0.0) * q.max(0.0);
                        }
                    }
                    if !vignette.is_empty() {
                        let dx = (x as f32 + 0.5 - cx) / half_diag;
                        let r2 = (dx * dx + dy2).min(1.0);
                        let g = vignette[(r2 * VIG as f32) as usize];
                        p.iter_mut().for_each(|c| *c *= g);
                    }
                    if g_amount > 0.0 {
                        let gx = x as f32 * inv_cell;
                        let ix = gx as i32;
                        if ix != cached_ix {
                            cached_ix = ix;
                            lattice = [
                                hash(ix, giy),
                                hash(ix + 1, giy),
                                hash(ix, giy + 1),
                                hash(ix + 1, giy + 1),
                            ];
                        }
                        let tx = gx - ix as f32;
                        let top = lattice[0] + (lattice[1] - lattice[0]) * tx;
                        let bot = lattice[2] + (lattice[3] - lattice[2]) * tx;
                        let n = top + (bot - top) * gty;
                        let yl = luma(p).max(0.0);
                        let v = yl.sqrt();
                        let vc = v.min(1.0);
                        let v2 = (v + n * g_amount * 0.12 * 4.0 * vc * (1.0 - vc)).max(0.0);
                        if yl > 1e-6 {
                            let r = v2 * v2 / yl;
                            p.iter_mut().for_each(|c| *c *= r);
                        }
                    }
                    compress_to_display(p);
                    if intensity < 1.0 {
                        for k in 0..3 {
                            p[k] = orig[k] + intensity * (p[k] - orig[k]);
                        }
                    }
                }
                Ok(())
            })
    }
    use luminary_plugin_api::{Monochrome, Vignette};

    fn gradient(w: usize, h: usize) -> RgbF32 {
        let data = (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                [0.02 + 0.8 * x * x, 0.02 + 0.6 * x * y, 0.05 + 0.5 * y]
            })
            .collect();
        RgbF32::new(w, h, data)
    }

    fn run(recipe: &Recipe, img: &RgbF32) -> RgbF32 {
        let plan = Plan::resolve(recipe, img);
        let mut out = img.clone();
        plan.apply(&mut out, &Cancel::default()).unwrap();
        out
    }

    fn mean_luma(img: &RgbF32) -> f32 {
        img.data.chunks_exact(3).map(luma).sum::<f32>() / img.pixels() as f32
    }

    /// A real photo at about 1.5 MP in the working space.
    fn photo() -> RgbF32 {
        let img = crate::image::test_photo()
            .resize(1500, 1500, ::image::imageops::FilterType::Triangle)
            .to_rgb32f();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let data = img
            .into_raw()
            .into_iter()
            .map(|v| {
                if v <= 0.04045 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            })
            .collect();
        RgbF32::new(w, h, data)
    }

    /// Recipes with every operator on, each setting drawn across its range.
    fn every_operator(seed: u32) -> Recipe {
        let mut k = seed;
        let mut u = move |lo: f32, hi: f32| {
            k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            lo + (hi - lo) * (k >> 8) as f32 / (1u32 << 24) as f32
        };
        let mut r = Recipe::default();
        r.white_balance.auto = u(0.0, 1.0);
        r.white_balance.temperature = u(-1.0, 1.0);
        r.white_balance.tint = u(-1.0, 1.0);
        r.exposure.ev = u(-1.5, 1.5);
        r.exposure.auto = u(0.0, 1.0);
        r.tone = Tone {
            contrast: u(-1.0, 1.0),
            highlights: u(-1.0, 1.0),
            shadows: u(-1.0, 1.0),
            whites: u(-1.0, 1.0),
            blacks: u(-1.0, 1.0),
            fade: u(0.0, 1.0),
            auto: u(0.0, 1.0),
        };
        r.clarity = u(-1.0, 1.0);
        r.vibrance = u(-1.0, 1.0);
        r.saturation = u(-1.0, 1.0);
        r.grade.shadows = Tint {
            hue: u(0.0, 360.0),
            amount: u(0.0, 1.0),
        };
        r.grade.midtones = Tint {
            hue: u(0.0, 360.0),
            amount: u(0.0, 1.0),
        };
        r.grade.highlights = Tint {
            hue: u(0.0, 360.0),
            amount: u(0.0, 1.0),
        };
        r.grade.balance = u(-1.0, 1.0);
        if seed.is_multiple_of(3) {
            r.monochrome = Some(Monochrome {
                red: u(0.0, 1.0),
                green: u(0.0, 1.0),
                blue: u(0.0, 1.0),
            });
        }
        r.vignette = Vignette {
            amount: u(-1.0, 1.0),
            midpoint: u(0.0, 1.0),
            feather: u(0.0, 1.0),
        };
        r.grain = Grain {
            amount: u(0.0, 1.0),
            size: u(0.5, 4.0),
        };
        r
    }

    /// Every kernel this CPU runs (AVX-512, AVX2, the portable build) gives, for recipes
    /// that use every operator at once, at full and partial intensity, the picture of the
    /// pass one pixel at a time, to the bit: same arithmetic, same order.
    #[test]
    fn every_kernel_gives_the_picture_of_the_pixel_at_a_time_pass() {
        let img = photo();
        let (w, h) = (img.width, img.height);
        let kernels: Vec<Simd> = [Simd::Avx512, Simd::Avx2, Simd::Portable]
            .into_iter()
            .filter(|s| s.available() == *s)
            .collect();
        assert!(kernels.contains(&Simd::Portable));
        for seed in 0..12 {
            let plan = Plan::resolve(&every_operator(seed), &img);
            let intensity = if seed % 2 == 0 { 1.0 } else { 0.6 };
            let mut want = img.data.clone();
            reference_apply(&plan, w, h, &mut want, intensity, &Cancel::default()).unwrap();
            for &simd in &kernels {
                let mut got = img.data.clone();
                plan.apply_to_with(w, h, &mut got, intensity, simd, &Cancel::default())
                    .unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{simd:?}, recipe {seed}: differs from the reference by up to {worst}"
                );
            }
        }
    }

    /// The pass from a source into another buffer (a plugin's shared memory) gives the
    /// picture of copying first and editing in place, to the bit, at every intensity.
    #[test]
    fn applying_into_another_buffer_is_copying_then_applying() {
        let img = photo();
        let (w, h) = (img.width, img.height);
        for (seed, intensity) in [(3, 1.0), (4, 0.6), (5, 0.0)] {
            let plan = Plan::resolve(&every_operator(seed), &img);
            let mut want = img.data.clone();
            plan.apply_to(w, h, &mut want, intensity, &Cancel::default())
                .unwrap();
            let mut got = vec![f32::NAN; img.data.len()];
            plan.apply_into(w, h, &img.data, &mut got, intensity, &Cancel::default())
                .unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "recipe {seed} at intensity {intensity}"
            );
        }
    }

    /// The block averages of log-luminance under the base layer are, with every kernel,
    /// the sums taken one pixel at a time, to the bit.
    #[test]
    fn every_kernel_averages_log_luminance_like_the_direct_loop() {
        let img = photo();
        let (w, h) = (img.width, img.height);
        let plan = Plan::resolve(&every_operator(1), &img);
        let s = 7;
        let mut want = Vec::new();
        for ly in 0..h.div_ceil(s) {
            for lx in 0..w.div_ceil(s) {
                let (mut acc, mut n) = (0f32, 0f32);
                for y in ly * s..((ly + 1) * s).min(h) {
                    for x in lx * s..((lx + 1) * s).min(w) {
                        let p = &img.data[(y * w + x) * 3..][..3];
                        let g = plan.gains;
                        let l =
                            LUMA[0] * g[0] * p[0] + LUMA[1] * g[1] * p[1] + LUMA[2] * g[2] * p[2];
                        acc += fast_log2(l.max(1e-5));
                        n += 1.0;
                    }
                }
                want.push(acc / n);
            }
        }
        for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
            if simd.available() != simd {
                continue;
            }
            let got = plan.log_luma_blocks(w, h, &img.data, s, simd);
            assert_eq!(got.len(), want.len());
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{simd:?}"
            );
        }
    }

    #[test]
    fn empty_recipe_is_the_identity() {
        let img = gradient(64, 48);
        let out = run(&Recipe::default(), &img);
        for (a, b) in out.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn exposure_plus_one_stop_brightens_and_stays_in_range() {
        let img = gradient(64, 48);
        let mut r = Recipe::default();
        r.exposure.ev = 1.0;
        let out = run(&r, &img);
        assert!(mean_luma(&out) > mean_luma(&img) * 1.4);
        assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn monochrome_is_grey_and_vignette_darkens_only_corners() {
        let img = gradient(80, 60);
        let r = Recipe {
            monochrome: Some(Monochrome::default()),
            vignette: Vignette {
                amount: -1.0,
                midpoint: 0.3,
                feather: 0.5,
            },
            ..Recipe::default()
        };
        let out = run(&r, &img);
        for p in out.data.chunks_exact(3) {
            assert!((p[0] - p[1]).abs() < 1e-5 && (p[1] - p[2]).abs() < 1e-5);
        }
        let grey = run(
            &Recipe {
                monochrome: Some(Monochrome::default()),
                ..Recipe::default()
            },
            &img,
        );
        let at = |im: &RgbF32, x: usize, y: usize| im.data[(y * im.width + x) * 3];
        assert!(
            (at(&out, 40, 30) - at(&grey, 40, 30)).abs() < 1e-3,
            "centre unchanged"
        );
        assert!(
            at(&out, 79, 59) < at(&grey, 79, 59) * 0.6,
            "corner darkened"
        );
    }

    #[test]
    fn shadows_lift_dark_areas_more_than_bright_ones() {
        let img = gradient(96, 64);
        let mut r = Recipe::default();
        r.tone.shadows = 1.0;
        let out = run(&r, &img);
        let at = |im: &RgbF32, x: usize, y: usize| luma(&im.data[(y * im.width + x) * 3..][..3]);
        let dark_gain = at(&out, 2, 2) / at(&img, 2, 2);
        let bright_gain = at(&out, 95, 63) / at(&img, 95, 63);
        assert!(dark_gain > 1.5, "dark gain {dark_gain}");
        assert!(bright_gain < 1.1, "bright gain {bright_gain}");
    }

    #[test]
    fn shadow_lift_leaves_no_halo_along_a_hard_edge() {
        // A dark wall against a bright sky, both with fine texture. Lifting shadows must
        // brighten the wall evenly right up to the edge and leave the sky alone: a
        // Gaussian-based local operator would brighten the sky next to the edge (a halo).
        let (w, h) = (400, 100);
        let data = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let tex = 1.0 + 0.05 * (((x * 7 + y * 13) % 5) as f32 - 2.0) / 2.0;
                let v = if x < w / 2 { 0.02 } else { 0.6 } * tex;
                [v, v, v]
            })
            .collect();
        let img = RgbF32::new(w, h, data);
        let mut r = Recipe::default();
        r.tone.shadows = 1.0;
        let out = run(&r, &img);
        let gain = |x: usize| {
            let i = (50 * w + x) * 3;
            out.data[i] / img.data[i]
        };
        let (near_dark, far_dark) = (gain(w / 2 - 3), gain(20));
        let (near_bright, far_bright) = (gain(w / 2 + 3), gain(w - 20));
        assert!(far_dark > 1.8, "shadows not lifted: {far_dark}");
        assert!(
            (near_dark / far_dark - 1.0).abs() < 0.1,
            "dark side uneven at the edge: {near_dark} vs {far_dark}"
        );
        assert!(
            (near_bright - far_bright).abs() < 0.05,
            "halo on the bright side: {near_bright} vs {far_bright}"
        );
    }

    #[test]
    fn fast_log2_and_exp2_match_std() {
        for i in 1..20_000 {
            let x = i as f32 * 0.0005;
            assert!((fast_log2(x) - x.log2()).abs() < 2e-5, "log2({x})");
            let y = (i as f32 - 10_000.0) * 0.001;
            assert!((fast_exp2(y) / y.exp2() - 1.0).abs() < 5e-5, "exp2({y})");
        }
    }

    #[test]
    fn monotone_curve_passes_through_its_points_and_never_decreases() {
        let pts = [(0.0, 0.0), (0.2, 0.1), (0.42, 0.42), (0.7, 0.8), (1.0, 1.0)];
        let t = monotone_curve(&pts, 1001, 1.0);
        assert!(t.windows(2).all(|w| w[1] >= w[0] - 1e-6));
        assert!((t[420] - 0.42).abs() < 1e-3);
    }
}
