//! Edge-aware smoothing for the tone operators: the fast guided filter.
//!
//! He & Sun, "Fast Guided Filter" (2015): the guided filter's local linear coefficients are
//! computed on a subsampled guide and upsampled, which keeps edges (the output follows the
//! full-resolution guide) at a cost independent of the radius. Used on log-luminance as a
//! self-guided filter, it gives the "base layer" that highlight/shadow and clarity
//! adjustments move without halos around edges.

use rayon::prelude::*;

/// Mean over a `(2r+1)²` window with edge clamping of the window (normalised by the
/// number of pixels actually inside), separable running sums: O(n) for any radius.
pub fn box_mean(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; w * h];
    tmp.par_chunks_mut(w)
        .zip(src.par_chunks(w))
        .for_each(|(dst, row)| {
            let mut acc = 0f64;
            let mut prefix = Vec::with_capacity(w + 1);
            prefix.push(0f64);
            for &v in row {
                acc += v as f64;
                prefix.push(acc);
            }
            for (x, d) in dst.iter_mut().enumerate() {
                let a = x.saturating_sub(r);
                let b = (x + r + 1).min(w);
                *d = ((prefix[b] - prefix[a]) / (b - a) as f64) as f32;
            }
        });
    let mut out = vec![0f32; w * h];
    // Vertical pass over columns in blocks of rows' width: transpose-free via per-column
    // prefix sums computed row by row.
    let mut prefix = vec![0f64; w * (h + 1)];
    for y in 0..h {
        let (done, rest) = prefix.split_at_mut((y + 1) * w);
        let prev = &done[y * w..];
        let cur = &mut rest[..w];
        for x in 0..w {
            cur[x] = prev[x] + tmp[y * w + x] as f64;
        }
    }
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let a = y.saturating_sub(r);
        let b = (y + r + 1).min(h);
        let n = (b - a) as f64;
        for (x, o) in row.iter_mut().enumerate() {
            *o = ((prefix[b * w + x] - prefix[a * w + x]) / n) as f32;
        }
    });
    out
}

/// The coefficients of a fast guided filter, stored at low resolution.
pub struct GuidedCoefficients {
    /// Low-resolution width.
    pub w: usize,
    /// Low-resolution height.
    pub h: usize,
    /// Subsampling factor (full = low · s).
    pub s: usize,
    /// Slope `a` per low-res pixel.
    pub a: Vec<f32>,
    /// Offset `b` per low-res pixel.
    pub b: Vec<f32>,
}

/// The runs of [`GuidedCoefficients::columns`] that share a low-resolution column, as
/// `(start, end)` ranges of full-resolution columns.
pub fn spans(columns: &[(u32, f32)]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (x, &(x0, _)) in columns.iter().enumerate() {
        match spans.last_mut() {
            Some(last) if columns[last.0].0 == x0 => last.1 = x + 1,
            _ => spans.push((x, x + 1)),
        }
    }
    spans
}

impl GuidedCoefficients {
    /// Fits the self-guided filter to a guide given at low resolution (`guide_low`,
    /// already box-averaged by `s`), with radius `r_low` (low-res pixels) and
    /// regulariser `eps` (in the guide's units squared: edges with a larger local
    /// variance are kept).
    pub fn fit(guide_low: &[f32], w: usize, h: usize, s: usize, r_low: usize, eps: f32) -> Self {
        let sq: Vec<f32> = guide_low.iter().map(|v| v * v).collect();
        let mean_i = box_mean(guide_low, w, h, r_low);
        let mean_ii = box_mean(&sq, w, h, r_low);
        let mut a = vec![0f32; w * h];
        let mut b = vec![0f32; w * h];
        for i in 0..w * h {
            let var = (mean_ii[i] - mean_i[i] * mean_i[i]).max(0.0);
            a[i] = var / (var + eps);
            b[i] = mean_i[i] - a[i] * mean_i[i];
        }
        GuidedCoefficients {
            w,
            h,
            s,
            a: box_mean(&a, w, h, r_low),
            b: box_mean(&b, w, h, r_low),
        }
    }

    /// Horizontal interpolation positions for full width `w`: for each column, the left
    /// low-res index and the weight of the right one. Shared by every row.
    pub fn columns(&self, w: usize) -> Vec<(u32, f32)> {
        let s = self.s as f32;
        (0..w)
            .map(|x| {
                let fx = ((x as f32 + 0.5) / s - 0.5).clamp(0.0, (self.w - 1) as f32);
                let x0 = (fx as usize).min(self.w.saturating_sub(2));
                (x0 as u32, if self.w > 1 { fx - x0 as f32 } else { 0.0 })
            })
            .collect()
    }

    /// Bilinearly upsampled `(a, b)` for full-resolution row `y`, written into the slices
    /// (length = full width), using `columns` from [`Self::columns`]. Vertical interpolation
    /// happens once per low-res column, so the per-pixel cost is one lerp per coefficient.
    pub fn row(&self, y: usize, columns: &[(u32, f32)], a_out: &mut [f32], b_out: &mut [f32]) {
        let spans = spans(columns);
        self.row_with(
            y,
            columns,
            &spans,
            &mut [Vec::new(), Vec::new()],
            a_out,
            b_out,
        );
    }

    /// [`Self::row`] with the low-resolution rows' working space `low` (kept between rows
    /// by the caller), over `spans` ([`spans`] of the same `columns`): each span's
    /// columns share their low-resolution pair, so the inner loop is a plain one over the
    /// weights, which vectorises (a read of the pair per column was a sixth of the
    /// offline engine's pass). The same values as [`Self::row`].
    pub fn row_with(
        &self,
        y: usize,
        columns: &[(u32, f32)],
        spans: &[(usize, usize)],
        low: &mut [Vec<f32>; 2],
        a_out: &mut [f32],
        b_out: &mut [f32],
    ) {
        let [a_low, b_low] = low;
        self.low_rows(y, a_low, b_low);
        for &(start, end) in spans {
            let x0 = columns[start].0 as usize;
            let (a0, a1, b0, b1) = (a_low[x0], a_low[x0 + 1], b_low[x0], b_low[x0 + 1]);
            let cols = &columns[start..end];
            for ((ao, bo), &(_, t)) in a_out[start..end]
                .iter_mut()
                .zip(&mut b_out[start..end])
                .zip(cols)
            {
                *ao = a0 + (a1 - a0) * t;
                *bo = b0 + (b1 - b0) * t;
            }
        }
    }

    /// The low-resolution `(a, b)` interpolated to full-resolution row `y`, with the last
    /// value repeated once more (so column `x0 + 1` exists for every `x0` of
    /// [`Self::columns`], however narrow).
    fn low_rows(&self, y: usize, a_low: &mut Vec<f32>, b_low: &mut Vec<f32>) {
        let s = self.s as f32;
        let fy = ((y as f32 + 0.5) / s - 0.5).clamp(0.0, (self.h - 1) as f32);
        let y0 = fy as usize;
        let y1 = (y0 + 1).min(self.h - 1);
        let ty = fy - y0 as f32;
        let lerp_rows = |v: &[f32], out: &mut Vec<f32>| {
            let (r0, r1) = (
                &v[y0 * self.w..(y0 + 1) * self.w],
                &v[y1 * self.w..(y1 + 1) * self.w],
            );
            out.clear();
            out.extend(r0.iter().zip(r1).map(|(a, b)| a + (b - a) * ty));
            out.push(out[self.w - 1]);
        };
        lerp_rows(&self.a, a_low);
        lerp_rows(&self.b, b_low);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_mean_matches_brute_force() {
        let (w, h, r) = (37, 23, 4);
        let src: Vec<f32> = (0..w * h).map(|i| ((i * 31) % 17) as f32).collect();
        let fast = box_mean(&src, w, h, r);
        for y in 0..h {
            for x in 0..w {
                let (mut s, mut n) = (0f32, 0f32);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        s += src[yy * w + xx];
                        n += 1.0;
                    }
                }
                assert!((fast[y * w + x] - s / n).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn guided_filter_keeps_a_step_edge_and_flattens_texture() {
        // Left half dark with fine texture, right half bright: the base must stay a step.
        let (w, h) = (64, 16);
        let guide: Vec<f32> = (0..w * h)
            .map(|i| {
                let x = i % w;
                let tex = if (x + i / w) % 2 == 0 { 0.05 } else { -0.05 };
                (if x < w / 2 { -4.0 } else { 0.0 }) + tex
            })
            .collect();
        let g = GuidedCoefficients::fit(&guide, w, h, 1, 4, 0.04);
        let (mut a, mut b) = (vec![0f32; w], vec![0f32; w]);
        g.row(8, &g.columns(w), &mut a, &mut b);
        let base: Vec<f32> = (0..w).map(|x| a[x] * guide[8 * w + x] + b[x]).collect();
        assert!(
            (base[w / 2 - 3] - -4.0).abs() < 0.2,
            "dark side {}",
            base[w / 2 - 3]
        );
        assert!(
            (base[w / 2 + 2] - 0.0).abs() < 0.2,
            "bright side {}",
            base[w / 2 + 2]
        );
        // Texture is mostly gone from the base.
        assert!((base[10] - base[11]).abs() < 0.05);
    }

    /// The coefficients' rows, upsampled span by span, are the bilinear interpolation of
    /// the low-resolution grid column by column, to the bit: at a 24 MP photo's factor, at
    /// a factor that does not divide the width, and for a one-column grid.
    #[test]
    fn rows_upsampled_by_spans_are_the_bilinear_interpolation() {
        let photo = crate::image::test_photo().to_luma32f();
        let (pw, ph) = (photo.width() as usize, photo.height() as usize);
        for (w, s) in [(6000usize, 10usize), (997, 7), (5, 8)] {
            let (lw, lh) = (w.div_ceil(s), ph.div_ceil(s).max(2));
            let guide: Vec<f32> = (0..lw * lh)
                .map(|i| {
                    photo.as_raw()[(i / lw % ph) * pw + i % lw % pw]
                        .max(1e-4)
                        .log2()
                })
                .collect();
            let g = GuidedCoefficients::fit(&guide, lw, lh, s, 3, 0.04);
            let columns = g.columns(w);
            for y in [0, s * lh / 2 + 3, s * lh - 1] {
                let (mut a, mut b) = (vec![0f32; w], vec![0f32; w]);
                g.row(y, &columns, &mut a, &mut b);
                let fy = ((y as f32 + 0.5) / s as f32 - 0.5).clamp(0.0, (lh - 1) as f32);
                let (y0, ty) = (fy as usize, fy - (fy as usize) as f32);
                let y1 = (y0 + 1).min(lh - 1);
                let at =
                    |v: &[f32], x: usize| v[y0 * lw + x] + (v[y1 * lw + x] - v[y0 * lw + x]) * ty;
                for (x, &(x0, t)) in columns.iter().enumerate() {
                    let (x0, x1) = (x0 as usize, (x0 as usize + 1).min(lw - 1));
                    let want_a = at(&g.a, x0) + (at(&g.a, x1) - at(&g.a, x0)) * t;
                    let want_b = at(&g.b, x0) + (at(&g.b, x1) - at(&g.b, x0)) * t;
                    assert_eq!(
                        (a[x], b[x]),
                        (want_a, want_b),
                        "w {w} s {s} row {y} column {x}"
                    );
                }
            }
        }
    }
}
