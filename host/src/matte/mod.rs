//! Cut-outs: the matte a segmentation model answers for the preview, carried to the
//! full-resolution photo.
//!
//! A model that works on a 1024-pixel preview sees a 24 MP photo's hair strand, two pixels
//! wide, as a faint smudge: upscaling its matte gives soft, misplaced edges. The refinement
//! keeps the coarse matte where it is sure, and elsewhere reads alpha from the
//! full-resolution photo's colour, between the subject's and the background's colours
//! nearby (the colour-line model of sampling-based matting, [`refine`]). A guided filter
//! (He et al.) was tried first: fitted to an upscaled matte it keeps the matte's blur (its
//! regression only reproduces the matte's mean on each side of an edge): on the unit
//! test's disc it removed a quarter of the upscaled matte's edge error, this removes 95 %.
//!
//! Depends on `image`, `resample` and the transfer's box blur — never on the pipeline.

pub mod bench;
pub mod score;

use rayon::prelude::*;

use crate::image::RgbF32;
use crate::transfer::blur::box_blur;

/// A coverage map: 0 background, 1 subject, values between on soft edges.
#[derive(Clone, Debug, PartialEq)]
pub struct Matte {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` coverages in 0..=1.
    pub alpha: Vec<f32>,
}

/// Why an engine's answer is not a matte.
#[derive(Debug, thiserror::Error)]
pub enum MatteError {
    /// Not a picture at all.
    #[error("the answer is not a picture the matte can be read from: {0}")]
    Undecodable(String),
    /// Too small to mean anything.
    #[error("the matte is only {0}×{1} pixels")]
    TooSmall(u32, u32),
    /// Every pixel the same: nothing was segmented.
    #[error("the matte is empty: the model found no subject")]
    Empty,
}

impl Matte {
    /// Reads a segmentation model's answer: the alpha channel of an RGBA cut-out, or the
    /// grey levels of a mask (a coverage, not a gamma-encoded picture: code values are
    /// taken as they are).
    pub fn from_answer(bytes: &[u8]) -> Result<Matte, MatteError> {
        let img =
            image::load_from_memory(bytes).map_err(|e| MatteError::Undecodable(e.to_string()))?;
        let (w, h) = (img.width(), img.height());
        if w < 8 || h < 8 {
            return Err(MatteError::TooSmall(w, h));
        }
        let alpha: Vec<f32> = if img.color().has_alpha() {
            img.to_rgba32f().pixels().map(|p| p[3]).collect()
        } else {
            img.to_luma32f().into_raw()
        };
        // A cut-out whose alpha is all opaque carries its matte nowhere we can read.
        let (lo, hi) = alpha
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        if hi - lo < 1.0 / 255.0 {
            return Err(MatteError::Empty);
        }
        Ok(Matte {
            width: w as usize,
            height: h as usize,
            alpha: alpha.into_iter().map(|v| v.clamp(0.0, 1.0)).collect(),
        })
    }

    /// Bilinear resize to `w`×`h` (pixel centres aligned): what "only upscaled" means.
    pub fn upsample(&self, w: usize, h: usize) -> Vec<f32> {
        let mut out = vec![0f32; w * h];
        let cols = sample_axis(self.width, w);
        out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
            let (y0, y1, fy) = sample(self.height, h, y);
            let (r0, r1) = (
                &self.alpha[y0 * self.width..(y0 + 1) * self.width],
                &self.alpha[y1 * self.width..(y1 + 1) * self.width],
            );
            for (o, &(x0, x1, fx)) in row.iter_mut().zip(&cols) {
                let top = r0[x0] + fx * (r0[x1] - r0[x0]);
                let bottom = r1[x0] + fx * (r1[x1] - r1[x0]);
                *o = top + fy * (bottom - top);
            }
        });
        out
    }
}

/// Source indices and weight for output index `o` of `n_out`, from `n_in` samples.
fn sample(n_in: usize, n_out: usize, o: usize) -> (usize, usize, f32) {
    let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).clamp(0.0, (n_in - 1) as f32);
    let i0 = s.floor() as usize;
    (i0, (i0 + 1).min(n_in - 1), s - i0 as f32)
}

fn sample_axis(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    (0..n_out).map(|o| sample(n_in, n_out, o)).collect()
}

/// Refinement settings.
#[derive(Clone, Copy, Debug)]
pub struct Refine {
    /// Coarse coverage below which a pixel is sure background, above `1 − sure` sure
    /// subject; between, alpha is estimated from the photo's colours.
    pub sure: f32,
    /// How different (squared distance in the guide's units) the subject's and the
    /// background's colours must be before the photo is trusted over the coarse matte.
    pub contrast: f32,
}

impl Default for Refine {
    fn default() -> Self {
        // Chosen on `bench --matte` (24 MP, 400 strands): sure 0.02 / 0.05 / 0.1 gave
        // boundary F 0.860 / 0.883 / 0.871 and IoU 0.978 / 0.981 / 0.984.
        Refine {
            sure: 0.05,
            contrast: 0.004,
        }
    }
}

/// The guide's value of a linear working-space sample: square root, so shadows count.
fn guide(v: f32) -> f32 {
    v.max(0.0).sqrt()
}

/// The full-resolution matte of `photo` from a coarse one, following the photo's edges.
///
/// Where the coarse matte is sure (0 or 1) it is kept. Elsewhere every pixel is seen as a
/// mix of the subject's and the background's colour there — the mean colours of the sure
/// pixels nearest to it, found at twice the preview's size by push-pull over a pyramid, so
/// a hair strand far out in the background still meets the subject's colour — and alpha is
/// its position on the line between the two (the colour-line model of sampling-based
/// matting). Where the two colours are alike, the coarse matte is kept instead.
pub fn refine(photo: &RgbF32, coarse: &Matte, opts: Refine) -> Vec<f32> {
    let (w, h) = (photo.width, photo.height);
    let scale = (2.0 * coarse.width.max(coarse.height) as f64 / w.max(h) as f64).min(1.0);
    let lw = ((w as f64 * scale).round() as usize).max(1);
    let lh = ((h as f64 * scale).round() as usize).max(1);
    let low = crate::resample::resize_area(photo, lw, lh);
    let p = coarse.upsample(lw, lh);

    // Sure subject and sure background colours, as sums with their weights.
    let mut acc = vec![0f32; lw * lh * 8];
    acc.par_chunks_mut(8)
        .zip(low.data.par_chunks(3))
        .zip(p.par_iter())
        .for_each(|((a, i), &p)| {
            let g = [guide(i[0]), guide(i[1]), guide(i[2])];
            let (f, b) = (
                (p >= 1.0 - opts.sure) as u8 as f32,
                (p <= opts.sure) as u8 as f32,
            );
            a.copy_from_slice(&[
                f * g[0],
                f * g[1],
                f * g[2],
                f,
                b * g[0],
                b * g[1],
                b * g[2],
                b,
            ]);
        });
    box_blur(&mut acc, lw, lh, 8, 2, 1);
    let fb = push_pull(acc, lw, lh);

    let cols = sample_axis(lw, w);
    let ccols = sample_axis(coarse.width, w);
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w)
        .zip(photo.data.par_chunks(3 * w))
        .enumerate()
        .for_each(|(y, (row, px))| {
            let (y0, y1, fy) = sample(lh, h, y);
            let (cy0, cy1, cfy) = sample(coarse.height, h, y);
            let cw = coarse.width;
            for (x, (o, i)) in row.iter_mut().zip(px.chunks_exact(3)).enumerate() {
                let (cx0, cx1, cfx) = ccols[x];
                let c = &coarse.alpha;
                let top = c[cy0 * cw + cx0] + cfx * (c[cy0 * cw + cx1] - c[cy0 * cw + cx0]);
                let bottom = c[cy1 * cw + cx0] + cfx * (c[cy1 * cw + cx1] - c[cy1 * cw + cx0]);
                let pv = top + cfy * (bottom - top);
                if pv <= opts.sure || pv >= 1.0 - opts.sure {
                    *o = pv.clamp(0.0, 1.0);
                    continue;
                }
                let (x0, x1, fx) = cols[x];
                let at = |k: usize| {
                    let g = |yy: usize, xx: usize| fb[(yy * lw + xx) * 6 + k];
                    let t = g(y0, x0) + fx * (g(y0, x1) - g(y0, x0));
                    let b = g(y1, x0) + fx * (g(y1, x1) - g(y1, x0));
                    t + fy * (b - t)
                };
                let f = [at(0), at(1), at(2)];
                let b = [at(3), at(4), at(5)];
                let g = [guide(i[0]), guide(i[1]), guide(i[2])];
                let d = [f[0] - b[0], f[1] - b[1], f[2] - b[2]];
                let dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                let t = ((g[0] - b[0]) * d[0] + (g[1] - b[1]) * d[1] + (g[2] - b[2]) * d[2])
                    / dd.max(1e-12);
                let trust = dd / (dd + opts.contrast);
                *o = (trust * t.clamp(0.0, 1.0) + (1.0 - trust) * pv).clamp(0.0, 1.0);
            }
        });
    out
}

/// Fills every pixel of `acc` (`w`×`h`, per pixel: subject colour sum ×3, its weight,
/// background colour sum ×3, its weight) with the mean colours of the nearest samples:
/// its own where it has enough, else those of ever coarser levels of a 2×2 pyramid
/// (Gortler et al.'s push-pull). Returns 6 means per pixel.
fn push_pull(acc: Vec<f32>, w: usize, h: usize) -> Vec<f32> {
    // Push: sums over 2×2 blocks, level by level.
    let mut levels = vec![(w, h, acc)];
    while {
        let (lw, lh, _) = levels.last().unwrap();
        *lw > 2 && *lh > 2
    } {
        let (lw, lh, data) = levels.last().unwrap();
        let (nw, nh) = (lw.div_ceil(2), lh.div_ceil(2));
        let mut next = vec![0f32; nw * nh * 8];
        next.par_chunks_mut(nw * 8)
            .enumerate()
            .for_each(|(y, row)| {
                for x in 0..nw {
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let (sx, sy) = (2 * x + dx, 2 * y + dy);
                        if sx < *lw && sy < *lh {
                            for k in 0..8 {
                                row[x * 8 + k] += data[(sy * lw + sx) * 8 + k];
                            }
                        }
                    }
                }
            });
        levels.push((nw, nh, next));
    }
    // Pull: from the coarsest level down, each pixel's own mean where its weight is
    // enough (one sample's worth), blended into the coarser level's estimate below that.
    let mut means: Option<(usize, usize, Vec<f32>)> = None;
    for (lw, lh, data) in levels.into_iter().rev() {
        let mut m = vec![0f32; lw * lh * 6];
        let coarser = means.take();
        let cols = coarser.as_ref().map(|(cw, _, _)| sample_axis(*cw, lw));
        m.par_chunks_mut(lw * 6).enumerate().for_each(|(y, row)| {
            for x in 0..lw {
                let s = &data[(y * lw + x) * 8..(y * lw + x) * 8 + 8];
                for side in 0..2 {
                    let (sum, wt) = (&s[side * 4..side * 4 + 3], s[side * 4 + 3]);
                    let own = wt.min(1.0);
                    for k in 0..3 {
                        let mine = if wt > 0.0 { sum[k] / wt } else { 0.0 };
                        let below = match (&coarser, &cols) {
                            (Some((cw, ch, c)), Some(cols)) => {
                                let (x0, x1, fx) = cols[x];
                                let (y0, y1, fy) = sample(*ch, lh, y);
                                let g = |yy: usize, xx: usize| c[(yy * cw + xx) * 6 + side * 3 + k];
                                let t = g(y0, x0) + fx * (g(y0, x1) - g(y0, x0));
                                let b = g(y1, x0) + fx * (g(y1, x1) - g(y1, x0));
                                t + fy * (b - t)
                            }
                            _ => mine,
                        };
                        row[x * 6 + side * 3 + k] = own * mine + (1.0 - own) * below;
                    }
                }
            }
        });
        means = Some((lw, lh, m));
    }
    means.map(|(_, _, m)| m).unwrap_or_default()
}

/// `alpha` at an intensity: 1 keeps the matte, 0 the whole photo, between a partly
/// transparent background.
pub fn at_intensity(alpha: &mut [f32], intensity: f32) {
    alpha
        .par_iter_mut()
        .for_each(|a| *a = 1.0 - intensity * (1.0 - *a));
}

/// The photo over a light checkerboard through `alpha` (what editors show for
/// transparency), for previews.
pub fn over_checkerboard(photo: &mut RgbF32, alpha: &[f32]) {
    let w = photo.width;
    let cell = (w.max(photo.height) / 48).max(4);
    photo
        .data
        .par_chunks_mut(3 * w)
        .zip(alpha.par_chunks(w))
        .enumerate()
        .for_each(|(y, (row, a))| {
            for (x, (px, &a)) in row.chunks_exact_mut(3).zip(a).enumerate() {
                // Light and mid grey in display terms (linear 0.80 and 0.52).
                let bg = if (x / cell + y / cell).is_multiple_of(2) {
                    0.80
                } else {
                    0.52
                };
                for v in px.iter_mut() {
                    *v = bg + a * (*v - bg);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_matte_is_read_from_a_cutouts_alpha_or_a_masks_grey_levels_as_coverage() {
        let mask = image::GrayImage::from_fn(64, 32, |x, _| image::Luma([(x * 4) as u8]));
        let m = Matte::from_answer(&png(mask.clone().into())).unwrap();
        assert_eq!((m.width, m.height), (64, 32));
        // 128 is half coverage, not a gamma-encoded grey (which would be 0.22).
        assert!((m.alpha[32] - 128.0 / 255.0).abs() < 1e-6);
        let cut = image::RgbaImage::from_fn(64, 32, |x, y| {
            image::Rgba([200, 10, 10, mask.get_pixel(x, y)[0]])
        });
        assert_eq!(Matte::from_answer(&png(cut.into())).unwrap(), m);
        let opaque = image::RgbaImage::from_pixel(64, 32, image::Rgba([1, 2, 3, 255]));
        assert!(matches!(
            Matte::from_answer(&png(opaque.into())),
            Err(MatteError::Empty)
        ));
        assert!(matches!(
            Matte::from_answer(b"I cannot do that"),
            Err(MatteError::Undecodable(_))
        ));
    }

    #[test]
    fn refinement_follows_the_photos_edge_where_the_coarse_matte_is_blurred() {
        // A 600×400 photo: a red disc (subject) on a blue-grey ground; the coarse matte is
        // its coverage at 1/6 of the size, so its edge is a 6-pixel ramp once upscaled.
        let (w, h) = (600usize, 400usize);
        let inside = |x: f32, y: f32| ((x - 300.0).powi(2) + (y - 200.0).powi(2)).sqrt() < 120.0;
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let c = if inside(x as f32 + 0.5, y as f32 + 0.5) {
                    [0.6, 0.1, 0.08]
                } else {
                    [0.15, 0.2, 0.3]
                };
                data.extend_from_slice(&c);
            }
        }
        let photo = RgbF32::new(w, h, data);
        let (cw, ch) = (100usize, 67usize);
        let mut alpha = vec![0f32; cw * ch];
        for (i, a) in alpha.iter_mut().enumerate() {
            let (cx, cy) = ((i % cw) as f32, (i / cw) as f32);
            let mut n = 0;
            for sy in 0..6 {
                for sx in 0..6 {
                    let x = (cx + (sx as f32 + 0.5) / 6.0) * w as f32 / cw as f32;
                    let y = (cy + (sy as f32 + 0.5) / 6.0) * h as f32 / ch as f32;
                    n += inside(x, y) as usize;
                }
            }
            *a = n as f32 / 36.0;
        }
        let coarse = Matte {
            width: cw,
            height: ch,
            alpha,
        };
        let truth: Vec<f32> = (0..w * h)
            .map(|i| inside((i % w) as f32 + 0.5, (i / w) as f32 + 0.5) as u8 as f32)
            .collect();
        let err = |m: &[f32]| {
            m.iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
        };
        let up = coarse.upsample(w, h);
        let refined = refine(&photo, &coarse, Refine::default());
        assert!(
            err(&refined) < 0.1 * err(&up),
            "refined {} vs upsampled {}",
            err(&refined),
            err(&up)
        );
        // Far from the edge nothing moves.
        assert!(refined[200 * w + 300] > 0.999 && refined[10 * w + 10] < 0.001);
    }

    #[test]
    fn intensity_makes_the_background_partly_transparent() {
        let mut a = vec![0.0, 0.5, 1.0];
        at_intensity(&mut a, 0.5);
        assert_eq!(a, vec![0.5, 0.75, 1.0]);
    }
}
