//! Area-averaged resizing of pictures: each output pixel is the exact mean of the input
//! area it covers, so nothing aliases and mean colour is kept — what engines, statistics
//! and the transfer's registration all rely on. (Below the pipeline and the transfer, so
//! neither has to reach into the other for it.)

use rayon::prelude::*;

use crate::image::RgbF32;

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
