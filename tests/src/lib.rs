//! Test fixtures made from real photographs, and helpers to run a real daemon.
//!
//! No package reachable from CI ships camera RAW files, so RAWs are made the way a camera
//! would record the scene in a photograph: the photo is mirror-tiled to the target size at
//! its native resolution (no upscaling, so every pixel keeps real detail), linearised,
//! taken to camera RGB through a real camera's colour matrix, exposed so that white sits at
//! clipping, given shot and read noise, quantised to 12 or 14 bits above a black level and
//! mosaicked in the chosen CFA layout. The DNG carries what a camera writes: levels, colour
//! matrix, as-shot neutral, orientation, EXIF and GPS.
//!
//! The photographs come from Debian's libjxl-testdata (BSD-3-Clause / CC0): see
//! `tests/fixtures/LICENSE-photos.md`. `scripts/fetch-photos` caches them outside the clone.

pub mod daemon;
#[cfg(target_os = "linux")]
pub mod wine;

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use exif::{Context as Ctx, Field, In, Rational, SRational, Tag, Value};
use rayon::prelude::*;

/// An sRGB-encoded photo, values 0..1, interleaved RGB.
#[derive(Clone)]
pub struct Photo {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Samples.
    pub data: Vec<f32>,
}

/// Runs one of the fetch scripts in `scripts/`, which print their cache folder.
fn fetch(script: &str) -> anyhow::Result<std::process::Output> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    Command::new("bash")
        .arg(&path)
        .output()
        .with_context(|| format!("running scripts/{script}"))
}

/// The folder holding the real photos, fetched on first use.
pub fn photos_dir() -> anyhow::Result<PathBuf> {
    let out = fetch("fetch-photos")?;
    if !out.status.success() {
        bail!(
            "scripts/fetch-photos failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The real camera RAWs every colour and brightness test also runs on (see
/// `../shared/raw-samples/README.md` and `scripts/fetch-raw-samples`).
pub const RAW_SAMPLES: &[&str] = &[
    "canon_d30__boostgil_RAW_CANON_D30_SRGB.CRW",
    "canon_eos30d__dcraw_IMG_0848.CR2",
    "kodak_dc50__rawpy.KDC",
    "nikon_d5000__hdrmerge_sample1.dng",
    "nikon_d5000__hdrmerge_sample2.dng",
    "nikon_d5000__hdrmerge_sample3.dng",
    "skia_dng_with_preview.dng",
];

/// The folder of real camera RAWs, fetched on first use (Debian source packages through
/// apt, and `../shared/raw-samples/`). Fails naming every sample that cannot be had.
pub fn raw_samples_dir() -> anyhow::Result<PathBuf> {
    let out = fetch("fetch-raw-samples")?;
    let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let missing: Vec<&str> = RAW_SAMPLES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !out.status.success() || !missing.is_empty() {
        bail!(
            "real camera samples missing: {missing:?}; scripts/fetch-raw-samples said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(dir)
}

/// The Python interpreter with rawpy and Pillow the LibRaw comparisons use
/// (`LUMINARY_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("LUMINARY_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Loads one of the real photos by file name (`flower.png`, `blossom.png`, `portrait.png`).
pub fn load_photo(name: &str) -> anyhow::Result<Photo> {
    let path = photos_dir()?.join(name);
    let img = image::open(&path)
        .with_context(|| format!("opening {}", path.display()))?
        .into_rgb32f();
    Ok(Photo {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.into_raw(),
    })
}

impl Photo {
    /// Mirror-tiles the photo to `w`×`h` at native resolution: I | flipLR(I), rows
    /// alternately flipped, so there are no seams and no invented detail.
    pub fn mirror_tile(&self, w: usize, h: usize) -> Photo {
        let img = luminary::image::RgbF32::new(self.width, self.height, self.data.clone());
        let tiled = luminary::transfer::fidelity::mirror_tile(&img, w, h);
        Photo {
            width: w,
            height: h,
            data: tiled.data,
        }
    }

    /// Rotates 90° counter-clockwise: what a camera held for a portrait shot stores, so
    /// that EXIF orientation 6 ("rotate 90° clockwise to view") makes it upright again.
    pub fn rotated_ccw(&self) -> Photo {
        let (w, h) = (self.width, self.height);
        let mut data = vec![0f32; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                // Upright (x, y) lands at stored (y, w-1-x) in an h×w image.
                let (sx, sy) = (y, w - 1 - x);
                let d = (sy * h + sx) * 3;
                data[d..d + 3].copy_from_slice(&self.data[(y * w + x) * 3..][..3]);
            }
        }
        Photo {
            width: h,
            height: w,
            data,
        }
    }

    /// 8-bit samples.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
            .collect()
    }

    /// 16-bit samples.
    pub fn to_u16(&self) -> Vec<u16> {
        self.data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16)
            .collect()
    }
}

fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Colour filter layouts of 2×2 Bayer sensors.
#[derive(Clone, Copy, Debug)]
pub enum Cfa {
    /// Canon, Sony, most.
    Rggb,
    /// Some Nikon, Panasonic.
    Grbg,
    /// Some Olympus.
    Gbrg,
    /// Rare.
    Bggr,
}

impl Cfa {
    fn pattern(self) -> [u8; 4] {
        match self {
            Cfa::Rggb => [0, 1, 1, 2],
            Cfa::Grbg => [1, 0, 2, 1],
            Cfa::Gbrg => [1, 2, 0, 1],
            Cfa::Bggr => [2, 1, 1, 0],
        }
    }
}

/// What the camera recorded.
#[derive(Clone, Debug)]
pub struct RawSpec {
    /// CFA layout.
    pub cfa: Cfa,
    /// 12 or 14.
    pub bits: u32,
    /// Black level in raw units.
    pub black: u16,
    /// EXIF orientation to write (1 = upright).
    pub orientation: u16,
}

/// Sony ILCE-7M3 colour matrix (XYZ D65 → camera), from rawler's camera data.
pub const SONY_A7M3: [f32; 9] = [
    0.7374, -0.2389, -0.0551, -0.5435, 1.3162, 0.2519, -0.1006, 0.1795, 0.6552,
];

/// sRGB (D65) → XYZ.
const SRGB_TO_XYZ: [[f32; 3]; 3] = [
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.119192, 0.9503041],
];

fn mul3(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

fn rational(v: f64) -> Rational {
    Rational {
        num: (v * 10000.0).round() as u32,
        denom: 10000,
    }
}

fn srational(v: f32) -> SRational {
    SRational {
        num: (v * 10000.0).round() as i32,
        denom: 10000,
    }
}

/// The EXIF facts every fixture carries, so tests can check they survive.
pub fn fixture_exif() -> Vec<Field> {
    let f = |tag: Tag, value: Value| Field {
        tag,
        ifd_num: In::PRIMARY,
        value,
    };
    let a = |s: &str| Value::Ascii(vec![s.as_bytes().to_vec()]);
    vec![
        f(Tag::Make, a("Sony")),
        f(Tag::Model, a("ILCE-7M3")),
        f(Tag::Artist, a("Luminary Test Photographer")),
        f(Tag::DateTimeOriginal, a("2026:05:17 18:42:07")),
        f(
            Tag::ExposureTime,
            Value::Rational(vec![Rational { num: 1, denom: 250 }]),
        ),
        f(
            Tag::FNumber,
            Value::Rational(vec![Rational { num: 56, denom: 10 }]),
        ),
        f(Tag::PhotographicSensitivity, Value::Short(vec![200])),
        f(
            Tag::FocalLength,
            Value::Rational(vec![Rational { num: 85, denom: 1 }]),
        ),
        f(Tag::LensModel, a("FE 85mm F1.8")),
        f(Tag::GPSLatitudeRef, a("N")),
        f(
            Tag::GPSLatitude,
            Value::Rational(vec![rational(48.0), rational(51.0), rational(29.5)]),
        ),
        f(Tag::GPSLongitudeRef, a("E")),
        f(
            Tag::GPSLongitude,
            Value::Rational(vec![rational(2.0), rational(17.0), rational(40.2)]),
        ),
    ]
}

/// What a DNG may carry beyond a plain camera file.
#[derive(Clone, Debug, Default)]
pub struct DngExtras {
    /// Lens shading: the sensor sees `1 − k·r²` of the light at relative radius r (1 at the
    /// corners), and OpcodeList2 carries the GainMap (9×9 points) that undoes it, as phones
    /// write their DNGs.
    pub lens_shading: Option<f32>,
    /// BaselineExposure, EV.
    pub baseline_exposure: Option<f64>,
}

/// The relative radius² of a pixel centre (0 at the centre, 1 at the corners).
fn radius2(x: usize, y: usize, w: usize, h: usize) -> f32 {
    let u = (x as f32 + 0.5) / w as f32 - 0.5;
    let v = (y as f32 + 0.5) / h as f32 - 0.5;
    (u * u + v * v) / 0.5
}

/// OpcodeList2 with one GainMap of 9×9 points that multiplies by `1 / (1 − k·r²)`.
fn shading_gain_map(k: f32) -> Vec<u8> {
    let n = 9u32;
    let mut params = Vec::new();
    for v in [0u32, 0, 0, 0, 0, 1, 1, 1, n, n] {
        params.extend_from_slice(&v.to_be_bytes());
    }
    for v in [1.0 / (n - 1) as f64, 1.0 / (n - 1) as f64, 0.0, 0.0] {
        params.extend_from_slice(&v.to_be_bytes());
    }
    params.extend_from_slice(&1u32.to_be_bytes());
    for i in 0..n {
        for j in 0..n {
            let (v, u) = (
                i as f32 / (n - 1) as f32 - 0.5,
                j as f32 / (n - 1) as f32 - 0.5,
            );
            let r2 = (u * u + v * v) / 0.5;
            params.extend_from_slice(&(1.0 / (1.0 - k * r2)).to_be_bytes());
        }
    }
    let mut out = Vec::new();
    for v in [1u32, 9, 0x0103_0000, 1, params.len() as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&params);
    out
}

/// Writes a camera-like DNG of `photo` (sRGB) to `path`.
pub fn write_dng(path: &Path, photo: &Photo, spec: &RawSpec) -> anyhow::Result<()> {
    write_dng_with(path, photo, spec, &DngExtras::default())
}

/// [`write_dng`] with extras.
pub fn write_dng_with(
    path: &Path,
    photo: &Photo,
    spec: &RawSpec,
    extras: &DngExtras,
) -> anyhow::Result<()> {
    let (w, h) = (photo.width, photo.height);
    let m = [
        [SONY_A7M3[0], SONY_A7M3[1], SONY_A7M3[2]],
        [SONY_A7M3[3], SONY_A7M3[4], SONY_A7M3[5]],
        [SONY_A7M3[6], SONY_A7M3[7], SONY_A7M3[8]],
    ];
    let cam_white = mul3(&m, mul3(&SRGB_TO_XYZ, [1.0, 1.0, 1.0]));
    let scale = 1.0 / cam_white.iter().cloned().fold(f32::MIN, f32::max);
    let white = (1u32 << spec.bits) - 1;
    let range = (white - spec.black as u32) as f32;
    let pattern = spec.cfa.pattern();
    // Shot noise: photons at full well; read noise in raw units.
    let full_well = 20_000.0f32;
    let read_noise = 2.0f32;
    let samples: Vec<u16> = (0..h)
        .into_par_iter()
        .flat_map_iter(|y| {
            let row = &photo.data[y * w * 3..(y + 1) * w * 3];
            (0..w).map(move |x| {
                let p = &row[x * 3..x * 3 + 3];
                let lin = [
                    srgb_to_linear(p[0]),
                    srgb_to_linear(p[1]),
                    srgb_to_linear(p[2]),
                ];
                let cam = mul3(&m, mul3(&SRGB_TO_XYZ, lin));
                let c = pattern[(y % 2) * 2 + (x % 2)] as usize;
                let shade = extras
                    .lens_shading
                    .map_or(1.0, |k| 1.0 - k * radius2(x, y, w, h));
                let v = (cam[c] * scale * shade).max(0.0);
                // Deterministic pseudo-random Gaussian-ish noise from the position.
                let mut hsh =
                    (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
                hsh ^= hsh >> 15;
                hsh = hsh.wrapping_mul(0x2C1B_3C6D);
                hsh ^= hsh >> 12;
                let u1 = (hsh & 0xffff) as f32 / 65536.0;
                let u2 = (hsh >> 16) as f32 / 65536.0;
                let g = (u1 + u2 - 1.0) * 2.45; // ~unit variance triangle
                let sigma = ((v * full_well).sqrt() / full_well * range).hypot(read_noise);
                let raw = spec.black as f32 + v * range + g * sigma;
                raw.round().clamp(0.0, white as f32) as u16
            })
        })
        .collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let rows_per_strip = 256usize;
    let strips: Vec<&[u8]> = bytes.chunks(rows_per_strip * w * 2).collect();

    let neutral: Vec<Rational> = cam_white
        .iter()
        .map(|c| rational((c * scale) as f64))
        .collect();
    let t = |n: u16, value: Value| Field {
        tag: Tag(Ctx::Tiff, n),
        ifd_num: In::PRIMARY,
        value,
    };
    let mut fields = vec![
        t(254, Value::Long(vec![0])),
        t(256, Value::Long(vec![w as u32])),
        t(257, Value::Long(vec![h as u32])),
        t(258, Value::Short(vec![16])),
        t(259, Value::Short(vec![1])),
        t(262, Value::Short(vec![32803])),
        t(274, Value::Short(vec![spec.orientation])),
        t(277, Value::Short(vec![1])),
        t(278, Value::Long(vec![rows_per_strip as u32])),
        t(284, Value::Short(vec![1])),
        t(33421, Value::Short(vec![2, 2])),
        t(33422, Value::Byte(pattern.to_vec())),
        t(50706, Value::Byte(vec![1, 4, 0, 0])),
        t(50707, Value::Byte(vec![1, 1, 0, 0])),
        t(50708, Value::Ascii(vec![b"Sony ILCE-7M3".to_vec()])),
        t(50713, Value::Short(vec![1, 1])),
        t(50714, Value::Long(vec![spec.black as u32])),
        t(50717, Value::Long(vec![white])),
        t(
            50721,
            Value::SRational(SONY_A7M3.iter().map(|&v| srational(v)).collect()),
        ),
        t(50728, Value::Rational(neutral)),
        t(50778, Value::Short(vec![21])),
    ];
    if let Some(k) = extras.lens_shading {
        fields.push(t(51009, Value::Undefined(shading_gain_map(k), 0)));
    }
    if let Some(ev) = extras.baseline_exposure {
        fields.push(t(50730, Value::SRational(vec![srational(ev as f32)])));
    }
    fields.extend(fixture_exif());
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    writer.set_strips(&strips, In::PRIMARY);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writer.write(&mut out, true)?;
    Ok(())
}

/// Writes a 16-bit (or 8-bit) TIFF of `photo`, optionally converted to another colour
/// space with that space's ICC profile embedded.
pub fn write_tiff(
    path: &Path,
    photo: &Photo,
    sixteen: bool,
    profile: Option<moxcms::ColorProfile>,
) -> anyhow::Result<()> {
    use tiff::encoder::{colortype, TiffEncoder};
    let (data, icc) = match profile {
        Some(dst) => {
            let t = moxcms::ColorProfile::new_srgb()
                .create_transform_f32(
                    moxcms::Layout::Rgb,
                    &dst,
                    moxcms::Layout::Rgb,
                    moxcms::TransformOptions::default(),
                )
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut out = vec![0f32; photo.data.len()];
            t.transform(&photo.data, &mut out)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            (
                out,
                Some(dst.encode().map_err(|e| anyhow::anyhow!("{e:?}"))?),
            )
        }
        None => (photo.data.clone(), None),
    };
    let p = Photo {
        data,
        ..photo.clone()
    };
    let file = BufWriter::new(std::fs::File::create(path)?);
    let mut enc = TiffEncoder::new(file)?;
    macro_rules! write_with {
        ($ct:ty, $samples:expr) => {{
            let mut img = enc.new_image::<$ct>(p.width as u32, p.height as u32)?;
            if let Some(icc) = &icc {
                img.encoder()
                    .write_tag(tiff::tags::Tag::Unknown(34675), &icc[..])?;
            }
            img.write_data(&$samples)?;
        }};
    }
    if sixteen {
        write_with!(colortype::RGB16, p.to_u16());
    } else {
        write_with!(colortype::RGB8, p.to_u8());
    }
    Ok(())
}

/// Writes a JPEG whose pixels are stored rotated, with EXIF orientation 6, as cameras do
/// for portrait shots.
pub fn write_rotated_jpeg(path: &Path, upright: &Photo) -> anyhow::Result<()> {
    use image::ImageEncoder;
    let stored = upright.rotated_ccw();
    let mut fields = fixture_exif();
    fields.push(Field {
        tag: Tag::Orientation,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![6]),
    });
    let mut w = exif::experimental::Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut blob = std::io::Cursor::new(Vec::new());
    w.write(&mut blob, false)?;
    let file = BufWriter::new(std::fs::File::create(path)?);
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 95);
    enc.set_exif_metadata(blob.into_inner())?;
    enc.write_image(
        &stored.to_u8(),
        stored.width as u32,
        stored.height as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(())
}

/// Peak signal-to-noise ratio between two images of equal size, in dB (values 0..1).
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// FNV-1a hash and length of a file, for "the original was not touched" checks.
pub fn fingerprint(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in &bytes {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (bytes.len() as u64, h)
}
