//! Stage 4 — Preview: an area-averaged downscale, and facts measured on it.
//!
//! Area averaging (each output pixel is the exact mean of the input area it covers) does
//! not alias and keeps mean colour, which both engines and the statistics rely on.

use luminary_plugin_api::ImageFacts;

use crate::image::{luma, RgbF32};
pub use crate::resample::{downscale, resize_area};

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
    // The value a full sort would put at each percentile's index, found in linear time.
    let mut pct = |q: f32| {
        if lum.is_empty() {
            return 0.0;
        }
        let i = ((lum.len() as f32 - 1.0) * q) as usize;
        *lum.select_nth_unstable_by(i, f32::total_cmp).1
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

    /// The luminance percentiles are the values a full sort puts at their indices.
    #[test]
    fn percentiles_are_those_of_the_sorted_luminance() {
        let photo = crate::image::test_photo().to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let img = downscale(&RgbF32::new(w, h, photo.into_raw()), 700);
        let f = facts(&img, w, h, false);
        let mut lum: Vec<f32> = img.data.chunks_exact(3).map(luma).collect();
        lum.sort_unstable_by(f32::total_cmp);
        let at = |q: f32| lum[((lum.len() as f32 - 1.0) * q) as usize];
        assert_eq!(f.luminance_percentiles, [at(0.01), at(0.5), at(0.99)]);
        assert!(f.luminance_percentiles[0] < f.luminance_percentiles[2]);
        let empty = facts(&RgbF32::new(0, 0, Vec::new()), 0, 0, false);
        assert_eq!(empty.luminance_percentiles, [0.0; 3]);
    }

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
