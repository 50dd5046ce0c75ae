//! The "AI edit" every mock applies: a smooth, deterministic colour grade.
//!
//! Per-pixel only (no spatial operations), so the daemon's full-resolution transfer can
//! reproduce it exactly from a preview pair, the way it must for a real engine's grade.

use image::{Rgb, RgbImage};

/// Grades one pixel: an S-shaped contrast curve, +15 % saturation, then split toning (teal
/// shadows, warm highlights).
pub fn grade_pixel(p: [u8; 3]) -> [u8; 3] {
    let curve = |v: u8| {
        let x = v as f32 / 255.0;
        let s = x * x * (3.0 - 2.0 * x);
        x + 0.45 * (s - x)
    };
    let (r, g, b) = (curve(p[0]), curve(p[1]), curve(p[2]));
    let l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let sat = 1.15;
    let (r, g, b) = (l + (r - l) * sat, l + (g - l) * sat, l + (b - l) * sat);
    let hi = l * l;
    let sh = (1.0 - l) * (1.0 - l);
    let out = [
        r + 0.07 * hi - 0.05 * sh,
        g + 0.02 * hi + 0.015 * sh,
        b - 0.06 * hi + 0.05 * sh,
    ];
    out.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// The mock "AI edit" applied to the image a mock received.
pub fn mock_grade(img: &RgbImage) -> RgbImage {
    let mut out = RgbImage::new(img.width(), img.height());
    for (src, dst) in img.pixels().zip(out.pixels_mut()) {
        *dst = Rgb(grade_pixel(src.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_is_a_real_smooth_grade() {
        // Black stays dark but gets a teal cast; white stays bright with a warm cast.
        let black = grade_pixel([0, 0, 0]);
        assert!(black[2] > black[0], "teal shadows: {black:?}");
        let white = grade_pixel([255, 255, 255]);
        assert!(white[0] >= white[2], "warm highlights: {white:?}");
        // S-curve: darker quarter-tones, brighter three-quarter tones.
        assert!(grade_pixel([64, 64, 64])[1] < 64);
        assert!(grade_pixel([192, 192, 192])[1] > 192);
        // Smooth: neighbouring inputs give neighbouring outputs.
        for v in 0..255u8 {
            let a = grade_pixel([v, v / 2, 255 - v]);
            let b = grade_pixel([v + 1, v / 2, 255 - v]);
            assert!(
                a.iter()
                    .zip(b)
                    .all(|(x, y)| (*x as i32 - y as i32).abs() <= 3),
                "{v}: {a:?} {b:?}"
            );
        }
    }
}
