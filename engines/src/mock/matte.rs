//! The mocks' background removal: a matte for the picture received, as segmentation models
//! (BiRefNet and the like) answer it — a grey mask, or an RGBA cut-out.
//!
//! A test that knows the truth (a subject composited onto a background with a known alpha)
//! hands it to the mock ([`MockServer::set_matte`](super::MockServer::set_matte)); the mock
//! then answers that matte at the size it received, area-averaged, which is the best a model
//! working on that picture could see. Without one, the subject is what differs from the
//! colour of the picture's border (a product on a plain backdrop).

use image::{GrayImage, Luma, RgbImage, RgbaImage};

/// The matte the mock answers for `img`.
pub fn segment(img: &RgbImage, truth: Option<&GrayImage>) -> GrayImage {
    let (w, h) = img.dimensions();
    if let Some(t) = truth {
        return area_resize(t, w, h);
    }
    let mut border = Vec::new();
    for x in 0..w {
        border.push(img.get_pixel(x, 0).0);
        border.push(img.get_pixel(x, h - 1).0);
    }
    for y in 0..h {
        border.push(img.get_pixel(0, y).0);
        border.push(img.get_pixel(w - 1, y).0);
    }
    let median = |c: usize| {
        let mut v: Vec<u8> = border.iter().map(|p| p[c]).collect();
        v.sort_unstable();
        v[v.len() / 2] as f32
    };
    let key = [median(0), median(1), median(2)];
    GrayImage::from_fn(w, h, |x, y| {
        let p = img.get_pixel(x, y).0;
        let d = (0..3)
            .map(|c| (p[c] as f32 - key[c]).powi(2))
            .sum::<f32>()
            .sqrt();
        let a = ((d - 20.0) / 30.0).clamp(0.0, 1.0);
        Luma([(a * 255.0).round() as u8])
    })
}

/// Area-averaged resize (each output pixel the mean of the input pixels it covers).
fn area_resize(src: &GrayImage, w: u32, h: u32) -> GrayImage {
    let (sw, sh) = src.dimensions();
    let (fx, fy) = (sw as f64 / w as f64, sh as f64 / h as f64);
    GrayImage::from_fn(w, h, |x, y| {
        let (x0, x1) = (x as f64 * fx, (x + 1) as f64 * fx);
        let (y0, y1) = (y as f64 * fy, (y + 1) as f64 * fy);
        let (mut sum, mut area) = (0f64, 0f64);
        for sy in y0.floor() as u32..(y1.ceil() as u32).min(sh) {
            let wy = (y1.min(sy as f64 + 1.0) - y0.max(sy as f64)).max(0.0);
            for sx in x0.floor() as u32..(x1.ceil() as u32).min(sw) {
                let wx = (x1.min(sx as f64 + 1.0) - x0.max(sx as f64)).max(0.0);
                sum += wx * wy * src.get_pixel(sx, sy)[0] as f64;
                area += wx * wy;
            }
        }
        Luma([(sum / area.max(1e-9)).round() as u8])
    })
}

/// The picture with the matte as its alpha channel (straight alpha).
pub fn cutout(img: &RgbImage, matte: &GrayImage) -> RgbaImage {
    RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], matte.get_pixel(x, y)[0]])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_subject_on_a_plain_backdrop_is_keyed_and_a_truth_is_area_averaged() {
        let img = RgbImage::from_fn(200, 100, |x, y| {
            if (60..140).contains(&x) && (20..80).contains(&y) {
                Rgb([200, 40, 30])
            } else {
                Rgb([235, 235, 230])
            }
        });
        let m = segment(&img, None);
        assert_eq!(m.get_pixel(100, 50)[0], 255);
        assert_eq!(m.get_pixel(10, 10)[0], 0);
        let truth = GrayImage::from_fn(400, 200, |x, _| Luma([if x < 201 { 255 } else { 0 }]));
        let m = segment(&img, Some(&truth));
        assert_eq!(m.dimensions(), (200, 100));
        assert_eq!(m.get_pixel(99, 5)[0], 255);
        assert_eq!(m.get_pixel(100, 5)[0], 128, "half-covered pixel");
        assert_eq!(m.get_pixel(101, 5)[0], 0);
    }
}
