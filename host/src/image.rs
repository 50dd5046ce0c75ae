//! The one pixel container every stage passes along: interleaved RGB `f32`.

use rayon::prelude::*;

/// An RGB image, rows top to bottom, 3 interleaved `f32` per pixel.
///
/// What the numbers mean (scene- or display-referred, which primaries) is decided by the
/// stage that holds it; see `color` for the working space.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbF32 {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height * 3` samples.
    pub data: Vec<f32>,
}

impl RgbF32 {
    /// Wraps existing samples.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            width * height * 3,
            "RgbF32 of {width}x{height} needs {} samples",
            width * height * 3
        );
        RgbF32 {
            width,
            height,
            data,
        }
    }

    /// Pixel count.
    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    /// Megapixels, for throughput figures.
    pub fn megapixels(&self) -> f64 {
        self.pixels() as f64 / 1e6
    }

    /// Rows as mutable slices, in parallel.
    pub fn par_rows_mut(&mut self) -> impl IndexedParallelIterator<Item = (usize, &mut [f32])> {
        let w = self.width * 3;
        self.data.par_chunks_mut(w).enumerate()
    }

    /// Applies EXIF orientation `code` (1–8) so the result is upright.
    pub fn oriented(self, code: u16) -> RgbF32 {
        if !(2..=8).contains(&code) {
            return self;
        }
        let (w, h) = (self.width, self.height);
        let swap = code >= 5;
        let (ow, oh) = if swap { (h, w) } else { (w, h) };
        let mut out = vec![0f32; self.data.len()];
        let src = &self.data;
        out.par_chunks_mut(ow * 3)
            .enumerate()
            .for_each(|(oy, row)| {
                for ox in 0..ow {
                    // Map the output pixel back to the stored one (EXIF 0x0112 semantics).
                    let (sx, sy) = match code {
                        2 => (w - 1 - ox, oy),
                        3 => (w - 1 - ox, h - 1 - oy),
                        4 => (ox, h - 1 - oy),
                        5 => (oy, ox),
                        6 => (oy, h - 1 - ox),
                        7 => (w - 1 - oy, h - 1 - ox),
                        8 => (w - 1 - oy, ox),
                        _ => unreachable!(),
                    };
                    let s = (sy * w + sx) * 3;
                    row[ox * 3..ox * 3 + 3].copy_from_slice(&src[s..s + 3]);
                }
            });
        RgbF32::new(ow, oh, out)
    }
}

/// Luminance weights of the working space (Rec.2020 primaries).
pub const LUMA: [f32; 3] = [0.2627, 0.6780, 0.0593];

/// Luminance of a working-space pixel.
#[inline]
pub fn luma(p: &[f32]) -> f32 {
    LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]
}

/// A real photo for the kernel tests: `flower.png` from the developer's photo cache, as
/// `scripts/fetch-photos` fills it (which `scripts/test` and CI run first).
#[cfg(test)]
pub(crate) fn test_photo() -> ::image::DynamicImage {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    let path = cache.join("luminary-dev/photos/flower.png");
    ::image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-photos)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: usize, h: usize) -> RgbF32 {
        RgbF32::new(w, h, (0..w * h * 3).map(|i| (i / 3) as f32).collect())
    }

    #[test]
    fn orientation_6_rotates_clockwise() {
        // A 3x2 image stored sideways; code 6 means "rotate 90° clockwise to view".
        let img = numbered(3, 2).oriented(6);
        assert_eq!((img.width, img.height), (2, 3));
        // Top row of the upright image is the stored left column, bottom to top.
        assert_eq!(img.data[0], 3.0);
        assert_eq!(img.data[3], 0.0);
    }

    #[test]
    fn every_orientation_round_trips_through_its_inverse() {
        let inverse = [1, 1, 2, 3, 4, 5, 8, 7, 6];
        for code in 1..=8u16 {
            let img = numbered(5, 3);
            let back = img.clone().oriented(code).oriented(inverse[code as usize]);
            assert_eq!(back, img, "orientation {code}");
        }
    }
}
