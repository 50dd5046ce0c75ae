//! Small box blurs for the fit's preview-sized passes (low-passing before comparing,
//! smoothing the residual and the change mask).
//!
//! The radii here are 2–8 preview pixels, so a direct window sum per pixel — a plain
//! vector loop over whole rows — beats the prefix-sum `box_mean` of the local engine
//! (built for large radii at full resolution), and it works on interleaved channels in
//! place of one plane at a time. Windows are clipped at the borders and normalised by
//! the pixels actually inside, so edges do not darken.

use rayon::prelude::*;

/// A one-channel plane minus its (2r+1)² box mean: its fine detail, texture and noise.
pub fn high_pass(v: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut low = v.to_vec();
    box_blur(&mut low, w, h, 1, r, 1);
    v.par_iter().zip(&low).map(|(a, b)| a - b).collect()
}

/// Blurs `v` (`w`×`h` pixels of `c` interleaved floats) with a `(2r+1)²` box, `passes`
/// times (three passes ≈ a Gaussian of σ ≈ r).
pub fn box_blur(v: &mut [f32], w: usize, h: usize, c: usize, r: usize, passes: usize) {
    assert_eq!(v.len(), w * h * c, "box_blur: size");
    if r == 0 || w == 0 || h == 0 {
        return;
    }
    let row = w * c;
    let mut tmp = vec![0f32; v.len()];
    for _ in 0..passes {
        // Across: into `tmp`.
        tmp.par_chunks_mut(row)
            .zip(v.par_chunks(row))
            .for_each(|(out, src)| across(src, out, w, c, r));
        // Down: back into `v`.
        v.par_chunks_mut(row).enumerate().for_each(|(y, out)| {
            let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
            out.copy_from_slice(&tmp[a * row..(a + 1) * row]);
            for yy in a + 1..b {
                for (o, s) in out.iter_mut().zip(&tmp[yy * row..(yy + 1) * row]) {
                    *o += s;
                }
            }
            let k = 1.0 / (b - a) as f32;
            out.iter_mut().for_each(|o| *o *= k);
        });
    }
}

/// The radius (3σ, rounded up) and the normalised weights of a Gaussian of `sigma`.
fn gaussian_taps(sigma: f32) -> (isize, Vec<f32>) {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    (r, k.iter().map(|x| x / sum).collect())
}

/// Blurs `v` (`w`×`h` pixels of `c` interleaved floats) with a Gaussian of `sigma`
/// pixels (kernel ±3σ), edges clamped: for the small, exact blurs a box cannot give
/// (matching an answer's softness to a fraction of a pixel).
pub fn gaussian(v: &mut [f32], w: usize, h: usize, c: usize, sigma: f32) {
    assert_eq!(v.len(), w * h * c, "gaussian: size");
    if sigma <= 0.0 || w == 0 || h == 0 {
        return;
    }
    let (r, k) = gaussian_taps(sigma);
    let row = w * c;
    let mut tmp = vec![0f32; v.len()];
    let ru = r as usize;
    tmp.par_chunks_mut(row)
        .zip(v.par_chunks(row))
        .for_each(|(out, src)| {
            // Where the window is whole, tap by tap over the row as plain vector loops:
            // each output still sums its taps in the same order, so the same bits as the
            // clamped loop (which was scalar, and most of the texture measure's time).
            let inner = w.saturating_sub(2 * ru);
            if inner > 0 {
                let o = &mut out[ru * c..(ru + inner) * c];
                for (j, kj) in k.iter().enumerate() {
                    for (o, s) in o.iter_mut().zip(&src[j * c..(j + inner) * c]) {
                        *o += kj * s;
                    }
                }
            }
            let edges = if inner > 0 {
                (0..ru).chain(ru + inner..w)
            } else {
                (0..w).chain(0..0)
            };
            for x in edges {
                for (j, kj) in k.iter().enumerate() {
                    let xx = (x as isize + j as isize - r).clamp(0, w as isize - 1) as usize;
                    for ch in 0..c {
                        out[x * c + ch] += kj * src[xx * c + ch];
                    }
                }
            }
        });
    v.par_chunks_mut(row).enumerate().for_each(|(y, out)| {
        out.fill(0.0);
        for (j, kj) in k.iter().enumerate() {
            let yy = (y as isize + j as isize - r).clamp(0, h as isize - 1) as usize;
            for (o, s) in out.iter_mut().zip(&tmp[yy * row..(yy + 1) * row]) {
                *o += kj * s;
            }
        }
    });
}

/// Convolves `v` (`w`×`h` pixels of `c` interleaved floats) with the 5×5 kernel `k` (row
/// by row, centre at `k[12]`), edges clamped: the measured blur of an answer, which no
/// Gaussian matches (see `texture`). Per output row, each tap is one plain vector loop
/// over the row's interior; only the two pixels at each end clamp.
pub fn convolve5(v: &mut [f32], w: usize, h: usize, c: usize, k: &[f32; 25]) {
    assert_eq!(v.len(), w * h * c, "convolve5: size");
    if w == 0 || h == 0 {
        return;
    }
    let row = w * c;
    let src = v.to_vec();
    let inner = w.saturating_sub(4);
    v.par_chunks_mut(row).enumerate().for_each(|(y, out)| {
        out.fill(0.0);
        for j in 0..5 {
            let yy = (y as isize + j as isize - 2).clamp(0, h as isize - 1) as usize;
            let line = &src[yy * row..(yy + 1) * row];
            let taps = &k[j * 5..j * 5 + 5];
            if inner > 0 {
                let o = &mut out[2 * c..(2 + inner) * c];
                for (i, ki) in taps.iter().enumerate() {
                    for (o, s) in o.iter_mut().zip(&line[i * c..(i + inner) * c]) {
                        *o += ki * s;
                    }
                }
            }
            let edges = if inner > 0 {
                (0..2).chain(2 + inner..w)
            } else {
                (0..w).chain(0..0)
            };
            for x in edges {
                for (i, ki) in taps.iter().enumerate() {
                    let xx = (x as isize + i as isize - 2).clamp(0, w as isize - 1) as usize;
                    for ch in 0..c {
                        out[x * c + ch] += ki * line[xx * c + ch];
                    }
                }
            }
        }
    });
}

/// One row across. The interior — every window whole — is `2r + 1` shifted copies of the
/// row added as plain vector loops over all channels at once (a running sum would be a
/// serial chain per channel, several times slower at these radii); the `r` pixels at
/// each end take the clipped mean one by one.
fn across(src: &[f32], out: &mut [f32], w: usize, c: usize, r: usize) {
    let border = |x: usize, out: &mut [f32]| {
        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
        let k = 1.0 / (b - a) as f32;
        for ch in 0..c {
            let s: f32 = (a..b).map(|xx| src[xx * c + ch]).sum();
            out[x * c + ch] = s * k;
        }
    };
    if w <= 2 * r {
        (0..w).for_each(|x| border(x, out));
        return;
    }
    let n = (w - 2 * r) * c;
    let inner = &mut out[r * c..r * c + n];
    inner.copy_from_slice(&src[..n]);
    for d in 1..=2 * r {
        for (o, s) in inner.iter_mut().zip(&src[d * c..d * c + n]) {
            *o += s;
        }
    }
    let k = 1.0 / (2 * r + 1) as f32;
    inner.iter_mut().for_each(|o| *o *= k);
    (0..r).chain(w - r..w).for_each(|x| border(x, out));
}

#[cfg(test)]
mod tests {
    /// The row-vector interior and the clamped edges give the clamped convolution, on
    /// interleaved channels and on pictures narrower than the kernel.
    #[test]
    fn convolve5_is_the_clamped_convolution() {
        let k: [f32; 25] = std::array::from_fn(|t| 0.01 + ((t * 7) % 11) as f32 * 0.013);
        for (w, h, c) in [(37, 23, 3), (3, 9, 1), (5, 5, 2)] {
            let v: Vec<f32> = (0..w * h * c)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 20) as f32 / 4096.0)
                .collect();
            let mut fast = v.clone();
            convolve5(&mut fast, w, h, c, &k);
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        let mut want = 0f32;
                        for t in 0..25 {
                            let yy = (y as isize + (t / 5) as isize - 2).clamp(0, h as isize - 1);
                            let xx = (x as isize + (t % 5) as isize - 2).clamp(0, w as isize - 1);
                            want += k[t] * v[(yy as usize * w + xx as usize) * c + ch];
                        }
                        let got = fast[(y * w + x) * c + ch];
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{w}x{h}x{c} at {x},{y}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    use super::*;

    /// The plain definition: the mean over the clipped window.
    fn reference(v: &[f32], w: usize, h: usize, c: usize, r: usize) -> Vec<f32> {
        let mut out = vec![0f32; v.len()];
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let (mut s, mut n) = (0f64, 0f64);
                    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                            s += v[(yy * w + xx) * c + ch] as f64;
                            n += 1.0;
                        }
                    }
                    out[(y * w + x) * c + ch] = (s / n) as f32;
                }
            }
        }
        out
    }

    /// The Gaussian as it was: every tap of every pixel through a clamped index.
    fn gaussian_clamped(v: &mut [f32], w: usize, h: usize, c: usize, sigma: f32) {
        let (r, k) = gaussian_taps(sigma);
        let row = w * c;
        let mut tmp = vec![0f32; v.len()];
        for (out, src) in tmp.chunks_mut(row).zip(v.chunks(row)) {
            for x in 0..w {
                for (j, kj) in k.iter().enumerate() {
                    let xx = (x as isize + j as isize - r).clamp(0, w as isize - 1) as usize;
                    for ch in 0..c {
                        out[x * c + ch] += kj * src[xx * c + ch];
                    }
                }
            }
        }
        for (y, out) in v.chunks_mut(row).enumerate() {
            out.fill(0.0);
            for (j, kj) in k.iter().enumerate() {
                let yy = (y as isize + j as isize - r).clamp(0, h as isize - 1) as usize;
                for (o, s) in out.iter_mut().zip(&tmp[yy * row..(yy + 1) * row]) {
                    *o += kj * s;
                }
            }
        }
    }

    /// The Gaussian gives the clamped loop's bits, on a real photo (one and three
    /// channels), for every σ the texture measure tries, and on rows narrower than the
    /// window.
    #[test]
    fn the_gaussian_gives_the_clamped_loops_bits() {
        let photo = crate::image::test_photo().into_rgb32f();
        let (w, h) = (331, 97);
        let rgb: Vec<f32> = (0..w * h)
            .flat_map(|i| {
                photo
                    .get_pixel((i % w) as u32 + 600, (i / w) as u32 + 400)
                    .0
            })
            .collect();
        let luma: Vec<f32> = rgb.chunks_exact(3).map(|p| p[1]).collect();
        for sigma in [0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 4.0] {
            for (v, c) in [(&luma, 1), (&rgb, 3)] {
                for width in [w, 7, 2] {
                    let v: Vec<f32> = v
                        .chunks(w * c)
                        .flat_map(|r| r[..width * c].to_vec())
                        .collect();
                    let (mut got, mut want) = (v.clone(), v.clone());
                    gaussian(&mut got, width, h, c, sigma);
                    gaussian_clamped(&mut want, width, h, c, sigma);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "σ {sigma}, {c} channels, width {width}");
                }
            }
        }
    }

    #[test]
    fn matches_the_clipped_window_mean_on_every_channel() {
        let (w, h, c) = (97, 61, 3);
        // A textured picture with hard edges, so a wrong window shows.
        let v: Vec<f32> = (0..w * h * c)
            .map(|i| {
                let (p, ch) = (i / c, i % c);
                let (x, y) = (p % w, p / w);
                ((x * 7 + y * 13 + ch * 5) % 17) as f32 / 17.0 + if x > 40 { 0.5 } else { 0.0 }
            })
            .collect();
        for r in [1, 2, 5] {
            let mut got = v.clone();
            box_blur(&mut got, w, h, c, r, 1);
            let want = reference(&v, w, h, c, r);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "radius {r}: worst {worst}");
        }
    }

    #[test]
    fn a_flat_picture_stays_flat_up_to_the_borders() {
        let (w, h) = (40, 30);
        let mut v = vec![0.37f32; w * h];
        box_blur(&mut v, w, h, 1, 4, 3);
        assert!(v.iter().all(|&x| (x - 0.37).abs() < 1e-6));
    }
}
