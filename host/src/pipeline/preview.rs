//! Stage 4 — Preview: an area-averaged downscale, and facts measured on it.
//!
//! Area averaging (each output pixel is the exact mean of the input area it covers) does
//! not alias and keeps mean colour, which both engines and the statistics rely on.

use rayon::prelude::*;

use luminary_plugin_api::ImageFacts;

use crate::image::{luma, RgbF32};

/// Downscales so the long edge is at most `long_edge`. Never upscales.
pub fn downscale(img: &RgbF32, long_edge: usize) -> RgbF32 {
    let long = img.width.max(img.height);
    if long <= long_edge {
        return img.clone();
    }
    let scale = long_edge as f64 / long as f64;
    let ow = ((img.width as f64 * scale).round() as usize).max(1);
    let oh = ((img.height as f64 * scale).round() as usize).max(1);
    resize_area(img, ow, oh)
}

/// Coverage of each input index by each output index along one axis: (first, weights).
fn axis_weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let (a, b) = (o as f64 * ratio, (o + 1) as f64 * ratio);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(n_in);
            let w: Vec<f32> = (first..last)
                .map(|i| ((b.min(i as f64 + 1.0) - a.max(i as f64)) / ratio) as f32)
                .collect();
            (first, w)
        })
        .collect()
}

/// Resizes to exactly `ow`×`oh` by area averaging (for downscaling).
pub fn resize_area(img: &RgbF32, ow: usize, oh: usize) -> RgbF32 {
    let xw = axis_weights(img.width, ow);
    let yw = axis_weights(img.height, oh);
    // Horizontal pass per input row, then vertical: separable and exact.
    let rows: Vec<f32> = img
        .data
        .par_chunks(img.width * 3)
        .flat_map_iter(|row| {
            xw.iter().flat_map(move |(first, w)| {
                let mut acc = [0f32; 3];
                for (k, wk) in w.iter().enumerate() {
                    let p = &row[(first + k) * 3..(first + k) * 3 + 3];
                    acc[0] += wk * p[0];
                    acc[1] += wk * p[1];
                    acc[2] += wk * p[2];
                }
                acc
            })
        })
        .collect();
    let mut out = vec![0f32; ow * oh * 3];
    out.par_chunks_mut(ow * 3)
        .zip(yw.par_iter())
        .for_each(|(orow, (first, w))| {
            for (k, wk) in w.iter().enumerate() {
                let src = &rows[(first + k) * ow * 3..(first + k + 1) * ow * 3];
                for (o, s) in orow.iter_mut().zip(src) {
                    *o += wk * s;
                }
            }
        });
    RgbF32::new(ow, oh, out)
}

/// Measures what plugins may adapt to.
pub fn facts(preview: &RgbF32, full_w: usize, full_h: usize, is_raw: bool) -> ImageFacts {
    let mut lum: Vec<f32> = preview.data.chunks_exact(3).map(luma).collect();
    let n = lum.len().max(1);
    let mean = lum.iter().sum::<f32>() / n as f32;
    let sat = preview
        .data
        .chunks_exact(3)
        .map(|p| {
            let max = p[0].max(p[1]).max(p[2]);
            let min = p[0].min(p[1]).min(p[2]);
            if max > 1e-4 {
                (max - min) / max
            } else {
                0.0
            }
        })
        .sum::<f32>()
        / n as f32;
    lum.sort_unstable_by(f32::total_cmp);
    let pct = |q: f32| {
        lum.get(((lum.len() as f32 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    ImageFacts {
        width: full_w as u32,
        height: full_h as u32,
        is_raw,
        make: None,
        model: None,
        mean_luminance: mean,
        luminance_percentiles: [pct(0.01), pct(0.5), pct(0.99)],
        mean_saturation: sat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_downscale_keeps_the_mean_exactly() {
        let (w, h) = (301, 203);
        let data: Vec<f32> = (0..w * h * 3)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let img = RgbF32::new(w, h, data);
        let small = downscale(&img, 64);
        assert_eq!(small.width.max(small.height), 64);
        for c in 0..3 {
            let m = |im: &RgbF32| {
                im.data
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&v| v as f64)
                    .sum::<f64>()
                    / im.pixels() as f64
            };
            assert!((m(&img) - m(&small)).abs() < 1e-4, "channel {c}");
        }
    }
}
