//! The offline engine's full-resolution pass: every operator of a [`Plan`], fused into one
//! walk over the rows and blended with the original in the same walk.
//!
//! Each row is cut into blocks of [`BLOCK`] pixels, split into one array per channel, and
//! every active operator runs over the whole block as a loop with no branch per pixel
//! (choices are selects), so the compiler vectorises it: 8 pixels per instruction with
//! AVX2, 4 with the SSE2 baseline or NEON. Which instruction set runs is detected at run
//! time ([`Simd`]). Tables (tone curve, vignette, grain lattice) are read per pixel.
//!
//! The arithmetic is the one of a pixel at a time, in the same order (the reference in the
//! tests; Rust never fuses a multiply and an add on its own), so every kernel gives the
//! same picture to the bit.

use crate::engine::filters::GuidedCoefficients;
use crate::error::{check, Cancel, JobError};
use crate::image::{RgbF32, LUMA};
use crate::simd::Simd;
use rayon::prelude::*;

use super::plan::{Plan, TONE_MAX, TONE_SAMPLES};

use crate::display::{compress_block, BLOCK};

/// Entries of the vignette table, indexed by the squared radius over 0..1.
pub(super) const VIG: usize = 4096;

/// Everything the rows share: the plan, and what it costs to work out once per photo.
struct Pass<'a> {
    plan: &'a Plan,
    w: usize,
    intensity: f32,
    base: Option<GuidedCoefficients>,
    columns: Vec<(u32, f32)>,
    spans: Vec<(usize, usize)>,
    tone: Option<&'a [f32; TONE_SAMPLES]>,
    /// Vignette gain by squared radius (`VIG + 1` entries), or `None`.
    vignette: Option<Box<[f32; VIG + 1]>>,
    /// Per column: `dx²` of the vignette (normalised by half the diagonal), padded to
    /// whole blocks.
    dx2: Vec<f32>,
    cy: f32,
    half_diag: f32,
    /// Grain: per column the lattice cell and the position in it, padded to whole blocks.
    grain_ix: Vec<i32>,
    grain_tx: Vec<f32>,
    inv_cell: f32,
    /// Lattice cells across a row, plus the one right of the last.
    grain_cells: usize,
}

/// Per-thread working rows.
#[derive(Default)]
struct Scratch {
    /// The base layer's coefficients for this row (padded to whole blocks), and the
    /// working space of [`GuidedCoefficients::row_with`].
    a: Vec<f32>,
    b: Vec<f32>,
    low: [Vec<f32>; 2],
    /// The grain lattice's rows `grain_row` and the next, interpolated across to every
    /// column (padded to whole blocks). A lattice cell spans several pixel rows and a
    /// thread's rows mostly come in order, so these are made once per lattice row, not
    /// per pixel row; a pixel row then only interpolates between them.
    top: Vec<f32>,
    bot: Vec<f32>,
    grain_row: Option<i32>,
    /// One lattice row's hashed values (working space for `top` and `bot`).
    hashes: Vec<f32>,
}

impl Plan {
    /// [`Plan::apply_blended`] on raw interleaved RGB samples (e.g. shared memory), with
    /// the best kernel this CPU runs.
    pub fn apply_to(
        &self,
        w: usize,
        h: usize,
        data: &mut [f32],
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        self.apply_to_with(w, h, data, intensity, Simd::Best, cancel)
    }

    /// [`Plan::apply_to`] with the kernel `simd` (or the next one down this CPU runs).
    #[doc(hidden)]
    pub fn apply_to_with(
        &self,
        w: usize,
        h: usize,
        data: &mut [f32],
        intensity: f32,
        simd: Simd,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        self.run(w, h, None, data, intensity, simd, cancel)
    }

    /// [`Plan::apply_to`] from `src` into `dst` (the same size): each row is copied in
    /// and edited while it is in cache, where a copy of the whole picture followed by
    /// the pass went over full-size buffers twice more (a plugin's shared memory).
    pub fn apply_into(
        &self,
        w: usize,
        h: usize,
        src: &[f32],
        dst: &mut [f32],
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        self.run(w, h, Some(src), dst, intensity, Simd::Best, cancel)
    }

    /// The pass over `data`, whose rows are first copied from `src` if there is one.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        w: usize,
        h: usize,
        src: Option<&[f32]>,
        data: &mut [f32],
        intensity: f32,
        simd: Simd,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        if let Some(src) = src {
            assert_eq!(src.len(), data.len(), "source and destination sizes");
        }
        let copy_in = |y: usize, row: &mut [f32]| {
            if let Some(src) = src {
                row.copy_from_slice(&src[y * row.len()..][..row.len()]);
            }
        };
        if intensity <= 0.0 || w == 0 || h == 0 {
            data.par_chunks_mut((w * 3).max(1))
                .enumerate()
                .for_each(|(y, row)| copy_in(y, row));
            return Ok(());
        }
        let simd = simd.available();
        let t = std::time::Instant::now();
        let base = self.base_layer(w, h, src.unwrap_or(data), simd);
        tracing::debug!("base layer {:?}", t.elapsed());
        check(cancel)?;
        let pass = Pass::new(self, w, h, intensity, base);
        data.par_chunks_mut(w * 3).enumerate().try_for_each_init(
            Scratch::default,
            |scratch, (y, row)| {
                if y % 64 == 0 {
                    check(cancel)?;
                }
                copy_in(y, row);
                pass.run_row(y, row, scratch, simd);
                Ok(())
            },
        )
    }

    /// Low-resolution fit of the edge-aware base layer of log-luminance, or `None` when no
    /// operator needs it.
    pub(super) fn base_layer(
        &self,
        width: usize,
        height: usize,
        data: &[f32],
        simd: crate::simd::Simd,
    ) -> Option<GuidedCoefficients> {
        if self.highlights == 0.0 && self.shadows == 0.0 && self.clarity == 0.0 {
            return None;
        }
        let diag = ((width * width + height * height) as f32).sqrt();
        let radius = (0.012 * diag).max(2.0);
        let s = ((radius / 8.0) as usize).max(1);
        let (lw, lh) = (width.div_ceil(s), height.div_ceil(s));
        let low = self.log_luma_blocks(width, height, data, s, simd);
        Some(GuidedCoefficients::fit(
            &low,
            lw,
            lh,
            s,
            ((radius / s as f32) as usize).max(1),
            0.04,
        ))
    }

    /// Log-luminance (after the gains) box-averaged over `s`×`s` blocks.
    pub(super) fn log_luma_blocks(
        &self,
        width: usize,
        height: usize,
        data: &[f32],
        s: usize,
        simd: crate::simd::Simd,
    ) -> Vec<f32> {
        let (lw, lh) = (width.div_ceil(s), height.div_ceil(s));
        let gains = self.gains;
        // Box-average log-luminance over s×s blocks: each full row's log-luminance by the
        // vector kernel, then summed into its blocks (per block in the order y, then x).
        (0..lh)
            .into_par_iter()
            .flat_map_iter(|ly| {
                let rows = ly * s..((ly + 1) * s).min(height);
                let mut acc = vec![0f32; lw];
                let mut logs = vec![0f32; width];
                for y in rows.clone() {
                    log_luma_row(
                        &data[y * width * 3..(y + 1) * width * 3],
                        gains,
                        &mut logs,
                        simd,
                    );
                    for (lx, a) in acc.iter_mut().enumerate() {
                        for &v in &logs[lx * s..((lx + 1) * s).min(width)] {
                            *a += v;
                        }
                    }
                }
                let n_rows = rows.len();
                acc.into_iter().enumerate().map(move |(lx, a)| {
                    let n_cols = ((lx + 1) * s).min(width) - lx * s;
                    a / (n_rows * n_cols) as f32
                })
            })
            .collect()
    }

    /// Applies the plan to `img` in place.
    pub fn apply(&self, img: &mut RgbF32, cancel: &Cancel) -> Result<(), JobError> {
        self.apply_blended(img, 1.0, cancel)
    }

    /// Applies the plan in place and blends with the original at `intensity` in the same
    /// pass: `p + intensity · (edit(p) − p)`, exactly what the blend stage computes, without
    /// a second full-resolution buffer.
    pub fn apply_blended(
        &self,
        img: &mut RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        let (w, h) = (img.width, img.height);
        self.apply_to(w, h, &mut img.data, intensity, cancel)
    }
}

impl<'a> Pass<'a> {
    fn new(
        plan: &'a Plan,
        w: usize,
        h: usize,
        intensity: f32,
        base: Option<GuidedCoefficients>,
    ) -> Pass<'a> {
        let padded = w.div_ceil(BLOCK) * BLOCK;
        let columns = base.as_ref().map(|g| g.columns(w)).unwrap_or_default();
        let spans = crate::engine::filters::spans(&columns);
        let diag = ((w * w + h * h) as f32).sqrt();
        let half_diag = diag / 2.0;
        let cx = w as f32 / 2.0;
        let (v_amount, v_mid, v_feather) = plan.vignette;
        let v_end = (v_mid + (1.0 - v_mid) * (0.3 + 0.7 * v_feather)).max(v_mid + 1e-3);
        // Vignette gain as a function of the squared radius: no sqrt or exp per pixel.
        let vignette = (v_amount != 0.0).then(|| {
            let mut t = Box::new([0f32; VIG + 1]);
            for (i, v) in t.iter_mut().enumerate() {
                *v = (v_amount * 1.5 * smoothstep(v_mid, v_end, (i as f32 / VIG as f32).sqrt()))
                    .exp2();
            }
            t
        });
        let dx2 = (0..padded)
            .map(|x| {
                let dx = (x as f32 + 0.5 - cx) / half_diag;
                dx * dx
            })
            .collect();
        let (g_amount, g_size) = plan.grain;
        let grain_cell = (g_size * diag / 3000.0).max(0.5);
        let inv_cell = 1.0 / grain_cell;
        let (mut grain_ix, mut grain_tx) = (Vec::new(), Vec::new());
        let mut grain_cells = 0;
        if g_amount > 0.0 {
            for x in 0..padded {
                let gx = x.min(w - 1) as f32 * inv_cell;
                let ix = gx as i32;
                grain_ix.push(ix);
                grain_tx.push(gx - ix as f32);
            }
            grain_cells = grain_ix.last().map_or(0, |&i| i as usize + 2);
        }
        Pass {
            plan,
            w,
            intensity,
            base,
            columns,
            spans,
            tone: plan
                .tone_lut
                .as_deref()
                .map(|t| t.try_into().expect("tone table size")),
            vignette,
            dx2,
            cy: h as f32 / 2.0,
            half_diag,
            grain_ix,
            grain_tx,
            inv_cell,
            grain_cells,
        }
    }

    /// Runs one row with `simd`, which [`Simd::available`] has checked.
    fn run_row(&self, y: usize, row: &mut [f32], s: &mut Scratch, simd: Simd) {
        self.prepare_row(y, s, simd);
        let (p, s) = (self, &*s);
        crate::simd::dispatch!(simd, Pass::row(p: &Pass, y: usize, row: &mut [f32], s: &Scratch, simd: Simd))
    }

    /// The row's base-layer coefficients and grain lattice, padded to whole blocks.
    fn prepare_row(&self, y: usize, s: &mut Scratch, simd: Simd) {
        if let Some(g) = &self.base {
            let padded = self.w.div_ceil(BLOCK) * BLOCK;
            s.a.resize(padded, 0.0);
            s.b.resize(padded, 0.0);
            let (a, b) = (&mut s.a[..self.w], &mut s.b[..self.w]);
            g.row_with(y, &self.columns, &self.spans, &mut s.low, a, b);
        }
        if self.grain_cells > 0 {
            let gy = y as f32 * self.inv_cell;
            let giy = gy.floor() as i32;
            match s.grain_row {
                Some(r) if r == giy => {}
                Some(r) if r + 1 == giy => {
                    std::mem::swap(&mut s.top, &mut s.bot);
                    self.lattice_row(giy + 1, &mut s.hashes, &mut s.bot, simd);
                }
                _ => {
                    self.lattice_row(giy, &mut s.hashes, &mut s.top, simd);
                    self.lattice_row(giy + 1, &mut s.hashes, &mut s.bot, simd);
                }
            }
            s.grain_row = Some(giy);
        }
    }

    /// The grain lattice's row `giy` interpolated to every column (padded to whole
    /// blocks) into `out`.
    fn lattice_row(&self, giy: i32, hashes: &mut Vec<f32>, out: &mut Vec<f32>, simd: Simd) {
        hashes.clear();
        hashes.extend((0..self.grain_cells as i32).map(|ix| hash(ix, giy)));
        out.resize(self.grain_ix.len(), 0.0);
        let last = self.grain_cells as i32 - 2;
        #[inline(always)]
        fn interpolate(
            hashes: &[f32],
            ix: &[i32],
            tx: &[f32],
            last: i32,
            out: &mut [f32],
            simd: Simd,
        ) {
            for ((ix, tx), out) in ix
                .chunks_exact(BLOCK)
                .zip(tx.chunks_exact(BLOCK))
                .zip(out.chunks_exact_mut(BLOCK))
            {
                let mut j = [0i32; BLOCK];
                for i in 0..BLOCK {
                    j[i] = ix[i].clamp(0, last);
                }
                let (mut h0, mut h1) = ([0f32; BLOCK], [0f32; BLOCK]);
                crate::simd::gather_pairs(simd, hashes, &j, &mut h0, &mut h1);
                for i in 0..BLOCK {
                    out[i] = h0[i] + (h1[i] - h0[i]) * tx[i];
                }
            }
        }
        let (ix, tx) = (&self.grain_ix[..], &self.grain_tx[..]);
        crate::simd::dispatch!(simd, interpolate(hashes: &[f32], ix: &[i32], tx: &[f32], last: i32, out: &mut [f32], simd: Simd))
    }

    /// Every operator over one row, block by block.
    #[inline(always)]
    fn row(&self, y: usize, row: &mut [f32], s: &Scratch, simd: Simd) {
        let npx = row.len() / 3;
        let mut x0 = 0;
        while x0 < npx {
            let n = (npx - x0).min(BLOCK);
            let mut px = [[0f32; BLOCK]; 3];
            let part = &mut row[x0 * 3..(x0 + n) * 3];
            crate::simd::split_rgb(simd, part, &mut px);
            let t = self.intensity;
            let orig = if t < 1.0 { Some(px) } else { None };
            self.block(y, x0, &mut px, s, simd);
            if let Some(orig) = orig {
                for k in 0..3 {
                    for i in 0..BLOCK {
                        px[k][i] = orig[k][i] + t * (px[k][i] - orig[k][i]);
                    }
                }
            }
            crate::simd::merge_rgb(simd, &px, part);
            x0 += n;
        }
    }

    /// The operators, in the recipe's order, over one block (columns `x0..x0 + BLOCK`;
    /// past the row's end the block holds zeros, which every operator takes harmlessly).
    #[inline(always)]
    fn block(&self, y: usize, x0: usize, px: &mut [[f32; BLOCK]; 3], s: &Scratch, simd: Simd) {
        let plan = self.plan;
        let [r, g, b] = px;
        let [l0, l1, l2] = LUMA;
        let gains = plan.gains;
        for i in 0..BLOCK {
            r[i] *= gains[0];
            g[i] *= gains[1];
            b[i] *= gains[2];
        }
        // Highlights, shadows, clarity: move the smooth base, scale the detail.
        if self.base.is_some() {
            let a: &[f32; BLOCK] = s.a[x0..x0 + BLOCK].try_into().unwrap();
            let c: &[f32; BLOCK] = s.b[x0..x0 + BLOCK].try_into().unwrap();
            let (hl, sh, cl) = (plan.highlights, plan.shadows, plan.clarity);
            for i in 0..BLOCK {
                let yl = (l0 * r[i] + l1 * g[i] + l2 * b[i]).max(1e-5);
                let l = fast_log2(yl);
                let bl = a[i] * l + c[i];
                let detail = l - bl;
                let mask_h = smoothstep(-3.32, -0.15, bl);
                let mask_s = 1.0 - smoothstep(-6.64, -2.0, bl);
                let mid = (1.0 - (bl + 2.5).abs() / 4.0).clamp(0.0, 1.0);
                let delta = hl * 1.2 * mask_h + sh * 1.5 * mask_s + 0.8 * cl * mid * detail;
                let ratio = fast_exp2(delta);
                r[i] *= ratio;
                g[i] *= ratio;
                b[i] *= ratio;
            }
        }
        if let Some(m) = plan.mono {
            for i in 0..BLOCK {
                let v = (m[0] * r[i] + m[1] * g[i] + m[2] * b[i]).max(0.0);
                r[i] = v;
                g[i] = v;
                b[i] = v;
            }
        }
        if let Some(lut) = self.tone {
            let (mut yl, mut t, mut j) = ([0f32; BLOCK], [0f32; BLOCK], [0i32; BLOCK]);
            for i in 0..BLOCK {
                yl[i] = (l0 * r[i] + l1 * g[i] + l2 * b[i]).max(0.0);
                t[i] = (yl[i].sqrt() * (1.0 / TONE_MAX)).min(1.0) * (TONE_SAMPLES - 1) as f32;
                // SAFETY: `t` is finite and in 0..TONE_SAMPLES (`max` and `min` drop NaN).
                // Rust's saturating `as` would be built one lane at a time.
                j[i] = unsafe { t[i].to_int_unchecked::<i32>() }.clamp(0, TONE_SAMPLES as i32 - 2);
            }
            let (mut lo, mut hi) = ([0f32; BLOCK], [0f32; BLOCK]);
            crate::simd::gather_pairs(simd, &lut[..], &j, &mut lo, &mut hi);
            for i in 0..BLOCK {
                let f = t[i] - j[i] as f32;
                let v = lo[i] * (1.0 - f) + hi[i] * f;
                let y2 = v * v;
                let q = y2 / yl[i];
                let lit = yl[i] > 1e-6;
                r[i] = if lit { r[i] * q } else { y2 };
                g[i] = if lit { g[i] * q } else { y2 };
                b[i] = if lit { b[i] * q } else { y2 };
            }
        }
        if plan.vibrance != 0.0 || plan.saturation != 0.0 {
            let (vibrance, saturation) = (plan.vibrance, plan.saturation);
            let boost = vibrance > 0.0;
            for i in 0..BLOCK {
                let yl = l0 * r[i] + l1 * g[i] + l2 * b[i];
                let max = r[i].max(g[i]).max(b[i]);
                let min = r[i].min(g[i]).min(b[i]);
                let sat = if max > 1e-5 {
                    ((max - min) / max).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let skin = if r[i] > g[i] && g[i] > b[i] { 0.5 } else { 1.0 };
                let unsat = 1.0 - sat;
                let vib = if boost {
                    1.0 + vibrance * (unsat * unsat) * skin
                } else {
                    1.0 + vibrance
                };
                let mut f = vib * (1.0 + saturation);
                // Stay inside the working gamut: no channel may go negative.
                for c in [r[i], g[i], b[i]] {
                    let d = c - yl;
                    if d < 0.0 && yl + d * f < 0.0 {
                        f = f.min(yl / -d);
                    }
                }
                r[i] = yl + (r[i] - yl) * f;
                g[i] = yl + (g[i] - yl) * f;
                b[i] = yl + (b[i] - yl) * f;
            }
        }
        if let Some((os, om, oh, split)) = plan.grade {
            let (inv_s, inv_h) = (1.0 / split, 1.0 / (1.0 - split));
            for i in 0..BLOCK {
                let v = (l0 * r[i] + l1 * g[i] + l2 * b[i]).max(0.0).sqrt().min(1.0);
                let ws = (1.0 - v * inv_s).clamp(0.0, 1.0);
                let ws = ws * ws;
                let wh = ((v - split) * inv_h).clamp(0.0, 1.0);
                let wh = wh * wh;
                let wm = (1.0 - ws - wh).max(0.0);
                for (k, c) in [&mut r[i], &mut g[i], &mut b[i]].into_iter().enumerate() {
                    let q = c.max(0.0).sqrt() + ws * os[k] + wm * om[k] + wh * oh[k];
                    *c = q.max(0.0) * q.max(0.0);
                }
            }
        }
        if let Some(vig) = &self.vignette {
            let dy = (y as f32 + 0.5 - self.cy) / self.half_diag;
            let dy2 = dy * dy;
            let dx2: &[f32; BLOCK] = self.dx2[x0..x0 + BLOCK].try_into().unwrap();
            let mut k = [0i32; BLOCK];
            for i in 0..BLOCK {
                let r2 = (dx2[i] + dy2).min(1.0);
                // SAFETY: `r2` is finite and in 0..=1 (`min` drops NaN); see the tone's.
                k[i] = unsafe { (r2 * VIG as f32).to_int_unchecked::<i32>() }.clamp(0, VIG as i32);
            }
            let mut gain = [0f32; BLOCK];
            crate::simd::gather(simd, &vig[..], &k, &mut gain);
            for i in 0..BLOCK {
                r[i] *= gain[i];
                g[i] *= gain[i];
                b[i] *= gain[i];
            }
        }
        if self.grain_cells > 0 {
            let amount = plan.grain.0;
            let gy = y as f32 * self.inv_cell;
            let gty = gy - gy.floor();
            let top: &[f32; BLOCK] = s.top[x0..x0 + BLOCK].try_into().unwrap();
            let bot: &[f32; BLOCK] = s.bot[x0..x0 + BLOCK].try_into().unwrap();
            for i in 0..BLOCK {
                let (up, down) = (top[i], bot[i]);
                let n = up + (down - up) * gty;
                let yl = (l0 * r[i] + l1 * g[i] + l2 * b[i]).max(0.0);
                let v = yl.sqrt();
                let vc = v.min(1.0);
                let v2 = (v + n * amount * 0.12 * 4.0 * vc * (1.0 - vc)).max(0.0);
                let q = v2 * v2 / yl;
                let lit = yl > 1e-6;
                r[i] = if lit { r[i] * q } else { r[i] };
                g[i] = if lit { g[i] * q } else { g[i] };
                b[i] = if lit { b[i] * q } else { b[i] };
            }
        }
        // Into the display cube along the hue.
        compress_block(r, g, b);
    }
}

/// `log2` of each pixel's luminance after `gains` (at least 1e-5), for the base layer.
pub(super) fn log_luma_row(row: &[f32], gains: [f32; 3], out: &mut [f32], simd: Simd) {
    #[inline(always)]
    fn plain(row: &[f32], gains: [f32; 3], out: &mut [f32]) {
        let k = [LUMA[0] * gains[0], LUMA[1] * gains[1], LUMA[2] * gains[2]];
        for (o, p) in out.iter_mut().zip(row.chunks_exact(3)) {
            *o = fast_log2((k[0] * p[0] + k[1] * p[1] + k[2] * p[2]).max(1e-5));
        }
    }
    crate::simd::dispatch!(simd, plain(row: &[f32], gains: [f32; 3], out: &mut [f32]))
}

#[inline(always)]
pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    // A multiplication by the reciprocal, which the compiler works out once for constant
    // edges: a division per pixel costs several multiplications' time.
    let t = ((x - e0) * (1.0 / (e1 - e0))).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// log2 for positive normal floats, to ~1e-6: exponent from the bits, an odd series in
/// (m-1)/(m+1) for the mantissa. Several times faster than `f32::log2`, accurate far
/// beyond what a tone adjustment can show, and free of branches, so it vectorises.
#[inline(always)]
pub(super) fn fast_log2(x: f32) -> f32 {
    let bits = x.max(f32::MIN_POSITIVE).to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    e as f32 + t * (2.885_39 + t2 * (0.961_797 + t2 * (0.577_078 + t2 * 0.412_199)))
}

/// 2^x to ~2e-5 relative, for |x| < 126 (NaN gives 2^-125).
#[inline(always)]
#[allow(clippy::manual_clamp)]
pub(super) fn fast_exp2(x: f32) -> f32 {
    // `max` and `min` drop NaN (`clamp` keeps it).
    let x = x.max(-125.0).min(125.0);
    // floor without libm: baseline x86-64 has no SSE4.1 `roundss`, so `f32::floor` is a call.
    // SAFETY: `x` is finite and within ±125. (Rust's saturating `as` would be built one
    // lane at a time in a vectorised loop.)
    let t = unsafe { x.to_int_unchecked::<i32>() };
    let i = (if (t as f32) > x { t - 1 } else { t }) as f32;
    let f = x - i;
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_1 + f * (0.009_618_13 + f * (0.001_333_36 + f * 0.000_154_0)))));
    // SAFETY: `i` is a whole number within -126..=125.
    let e = unsafe { i.to_int_unchecked::<i32>() };
    f32::from_bits(((e + 127) as u32) << 23) * p
}

/// Deterministic noise in [-1, 1]: the same photo always gets the same grain.
pub(super) fn hash(x: i32, y: i32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343) ^ (y as u32).wrapping_mul(0xd816_3841);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h & 0xffff) as f32 / 32767.5 - 1.0
}
