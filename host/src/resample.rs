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
///
/// Separable and exact: each output row sums the horizontal means of the input rows it
/// covers. Those are made per output row, in a buffer of one row, so the input rows on a
/// boundary between two output rows are averaged twice (about 1 / ratio more arithmetic)
/// instead of all rows going through an intermediate picture of `ow` × height, which cost
/// more in memory traffic and first touches than it saved.
pub fn resize_area(img: &RgbF32, ow: usize, oh: usize) -> RgbF32 {
    let xw = axis_weights(img.width, ow);
    let yw = axis_weights(img.height, oh);
    let mut out = vec![0f32; ow * oh * 3];
    if ow == 0 || oh == 0 {
        return RgbF32::new(ow, oh, out);
    }
    let stride = img.width * 3;
    out.par_chunks_mut(ow * 3).zip(yw.par_iter()).for_each_init(
        || vec![0f32; ow * 3],
        |means, (orow, (first, w))| {
            for (k, wk) in w.iter().enumerate() {
                row_means(&img.data[(first + k) * stride..][..stride], &xw, means);
                for (o, s) in orow.iter_mut().zip(means.iter()) {
                    *o += wk * s;
                }
            }
        },
    );
    RgbF32::new(ow, oh, out)
}

/// The horizontal area means of one input row, `xw` per output pixel.
fn row_means(row: &[f32], xw: &[(usize, Vec<f32>)], out: &mut [f32]) {
    for (o, (first, w)) in out.chunks_exact_mut(3).zip(xw) {
        let mut acc = [0f32; 3];
        for (k, wk) in w.iter().enumerate() {
            let p = &row[(first + k) * 3..(first + k) * 3 + 3];
            acc[0] += wk * p[0];
            acc[1] += wk * p[1];
            acc[2] += wk * p[2];
        }
        o.copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resize as it was: every input row averaged horizontally into a picture of
    /// `ow` × height, then the vertical pass over it.
    fn two_pass(img: &RgbF32, ow: usize, oh: usize) -> RgbF32 {
        let xw = axis_weights(img.width, ow);
        let yw = axis_weights(img.height, oh);
        let rows: Vec<f32> = img
            .data
            .chunks(img.width * 3)
            .flat_map(|row| {
                let mut means = vec![0f32; ow * 3];
                row_means(row, &xw, &mut means);
                means
            })
            .collect();
        let mut out = vec![0f32; ow * oh * 3];
        for (orow, (first, w)) in out.chunks_mut(ow * 3).zip(&yw) {
            for (k, wk) in w.iter().enumerate() {
                let src = &rows[(first + k) * ow * 3..(first + k + 1) * ow * 3];
                for (o, s) in orow.iter_mut().zip(src) {
                    *o += wk * s;
                }
            }
        }
        RgbF32::new(ow, oh, out)
    }

    /// A real photo, at ratios that leave every kind of boundary (whole, fractional, an
    /// input row shared by two output rows, 1:1 in one axis), gives the two-pass
    /// result to the bit.
    #[test]
    fn one_pass_per_output_row_resizes_like_two_passes() {
        let photo = crate::image::test_photo().to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let img = RgbF32::new(w, h, photo.into_raw());
        for (ow, oh) in [
            (w / 2, h / 2),
            (w / 3 + 1, h / 7 + 2),
            (97, 61),
            (w, h / 5),
            (1, 1),
        ] {
            let got = resize_area(&img, ow, oh);
            let want = two_pass(&img, ow, oh);
            assert_eq!((got.width, got.height), (ow, oh));
            assert!(got.data == want.data, "{ow}×{oh} differs");
        }
    }
}
