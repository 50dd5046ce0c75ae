//! A bilateral grid of local affine colour transforms (Chen et al., "Bilateral Guided
//! Upsampling", 2016): fitted on the preview, sliced at full resolution.
//!
//! Each node holds a 3×4 affine map `d = M·s + b` for the pixels near it in space *and*
//! in brightness, so a curve that lifts shadows and holds highlights, or a grade that
//! treats skin and sky differently, is a different affine map per brightness bin. Because
//! the maps act on the full-resolution pixel itself, every bit of the camera's detail goes
//! through them; only the *edit* is low resolution.
//!
//! Values are in the transfer's domain (`sqrt` of linear light, see `super`), where
//! engine edits made on gamma-encoded pictures are close to affine and errors weigh like
//! they look.

use rayon::prelude::*;

/// Luma weights of the guide (Rec. 2020), applied to `sqrt`-domain RGB.
pub const GUIDE: [f32; 3] = [0.2627, 0.6780, 0.0593];

/// Floats per node: a 3×4 affine map, column-major by input (`[m_r.., m_g.., m_b.., b..]`),
/// so `out[c] = k[c]·r + k[3+c]·g + k[6+c]·b + k[9+c]`.
pub const K: usize = 12;

/// The identity map.
pub const IDENTITY: [f32; K] = [1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0.];

/// Accumulated statistics per node: Σw, Σw·s (3), Σw·s sᵀ (6), Σw·d (3), Σw·s dᵀ (9),
/// and two zeros, so a node's statistics are three whole 8-wide vectors.
const STATS: usize = 24;

/// Where the guide of a pixel lands.
#[inline(always)]
pub fn guide(s: &[f32]) -> f32 {
    (GUIDE[0] * s[0] + GUIDE[1] * s[1] + GUIDE[2] * s[2]).clamp(0.0, 1.0)
}

/// A fitted grid.
#[derive(Clone, Debug)]
pub struct Grid {
    /// Nodes across.
    pub gx: usize,
    /// Nodes down.
    pub gy: usize,
    /// Brightness bins.
    pub gz: usize,
    /// `gy × gx × gz` nodes, `K` floats each.
    pub nodes: Vec<[f32; K]>,
}

/// How finely to fit: one node every `cell` preview pixels, `bins` brightness levels.
#[derive(Clone, Copy, Debug)]
pub struct GridShape {
    /// Nodes across.
    pub gx: usize,
    /// Nodes down.
    pub gy: usize,
    /// Brightness bins.
    pub gz: usize,
}

impl GridShape {
    /// The resolution for a preview of `w`×`h`: a node every 8 preview pixels (about
    /// 128×85 for a 1024-px preview) and 16 brightness bins. Finer grids start fitting
    /// JPEG noise; coarser ones miss local edits such as clarity (the prototype: 16×16×8
    /// 25 dB, 64×43×8 29 dB, 128×85×16 33.5 dB before the residual).
    pub fn for_preview(w: usize, h: usize) -> GridShape {
        GridShape {
            gx: (w as f32 / 8.0).round().max(2.0) as usize,
            gy: (h as f32 / 8.0).round().max(2.0) as usize,
            gz: 16,
        }
    }

    /// A coarser shape (for the prior the fine fit falls back to).
    pub fn coarser(self, f: usize) -> GridShape {
        GridShape {
            gx: (self.gx / f).max(2),
            gy: (self.gy / f).max(2),
            gz: (self.gz / 2).max(2),
        }
    }
}

/// Continuous node coordinate of pixel centre `i` of `n` on an axis of `g` nodes.
#[inline(always)]
pub fn node_coord(i: usize, n: usize, g: usize) -> f32 {
    ((i as f32 + 0.5) * g as f32 / n as f32 - 0.5).clamp(0.0, (g - 1) as f32)
}

/// Splits a clamped coordinate into a lower index (so that `i0 + 1` exists) and a weight.
#[inline(always)]
pub fn split(c: f32, g: usize) -> (usize, f32) {
    let i0 = (c as usize).min(g - 2);
    (i0, c - i0 as f32)
}

/// Precomputed per-column positions for slicing rows of width `w`.
pub fn columns(w: usize, g: usize) -> Vec<(u32, f32)> {
    (0..w)
        .map(|x| {
            let (i, f) = split(node_coord(x, w, g), g);
            (i as u32, f)
        })
        .collect()
}

impl Grid {
    /// A grid that maps everything through one affine map.
    pub fn constant(shape: GridShape, k: [f32; K]) -> Grid {
        Grid {
            gx: shape.gx,
            gy: shape.gy,
            gz: shape.gz,
            nodes: vec![k; shape.gx * shape.gy * shape.gz],
        }
    }

    #[inline(always)]
    fn idx(&self, x: usize, y: usize, z: usize) -> usize {
        (y * self.gx + x) * self.gz + z
    }

    /// Fits `dst ≈ grid(src)` by ridge-regularised least squares per node.
    ///
    /// `weight` (optional, per pixel) lets the caller ignore pixels (outside the aligned
    /// area, or changed content). Statistics are accumulated once at the finest level and
    /// pooled into a pyramid of coarser grids down to one global map; each level is solved
    /// with the next coarser one as its prior, pulled toward it with strength
    /// `eps + kappa / n`. Slopes a node's own pixels do not determine — a flat patch says
    /// nothing about how other colours would map — thus come from the neighbourhood, so
    /// full-resolution colours absent from the preview still map sensibly.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        shape: GridShape,
        src: &[f32],
        dst: &[f32],
        weight: Option<&[f32]>,
        w: usize,
        h: usize,
        eps: f32,
        kappa: f32,
    ) -> Grid {
        let t0 = std::time::Instant::now();
        let fine = Stats::accumulate(shape, src, dst, weight, w, h);
        super::trace::trace("grid accumulate", t0);
        let mut levels = vec![fine];
        while {
            let l = levels.last().expect("one level");
            l.gx > 1 || l.gy > 1 || l.gz > 1
        } {
            let l = levels.last().expect("one level");
            let next = l.pool(4, 2);
            levels.push(next);
        }
        let mut prior = Grid {
            gx: 1,
            gy: 1,
            gz: 1,
            nodes: vec![IDENTITY],
        };
        // The root gets a tiny ridge only: with every pixel it is well determined.
        super::trace::trace("grid pool", t0);
        for (i, level) in levels.iter().rev().enumerate() {
            let (e, k) = if i == 0 { (1e-6, 0.0) } else { (eps, kappa) };
            prior = level.solve(&prior, e, k);
        }
        super::trace::trace("grid solve", t0);
        prior
    }

    /// The maps along brightness at normalised position (`u`, `v`, 0..1), bilinearly
    /// interpolated in space. With [`Grid::along`] this is trilinear interpolation split
    /// in two, so a finer level's solve interpolates its prior in space once per node
    /// column, not once per node.
    fn column(&self, u: f32, v: f32, out: &mut Vec<[f32; K]>) {
        let axis = |t: f32, g: usize| -> (usize, usize, f32) {
            if g == 1 {
                return (0, 0, 0.0);
            }
            let (i0, f) = split(t.clamp(0.0, 1.0) * (g - 1) as f32, g);
            (i0, i0 + 1, f)
        };
        let (i0, i1, fx) = axis(u, self.gx);
        let (j0, j1, fy) = axis(v, self.gy);
        out.clear();
        for k in 0..self.gz {
            let mut m = [0f32; K];
            for (j, wy) in [(j0, 1.0 - fy), (j1, fy)] {
                for (i, wx) in [(i0, 1.0 - fx), (i1, fx)] {
                    let n = &self.nodes[self.idx(i, j, k)];
                    for c in 0..K {
                        m[c] += wx * wy * n[c];
                    }
                }
            }
            out.push(m);
        }
    }

    /// A [`Grid::column`] linearly interpolated at normalised brightness `z`.
    fn along(column: &[[f32; K]], z: f32) -> [f32; K] {
        if column.len() == 1 {
            return column[0];
        }
        let (k0, f) = split(z.clamp(0.0, 1.0) * (column.len() - 1) as f32, column.len());
        let mut m = [0f32; K];
        for c in 0..K {
            m[c] = column[k0][c] + f * (column[k0 + 1][c] - column[k0][c]);
        }
        m
    }

    /// One row of the grid interpolated at node-row coordinate `v` (`gx × gz` maps), the
    /// first half of slicing: rows share it, so the per-pixel work is bilinear, not
    /// trilinear.
    pub fn row_slice(&self, v: f32, out: &mut Vec<[f32; K]>) {
        let (j0, fy) = split(v, self.gy);
        out.clear();
        let a = &self.nodes[j0 * self.gx * self.gz..(j0 + 1) * self.gx * self.gz];
        let b = &self.nodes[(j0 + 1) * self.gx * self.gz..(j0 + 2) * self.gx * self.gz];
        out.extend(a.iter().zip(b).map(|(na, nb)| {
            let mut m = [0f32; K];
            for c in 0..K {
                m[c] = na[c] + fy * (nb[c] - na[c]);
            }
            m
        }));
    }

    /// Applies the grid to a preview-sized image (same size as the fit), for residuals
    /// and the live re-blend.
    pub fn apply(&self, src: &[f32], w: usize, h: usize) -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        let cols = columns(w, self.gx);
        out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
            let mut slice = Vec::new();
            self.row_slice(node_coord(y, h, self.gy), &mut slice);
            for (x, o) in row.chunks_exact_mut(3).enumerate() {
                let s = &src[(y * w + x) * 3..][..3];
                let q = slice_pixel(&slice, self.gz, cols[x], s);
                o.copy_from_slice(&q);
            }
        });
        out
    }
}

/// Per-node sufficient statistics; additive, so coarser levels are sums of finer ones.
struct Stats {
    gx: usize,
    gy: usize,
    gz: usize,
    data: Vec<f32>,
}

impl Stats {
    fn accumulate(
        shape: GridShape,
        src: &[f32],
        dst: &[f32],
        weight: Option<&[f32]>,
        w: usize,
        h: usize,
    ) -> Stats {
        let (gx, gy, gz) = (shape.gx, shape.gy, shape.gz);
        let plane = gx * gz * STATS;
        let xnear: Vec<usize> = (0..w).map(|x| nearest(x, w, gx)).collect();
        // Preview rows by their nearest node row: each node row is one task writing its
        // own part of `data`, so threads never share a node and nothing is summed after.
        let mut first_row = vec![h; gy + 1];
        for y in (0..h).rev() {
            first_row[nearest(y, h, gy)] = y;
        }
        for j in (0..gy).rev() {
            first_row[j] = first_row[j].min(first_row[j + 1]);
        }
        let mut data = vec![0f32; gy * plane];
        data.par_chunks_mut(plane).enumerate().for_each(|(j, acc)| {
            let rows = first_row[j]..first_row[j + 1];
            let job = NodeRow {
                src,
                dst,
                weight,
                w,
                gz,
                xnear: &xnear,
            };
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features were just detected on this CPU.
                    unsafe { job.accumulate_avx2(rows, acc) };
                } else {
                    job.accumulate(rows, acc);
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            job.accumulate(rows, acc);
            // The spatial tent across, while the node row is in cache.
            blur_121(acc, gx, gz * STATS, &mut Vec::new());
        });
        // The tent down, and a little spread along brightness: a node whose bin holds few
        // pixels borrows from its neighbours' before falling back to the coarser level.
        let data = blur_down_and_z(&data, gx, gy, gz);
        Stats { gx, gy, gz, data }
    }

    /// Sums blocks of `f`×`f` nodes and `fz` bins.
    fn pool(&self, f: usize, fz: usize) -> Stats {
        let (gx, gy, gz) = (
            self.gx.div_ceil(f),
            self.gy.div_ceil(f),
            self.gz.div_ceil(fz),
        );
        let mut data = vec![0f32; gx * gy * gz * STATS];
        for j in 0..self.gy {
            for i in 0..self.gx {
                for k in 0..self.gz {
                    let s = &self.data[((j * self.gx + i) * self.gz + k) * STATS..][..STATS];
                    let d = ((j / f * gx + i / f) * gz + k / fz) * STATS;
                    for (a, b) in data[d..d + STATS].iter_mut().zip(s) {
                        *a += b;
                    }
                }
            }
        }
        Stats { gx, gy, gz, data }
    }

    fn solve(&self, prior: &Grid, eps: f32, kappa: f32) -> Grid {
        let (gx, gy, gz) = (self.gx, self.gy, self.gz);
        let norm = |i: usize, g: usize| {
            if g > 1 {
                i as f32 / (g - 1) as f32
            } else {
                0.5
            }
        };
        let mut nodes = vec![IDENTITY; gx * gy * gz];
        nodes
            .par_chunks_mut(gx * gz)
            .enumerate()
            .for_each(|(j, row)| {
                let mut column = Vec::with_capacity(prior.gz);
                for i in 0..gx {
                    // The prior's maps at this (x, y), once for all brightness bins.
                    prior.column(norm(i, gx), norm(j, gy), &mut column);
                    for k in 0..gz {
                        let st = &self.data[((j * gx + i) * gz + k) * STATS..][..STATS];
                        let p = Grid::along(&column, norm(k, gz));
                        row[i * gz + k] = solve_node(st, &p, eps, kappa);
                    }
                }
            });
        Grid { gx, gy, gz, nodes }
    }
}

/// One node row's share of the statistics: the preview rows nearest to it.
struct NodeRow<'a> {
    src: &'a [f32],
    dst: &'a [f32],
    weight: Option<&'a [f32]>,
    w: usize,
    gz: usize,
    xnear: &'a [usize],
}

impl NodeRow<'_> {
    /// The same loop with explicit AVX2 + FMA: a pixel's 24 statistics are built as three
    /// 8-wide products of permuted `[s, d, 1]` vectors and added to its two bins with six
    /// fused multiply-adds (built as scalars, they went through the stack and the wide
    /// loads stalled on the narrow stores).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_avx2(&self, rows: std::ops::Range<usize>, acc: &mut [f32]) {
        use std::arch::x86_64::*;
        let (src, dst, weight, w, gz, xnear) =
            (self.src, self.dst, self.weight, self.w, self.gz, self.xnear);
        let last = xnear.iter().copied().max().unwrap_or(0);
        assert!(rows.end * w * 3 <= src.len().min(dst.len()) && xnear.len() >= w);
        assert!(acc.len() >= ((last + 1) * gz) * STATS && gz >= 2);
        if let Some(v) = weight {
            assert!(v.len() >= rows.end * w);
        }
        let idx = |a: [i32; 8]| _mm256_setr_epi32(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
        // Lanes of `v = [s0 s1 s2 d0 d1 d2 1 0]`.
        let (a0, b0) = (idx([6, 0, 1, 2, 0, 0, 0, 1]), idx([6, 6, 6, 6, 0, 1, 2, 1]));
        let (a1, b1) = (idx([1, 2, 3, 4, 5, 0, 0, 0]), idx([2, 2, 6, 6, 6, 3, 4, 5]));
        let (a2, b2) = (idx([1, 1, 1, 2, 2, 2, 7, 7]), idx([3, 4, 5, 3, 4, 5, 7, 7]));
        let zmax = (gz - 1) as f32;
        let (sp, dp, ap) = (src.as_ptr(), dst.as_ptr(), acc.as_mut_ptr());
        for y in rows {
            for x in 0..w {
                let p = y * w + x;
                let wt = weight.map_or(1.0, |v| *v.get_unchecked(p));
                if wt <= 0.0 {
                    continue;
                }
                let (s, d) = (sp.add(p * 3), dp.add(p * 3));
                let v =
                    _mm256_setr_ps(*s, *s.add(1), *s.add(2), *d, *d.add(1), *d.add(2), 1.0, 0.0);
                let st0 = _mm256_mul_ps(
                    _mm256_permutevar8x32_ps(v, a0),
                    _mm256_permutevar8x32_ps(v, b0),
                );
                let st1 = _mm256_mul_ps(
                    _mm256_permutevar8x32_ps(v, a1),
                    _mm256_permutevar8x32_ps(v, b1),
                );
                let st2 = _mm256_mul_ps(
                    _mm256_permutevar8x32_ps(v, a2),
                    _mm256_permutevar8x32_ps(v, b2),
                );
                let g = guide(std::slice::from_raw_parts(s, 3)) * zmax;
                let k0 = (g as usize).min(gz - 2);
                let fz = g - k0 as f32;
                let cell = ap.add((*xnear.get_unchecked(x) * gz + k0) * STATS);
                let (w0, w1) = (_mm256_set1_ps(wt * (1.0 - fz)), _mm256_set1_ps(wt * fz));
                for (k, st) in [st0, st1, st2].into_iter().enumerate() {
                    let a = cell.add(8 * k);
                    let b = cell.add(STATS + 8 * k);
                    _mm256_storeu_ps(a, _mm256_fmadd_ps(w0, st, _mm256_loadu_ps(a)));
                    _mm256_storeu_ps(b, _mm256_fmadd_ps(w1, st, _mm256_loadu_ps(b)));
                }
            }
        }
    }

    #[inline(always)]
    fn accumulate(&self, rows: std::ops::Range<usize>, acc: &mut [f32]) {
        let (src, dst, weight, w, gz, xnear) =
            (self.src, self.dst, self.weight, self.w, self.gz, self.xnear);
        for y in rows {
            for x in 0..w {
                let p = y * w + x;
                let wt = weight.map_or(1.0, |v| v[p]);
                if wt <= 0.0 {
                    continue;
                }
                let s = &src[p * 3..p * 3 + 3];
                let d = &dst[p * 3..p * 3 + 3];
                let st: [f32; STATS] = [
                    1.0,
                    s[0],
                    s[1],
                    s[2],
                    s[0] * s[0],
                    s[0] * s[1],
                    s[0] * s[2],
                    s[1] * s[1],
                    s[1] * s[2],
                    s[2] * s[2],
                    d[0],
                    d[1],
                    d[2],
                    s[0] * d[0],
                    s[0] * d[1],
                    s[0] * d[2],
                    s[1] * d[0],
                    s[1] * d[1],
                    s[1] * d[2],
                    s[2] * d[0],
                    s[2] * d[1],
                    s[2] * d[2],
                    0.0,
                    0.0,
                ];
                // Nearest node in space, linear in brightness; the spatial tent comes
                // from blurring the statistics afterwards (4× fewer updates per pixel
                // than splatting to four nodes).
                let i = xnear[x];
                let (k0, fz) = split(guide(s) * (gz - 1) as f32, gz);
                let base = (i * gz + k0) * STATS;
                let (w0, w1) = (wt * (1.0 - fz), wt * fz);
                let cell = &mut acc[base..base + 2 * STATS];
                let (a, b) = cell.split_at_mut(STATS);
                for k in 0..STATS {
                    a[k] += w0 * st[k];
                    b[k] += w1 * st[k];
                }
            }
        }
    }
}

/// The affine map for one pixel from a row slice: bilinear in (x, brightness).
#[inline(always)]
pub fn slice_pixel(slice: &[[f32; K]], gz: usize, col: (u32, f32), s: &[f32]) -> [f32; 3] {
    let (i0, fx) = (col.0 as usize, col.1);
    let zc = guide(s) * (gz - 1) as f32;
    let k0 = (zc as usize).min(gz - 2);
    let fz = zc - k0 as f32;
    let base = i0 * gz + k0;
    let (n00, n01) = (&slice[base], &slice[base + 1]);
    let (n10, n11) = (&slice[base + gz], &slice[base + gz + 1]);
    let w00 = (1.0 - fx) * (1.0 - fz);
    let w01 = (1.0 - fx) * fz;
    let w10 = fx * (1.0 - fz);
    let w11 = fx * fz;
    let mut m = [0f32; K];
    for c in 0..K {
        m[c] = w00 * n00[c] + w01 * n01[c] + w10 * n10[c] + w11 * n11[c];
    }
    [
        m[0] * s[0] + m[3] * s[1] + m[6] * s[2] + m[9],
        m[1] * s[0] + m[4] * s[1] + m[7] * s[2] + m[10],
        m[2] * s[0] + m[5] * s[1] + m[8] * s[2] + m[11],
    ]
}

/// The node nearest to pixel `i` of `n` on an axis of `g` nodes.
#[inline(always)]
fn nearest(i: usize, n: usize, g: usize) -> usize {
    (node_coord(i, n, g) + 0.5) as usize
}

/// `[1 2 1]/4` along a run of `n` items of `len` floats each, in place (ends clamped).
/// `scratch` holds two items; callers blurring many runs reuse it.
fn blur_121(v: &mut [f32], n: usize, len: usize, scratch: &mut Vec<f32>) {
    if n < 2 {
        return;
    }
    scratch.resize(2 * len, 0.0);
    // The previous item's value before it was blurred, and the current one's.
    let (mut prev, mut cur) = scratch.split_at_mut(len);
    prev.copy_from_slice(&v[..len]);
    for i in 0..n {
        cur.copy_from_slice(&v[i * len..(i + 1) * len]);
        let (here, rest) = v[i * len..].split_at_mut(len);
        let next = if i + 1 < n { &rest[..len] } else { &*cur };
        for (((o, &p), &c), &nx) in here.iter_mut().zip(&*prev).zip(&*cur).zip(next) {
            *o = 0.25 * p + 0.5 * c + 0.25 * nx;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
}

/// `[1 2 1]/4` down the node rows into a new array, then along brightness within each
/// node of the new row while it is in cache.
fn blur_down_and_z(stats: &[f32], gx: usize, gy: usize, gz: usize) -> Vec<f32> {
    let plane = gx * gz * STATS;
    let mut out = vec![0f32; stats.len()];
    out.par_chunks_mut(plane).enumerate().for_each(|(j, row)| {
        let (u, d) = (j.saturating_sub(1), (j + 1).min(gy - 1));
        let rows = |k: usize| &stats[k * plane..(k + 1) * plane];
        for (((o, &a), &m), &b) in row.iter_mut().zip(rows(u)).zip(rows(j)).zip(rows(d)) {
            *o = 0.25 * a + 0.5 * m + 0.25 * b;
        }
        let mut scratch = Vec::new();
        for node in row.chunks_exact_mut(gz * STATS) {
            blur_121(node, gz, STATS, &mut scratch);
        }
    });
    out
}

/// Solves one node: slopes from the covariance (ridge toward the prior's), offset from
/// the means, so the node reproduces its pixels' mean exactly.
fn solve_node(st: &[f32], prior: &[f32; K], eps: f32, kappa: f32) -> [f32; K] {
    let n = st[0] as f64;
    if n < 1e-3 {
        return *prior;
    }
    let ms = [st[1] as f64 / n, st[2] as f64 / n, st[3] as f64 / n];
    let md = [st[10] as f64 / n, st[11] as f64 / n, st[12] as f64 / n];
    let ss = |a: usize, b: usize| -> f64 {
        let idx = match (a.min(b), a.max(b)) {
            (0, 0) => 4,
            (0, 1) => 5,
            (0, 2) => 6,
            (1, 1) => 7,
            (1, 2) => 8,
            _ => 9,
        };
        st[idx] as f64 / n - ms[a] * ms[b]
    };
    let lambda = eps as f64 + kappa as f64 / n;
    // C·X = B, C = cov(s) + λI (3×3 SPD), B = cov(s, d) + λ·M_prior.
    let mut c = [[0f64; 3]; 3];
    let mut b = [[0f64; 3]; 3];
    for a in 0..3 {
        for e in 0..3 {
            c[a][e] = ss(a, e) + if a == e { lambda } else { 0.0 };
        }
        for o in 0..3 {
            // prior slope from input a to output o: prior[a*3 + o]
            b[a][o] =
                st[13 + a * 3 + o] as f64 / n - ms[a] * md[o] + lambda * prior[a * 3 + o] as f64;
        }
    }
    let Some(inv) = invert3(&c) else {
        return *prior;
    };
    let mut out = [0f32; K];
    for a in 0..3 {
        for o in 0..3 {
            let v: f64 = (0..3).map(|e| inv[a][e] * b[e][o]).sum();
            out[a * 3 + o] = v as f32;
        }
    }
    for o in 0..3 {
        let pred: f64 = (0..3).map(|a| out[a * 3 + o] as f64 * ms[a]).sum();
        out[9 + o] = (md[o] - pred) as f32;
    }
    out
}

pub(super) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if !det.is_finite() || det.abs() < 1e-18 {
        return None;
    }
    let d = 1.0 / det;
    Some([
        [
            (m[1][1] * m[2][2] - m[1][2] * m[2][1]) * d,
            (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * d,
            (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * d,
        ],
        [
            (m[1][2] * m[2][0] - m[1][0] * m[2][2]) * d,
            (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * d,
            (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * d,
        ],
        [
            (m[1][0] * m[2][1] - m[1][1] * m[2][0]) * d,
            (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * d,
            (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * d,
        ],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smooth_picture(w: usize, h: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let (u, t) = (x as f32 / w as f32, y as f32 / h as f32);
                v.push((0.2 + 0.6 * u + 0.1 * (t * 9.0).sin()).clamp(0.0, 1.0));
                v.push((0.3 + 0.5 * t + 0.1 * (u * 7.0).cos()).clamp(0.0, 1.0));
                v.push((0.1 + 0.4 * u * t + 0.2 * ((u + t) * 5.0).sin().abs()).clamp(0.0, 1.0));
            }
        }
        v
    }

    #[test]
    fn a_global_affine_map_is_recovered_exactly_everywhere() {
        let (w, h) = (256, 170);
        let src = smooth_picture(w, h);
        let m = [
            0.9f32, 0.05, 0.0, 0.1, 0.8, 0.05, 0.0, 0.1, 1.1, 0.03, -0.02, 0.01,
        ];
        let dst: Vec<f32> = src
            .chunks(3)
            .flat_map(|s| {
                [
                    m[0] * s[0] + m[3] * s[1] + m[6] * s[2] + m[9],
                    m[1] * s[0] + m[4] * s[1] + m[7] * s[2] + m[10],
                    m[2] * s[0] + m[5] * s[1] + m[8] * s[2] + m[11],
                ]
            })
            .collect();
        let shape = GridShape::for_preview(w, h);
        let g = Grid::fit(shape, &src, &dst, None, w, h, 1e-4, 1e-3);
        let out = g.apply(&src, w, h);
        let worst = out
            .iter()
            .zip(&dst)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "worst error {worst}");
    }
}
