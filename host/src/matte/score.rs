//! How close a matte is to the truth: intersection over union of the subject (alpha ≥ ½),
//! the boundary F-measure (how much of each boundary lies within a few pixels of the
//! other's, the measure of the DAVIS and BSDS benchmarks) and the mean alpha error.

use rayon::prelude::*;

/// The scores of one matte against the truth.
#[derive(Clone, Copy, Debug)]
pub struct Scores {
    /// |pred ∩ truth| / |pred ∪ truth| of the subjects.
    pub iou: f64,
    /// Harmonic mean of boundary precision and recall within `tolerance` pixels.
    pub boundary_f: f64,
    /// Mean |alpha − truth| over the pixels where either is neither 0 nor 1 nearby (the
    /// edge band), in alpha units.
    pub edge_error: f64,
}

/// Scores `pred` against `truth` (both `w`×`h`), boundaries matched within `tolerance`
/// pixels.
pub fn score(pred: &[f32], truth: &[f32], w: usize, h: usize, tolerance: usize) -> Scores {
    let p: Vec<bool> = pred.par_iter().map(|&a| a >= 0.5).collect();
    let t: Vec<bool> = truth.par_iter().map(|&a| a >= 0.5).collect();
    let (inter, union) = p
        .par_iter()
        .zip(&t)
        .map(|(&a, &b)| ((a && b) as u64, (a || b) as u64))
        .reduce(|| (0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    let bp = boundary(&p, w, h);
    let bt = boundary(&t, w, h);
    let near_t = dilate(&bt, w, h, tolerance);
    let near_p = dilate(&bp, w, h, tolerance);
    let hits = |b: &[bool], near: &[bool]| {
        let n = b.par_iter().filter(|&&v| v).count() as f64;
        let hit = b.par_iter().zip(near).filter(|(&v, &m)| v && m).count() as f64;
        if n == 0.0 {
            1.0
        } else {
            hit / n
        }
    };
    let precision = hits(&bp, &near_t);
    let recall = hits(&bt, &near_p);
    let boundary_f = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let soft = |a: f32| a > 0.002 && a < 0.998;
    let band: Vec<bool> = pred
        .par_iter()
        .zip(truth)
        .map(|(&a, &b)| soft(a) || soft(b))
        .collect();
    let band = dilate(&band, w, h, 2);
    let (sum, n) = pred
        .par_iter()
        .zip(truth)
        .zip(&band)
        .filter(|(_, &b)| b)
        .map(|((&a, &b), _)| ((a - b).abs() as f64, 1u64))
        .reduce(|| (0.0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    Scores {
        iou: if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        },
        boundary_f,
        edge_error: sum / n.max(1) as f64,
    }
}

/// Subject pixels with a 4-neighbour outside the subject.
fn boundary(m: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut out = vec![false; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (x, o) in row.iter_mut().enumerate() {
            let i = y * w + x;
            if !m[i] {
                continue;
            }
            let out_of = |xx: isize, yy: isize| {
                xx < 0
                    || yy < 0
                    || xx >= w as isize
                    || yy >= h as isize
                    || !m[yy as usize * w + xx as usize]
            };
            let (xi, yi) = (x as isize, y as isize);
            *o = out_of(xi - 1, yi)
                || out_of(xi + 1, yi)
                || out_of(xi, yi - 1)
                || out_of(xi, yi + 1);
        }
    });
    out
}

/// Dilation by a `(2r+1)²` square, separable.
fn dilate(m: &[bool], w: usize, h: usize, r: usize) -> Vec<bool> {
    let mut across = vec![false; w * h];
    across
        .par_chunks_mut(w)
        .zip(m.par_chunks(w))
        .for_each(|(o, row)| {
            // Distance to the last set pixel on the left and the next on the right.
            let mut last = usize::MAX / 2;
            let mut left = vec![usize::MAX; w];
            for x in 0..w {
                if row[x] {
                    last = x;
                }
                left[x] = x.wrapping_sub(last);
            }
            let mut next = usize::MAX / 2;
            for x in (0..w).rev() {
                if row[x] {
                    next = x;
                }
                o[x] = left[x] <= r || next.wrapping_sub(x) <= r;
            }
        });
    let mut out = vec![false; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, o)| {
        let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
        for yy in a..b {
            for (v, s) in o.iter_mut().zip(&across[yy * w..(yy + 1) * w]) {
                *v |= *s;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_separate_a_good_matte_from_a_shifted_one() {
        let (w, h) = (200, 100);
        let disc = |dx: f32| -> Vec<f32> {
            (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f32 - 100.0 - dx, (i / w) as f32 - 50.0);
                    ((x * x + y * y).sqrt() < 30.0) as u8 as f32
                })
                .collect()
        };
        let truth = disc(0.0);
        let same = score(&truth, &truth, w, h, 2);
        assert_eq!(
            (same.iou, same.boundary_f, same.edge_error),
            (1.0, 1.0, 0.0)
        );
        let near = score(&disc(1.0), &truth, w, h, 2);
        assert!(near.boundary_f == 1.0 && near.iou > 0.9, "{near:?}");
        let far = score(&disc(8.0), &truth, w, h, 2);
        assert!(far.boundary_f < 0.5 && far.iou < near.iou, "{far:?}");
    }
}
