//! TIFF, JPEG and PNG through `image`, linearised into the working space by their embedded
//! ICC profile (sRGB when they carry none), upright. These are photos someone already
//! rendered, so they stay display-referred: render adds no exposure or tone curve.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::checks::{check_pixels, panic_text, Limits};
use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;
use crate::metadata::{self, SourceMeta};

/// Decodes the raster photo at `path`: upright working-space pixels and its EXIF.
pub(crate) fn decode(path: &Path, limits: &Limits) -> Result<(RgbF32, SourceMeta), JobError> {
    use image::ImageDecoder;
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let result = catch_unwind(AssertUnwindSafe(
        || -> Result<(RgbF32, SourceMeta), JobError> {
            let mut reader = image::ImageReader::open(path)
                .map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?
                .with_guessed_format()
                .map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?;
            let mut lim = image::Limits::default();
            lim.max_alloc = Some((limits.max_pixels.saturating_mul(16)).max(1 << 20));
            reader.limits(lim);
            let mut decoder = reader.into_decoder().map_err(|e| match e {
                image::ImageError::Unsupported(u) => JobError::file(
                    ErrorCode::UnsupportedFormat,
                    path,
                    format!("unsupported image: {u}"),
                ),
                other => corrupt(format!("cannot decode the image ({other})")),
            })?;
            let (w, h) = decoder.dimensions();
            check_pixels(path, w as usize, h as usize, limits)?;
            let icc = decoder.icc_profile().ok().flatten();
            let orientation = decoder
                .orientation()
                .map(|o| o.to_exif() as u16)
                .unwrap_or(1);
            let img = image::DynamicImage::from_decoder(decoder)
                .map_err(|e| corrupt(format!("the image data is damaged or truncated ({e})")))?;
            // 8- and 16-bit RGB (most JPEGs and TIFFs) straight into the working space;
            // the 0..1 values are `image`'s own (`v / MAX`).
            let (w, h, icc) = (w as usize, h as usize, icc.as_deref());
            let linear = match img {
                image::DynamicImage::ImageRgb8(b) => {
                    crate::color::samples_to_working(w, h, b.as_raw(), |v| v as f32 / 255.0, icc)
                }
                image::DynamicImage::ImageRgb16(b) => {
                    crate::color::samples_to_working(w, h, b.as_raw(), |v| v as f32 / 65535.0, icc)
                }
                other => crate::color::to_working(w, h, other.into_rgb32f().into_raw(), icc),
            }
            .map_err(|e| JobError::file(ErrorCode::UnsupportedFormat, path, e))?;
            let mut meta = metadata::read_exif(path);
            meta.orientation = orientation;
            Ok((linear.oriented(orientation), meta))
        },
    ));
    result.unwrap_or_else(|p| {
        Err(corrupt(format!(
            "the decoder failed on this file ({})",
            panic_text(p)
        )))
    })
}
