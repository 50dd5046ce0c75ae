//! The pictures the mocks answer with (graded, edited, torn, cut out, upscaled) and how
//! they travel (data URIs, base64), for every provider's handlers.

use base64::Engine as _;

use super::grade::mock_grade;
use super::matte;
use super::shared::Shared;

/// Decodes the received image, grades it with [`mock_grade`] and encodes a PNG. `square` crops
/// the centre square first (the `WrongAspect` fault).
pub(crate) fn grade_bytes(bytes: &[u8], square: bool) -> Result<(Vec<u8>, u32, u32), String> {
    edit_bytes(bytes, square, mock_grade)
}

/// The mock edit `edit` of the image in `bytes`, as PNG with its size.
pub(crate) fn edit_bytes(
    bytes: &[u8],
    square: bool,
    edit: fn(&image::RgbImage) -> image::RgbImage,
) -> Result<(Vec<u8>, u32, u32), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?;
    let mut rgb = img.to_rgb8();
    if square {
        let side = rgb.width().min(rgb.height());
        let x = (rgb.width() - side) / 2;
        let y = (rgb.height() - side) / 2;
        rgb = image::imageops::crop_imm(&rgb, x, y, side, side).to_image();
    }
    let graded = edit(&rgb);
    let mut png = Vec::new();
    graded
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok((png, graded.width(), graded.height()))
}

/// [`mock_grade`], then the halves moved apart (the `Torn` fault).
pub(crate) fn torn_grade(img: &image::RgbImage) -> image::RgbImage {
    let graded = mock_grade(img);
    let (w, h) = graded.dimensions();
    let d = (w / 200).max(3) as i64;
    image::RgbImage::from_fn(w, h, |x, y| {
        let dx = if y < h / 2 { -d } else { d };
        let sx = (x as i64 + dx).clamp(0, w as i64 - 1) as u32;
        *graded.get_pixel(sx, y)
    })
}

/// The bytes of a `data:…;base64,…` URI.
pub(crate) fn from_data_uri(uri: &str) -> Option<Vec<u8>> {
    let rest = uri.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PNG with its width and height.
pub(crate) type SizedPng = (Vec<u8>, u32, u32);

/// A segmentation model's answer to the image in `bytes`: its RGBA cut-out PNG with size,
/// and its grey mask PNG.
pub(crate) fn matte_bytes(shared: &Shared, bytes: &[u8]) -> Result<(SizedPng, Vec<u8>), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?
        .to_rgb8();
    let matte = matte::segment(&img, shared.matte.lock().unwrap().as_ref());
    let png = |img: image::DynamicImage| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| format!("cannot encode PNG: {e}"))?;
        Ok(out)
    };
    let cut = png(image::DynamicImage::ImageRgba8(matte::cutout(&img, &matte)))?;
    let mask = png(image::DynamicImage::ImageLuma8(matte))?;
    Ok(((cut, img.width(), img.height()), mask))
}

/// A super-resolution model's answer: the picture `scale` times larger (Catmull-Rom), PNG.
pub(crate) fn upscale_bytes(bytes: &[u8], scale: u32) -> Result<(Vec<u8>, u32, u32), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?
        .to_rgb8();
    let (w, h) = (img.width() * scale, img.height() * scale);
    let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::CatmullRom);
    // Fast compression: a 4× tile is 12 MB of pixels, and a 24 MP upscale has 117 of them.
    let mut out = Vec::new();
    use image::ImageEncoder;
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(big.as_raw(), w, h, image::ExtendedColorType::Rgb8)
    .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok((out, w, h))
}

/// The segmentation apps the mocks host (by the model's name, as the real services route).
pub(crate) fn hosts_matting(model: &str) -> bool {
    model.contains("birefnet")
}

/// The super-resolution apps the mocks host.
pub(crate) fn hosts_upscaler(model: &str) -> bool {
    model.contains("esrgan")
}
