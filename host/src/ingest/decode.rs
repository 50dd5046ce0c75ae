//! rawler's part of a RAW ingest — what the decoder process runs: open, decode the sensor
//! data, and gather every fact develop needs (levels, mosaic, areas, colour, opcodes) into a
//! [`RawHeader`]. Nothing here changes a pixel except for sensors our develop does not
//! handle (X-Trans, monochrome), which rawler demosaics into camera RGB.
//!
//! DNG facts are read from the file's own tags, as the specification defines them, not
//! from rawler's interpretation of them (rawler's develop ignores ForwardMatrix,
//! CameraCalibration, AnalogBalance, BaselineExposure and the opcode lists). Other RAWs
//! take rawler's camera matrix and the as-shot white balance it reads from the maker notes.

use std::path::Path;

use rawler::decoders::{RawDecodeParams, WellKnownIFD};
use rawler::formats::tiff::IFD;
use rawler::imgop::develop::{Intermediate, ProcessingStep, RawDevelop};
use rawler::rawsource::RawSource;
use serde::{Deserialize, Serialize};

use super::checks::{check_pixels, Limits};
use super::colour::{Calibration, ColourFacts, M3, V3};
use super::opcodes::{self, OpcodeLists};
use crate::error::{ErrorCode, JobError};

/// Sensor data as decoded, before develop: everything develop needs besides the samples.
/// The decoder process sends it as one JSON line (floats round-trip exactly).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct RawHeader {
    /// Pixels per row of the sample grid (photosites for a mosaic).
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// EXIF orientation of the stored pixels.
    pub orientation: u16,
    /// What the samples are.
    pub layout: RawLayout,
    /// Whether samples are `f32` (else `u16`).
    pub float: bool,
    /// Black and white levels.
    pub levels: Levels,
    /// ActiveArea: x, y, width, height in the sample grid (the frame of opcode lists 2/3).
    pub active: [usize; 4],
    /// DefaultCrop: x, y, width, height in the sample grid.
    pub crop: [usize; 4],
    /// What the file says about its colour.
    pub colour: ColourFacts,
    /// BaselineExposure + BaselineExposureOffset, EV (0 for RAWs that do not say).
    pub baseline_exposure: f64,
    /// DNG opcode lists.
    pub opcodes: OpcodeLists,
    /// Things the decoder noticed and worked around, for the log.
    pub notes: Vec<String>,
}

/// How the samples are laid out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RawLayout {
    /// A 2×2 RGB Bayer mosaic, one sample per photosite. `colors[row][col]` (0 R, 1 G,
    /// 2 B) in the sample grid's coordinates.
    Bayer { colors: [[usize; 2]; 2] },
    /// Three samples per pixel in camera RGB: linear DNGs as stored, or sensors rawler
    /// demosaiced (then already cropped and normalised).
    Rgb,
}

/// Black and white levels, as the DNG specification defines them (BlackLevel with its
/// repeat pattern, BlackLevelDeltaH/V, WhiteLevel per plane).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Levels {
    /// BlackLevel pattern, `[(row * cols + col) * planes + plane]`.
    pub black: Vec<f32>,
    /// Pattern rows and columns.
    pub repeat: [usize; 2],
    /// Where the pattern (and the deltas) start: x, y in the sample grid (the ActiveArea's
    /// corner for DNGs).
    pub origin: [usize; 2],
    /// BlackLevelDeltaH, per column from `origin` (empty: none).
    pub delta_h: Vec<f32>,
    /// BlackLevelDeltaV, per row from `origin`.
    pub delta_v: Vec<f32>,
    /// WhiteLevel per plane (one for a mosaic, else three; per 2×2 position for mosaics
    /// whose decoder gives four).
    pub white: Vec<f32>,
}

impl Levels {
    /// Levels that leave 0..1 samples as they are.
    pub fn unit() -> Levels {
        Levels {
            black: vec![0.0],
            repeat: [1, 1],
            origin: [0, 0],
            delta_h: Vec::new(),
            delta_v: Vec::new(),
            white: vec![1.0],
        }
    }
}

/// What rawler produced: the header and the samples it describes.
pub(crate) struct Decoded {
    pub header: RawHeader,
    pub data: DecodedData,
}

/// The samples.
// One per decode, moved once into the pipeline: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum DecodedData {
    /// rawler's own buffer (a mosaic or linear DNG as stored).
    Raw(rawler::RawImage),
    /// Camera RGB that rawler demosaiced.
    Rgb(Vec<f32>),
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers (u16 / f32) without padding, read as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

impl Decoded {
    /// The samples as bytes, in the machine's byte order: what goes into shared memory.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn sample_bytes(&self) -> &[u8] {
        match &self.data {
            DecodedData::Raw(raw) => match &raw.data {
                rawler::RawImageData::Integer(v) => as_bytes(v),
                rawler::RawImageData::Float(v) => as_bytes(v),
            },
            DecodedData::Rgb(v) => as_bytes(v),
        }
    }
}

/// An open RAW and its decoder, kept for metadata.
pub(crate) struct OpenedRaw {
    src: RawSource,
    decoder: Box<dyn rawler::decoders::Decoder>,
}

impl OpenedRaw {
    /// rawler's parsed metadata, for RAW containers whose EXIF we cannot walk.
    pub fn metadata(&self) -> Option<rawler::decoders::RawMetadata> {
        self.decoder
            .raw_metadata(&self.src, &RawDecodeParams::default())
            .ok()
    }
}

/// Bytes per actual pixel added to the decoder's memory limit, once the decoded size is
/// known and within `max_pixels`, for rawler's develop of non-Bayer sensors.
pub(crate) const DEVELOP_BYTES_PER_PIXEL: u64 = 64;

/// Opens, decodes and describes the RAW at `path`. `develop_room` is called with the
/// checked pixel count before rawler develops a sensor our develop does not handle, so the
/// caller can allow it the memory it needs.
pub(crate) fn decode_raw(
    path: &Path,
    limits: &Limits,
    develop_room: &mut dyn FnMut(u64),
) -> Result<(Decoded, OpenedRaw), JobError> {
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let t = std::time::Instant::now();
    let src = RawSource::new(path).map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?;
    let decoder = rawler::get_decoder(&src).map_err(|e| {
        JobError::file(
            ErrorCode::UnsupportedFormat,
            path,
            format!(
                "not a camera RAW format Luminary can read: no decoder recognises its header ({e}); \
                 headerless RAWs (some old Kodak and phone files, known only by their size) cannot be read"
            ),
        )
    })?;
    tracing::debug!("raw decoder ready {:?}", t.elapsed());
    let params = RawDecodeParams::default();
    let raw = decoder.raw_image(&src, &params, false).map_err(|e| {
        if vc5_compressed(decoder.as_ref()) {
            return JobError::file(
                ErrorCode::UnsupportedFormat,
                path,
                "a GoPro GPR (DNG with VC-5 compression), which Luminary cannot decode yet; \
                 convert it to a plain DNG first (GoPro's `gpr` tool, or Adobe DNG Converter)",
            );
        }
        corrupt(format!(
            "the RAW data cannot be decoded ({e}); the file may be truncated"
        ))
    })?;
    tracing::debug!("raw decode {:?}", t.elapsed());
    check_pixels(path, raw.width, raw.height, limits)?;
    let is_dng = decoder.format_hint() == rawler::decoders::FormatHint::DNG;
    let tags = if is_dng {
        Some(DngTags {
            root: decoder.ifd(WellKnownIFD::Root).ok().flatten(),
            raw: decoder.ifd(WellKnownIFD::Raw).ok().flatten(),
        })
    } else {
        None
    };
    let mut notes = Vec::new();
    let colour = match &tags {
        Some(t) => t.colour(&mut notes),
        None => camera_colour(&raw),
    };
    let baseline_exposure = tags.as_ref().map_or(0.0, DngTags::baseline_exposure);
    let opcodes = tags
        .as_ref()
        .map_or_else(OpcodeLists::default, |t| t.opcodes(&mut notes));
    let (len, float) = match &raw.data {
        rawler::RawImageData::Integer(v) => (v.len(), false),
        rawler::RawImageData::Float(v) => (v.len(), true),
    };
    let full = [0, 0, raw.width, raw.height];
    let rect = |r: Option<rawler::imgop::Rect>| {
        r.map(|r| [r.p.x, r.p.y, r.d.w, r.d.h])
            .filter(|&[x, y, w, h]| w > 0 && h > 0 && x + w <= raw.width && y + h <= raw.height)
    };
    let active = rect(raw.active_area).unwrap_or(full);
    let crop = rect(raw.crop_area).unwrap_or(active);
    let orientation = raw.orientation.to_u16();
    let opened = OpenedRaw { src, decoder };
    let photometric = &raw.photometric;
    use rawler::rawimage::RawPhotometricInterpretation as P;
    let layout = match photometric {
        P::Cfa(cfg)
            if cfg.cfa.width == 2 && cfg.cfa.height == 2 && cfg.cfa.is_rgb() && raw.cpp == 1 =>
        {
            Some(RawLayout::Bayer {
                colors: [
                    [cfg.cfa.color_at(0, 0), cfg.cfa.color_at(0, 1)],
                    [cfg.cfa.color_at(1, 0), cfg.cfa.color_at(1, 1)],
                ],
            })
        }
        P::LinearRaw if raw.cpp == 3 => Some(RawLayout::Rgb),
        _ => None,
    };
    if let Some(layout) = layout {
        if len < raw.width * raw.height * raw.cpp {
            return Err(corrupt("the RAW data is shorter than its size says".into()));
        }
        let levels = levels(&raw, tags.as_ref(), active, &mut notes);
        let header = RawHeader {
            width: raw.width,
            height: raw.height,
            orientation,
            layout,
            float,
            levels,
            active,
            crop,
            colour,
            baseline_exposure,
            opcodes,
            notes,
        };
        return Ok((
            Decoded {
                header,
                data: DecodedData::Raw(raw),
            },
            opened,
        ));
    }
    // Other sensors: rawler's levels, demosaic and crops, into camera RGB.
    develop_room(raw.width as u64 * raw.height as u64);
    let (w, h, rgb) = develop_with_rawler(path, &raw)?;
    if !opcodes.is_empty() {
        notes.push("this sensor is developed by rawler: DNG opcodes are not applied".into());
    }
    let header = RawHeader {
        width: w,
        height: h,
        orientation,
        layout: RawLayout::Rgb,
        float: true,
        levels: Levels::unit(),
        active: [0, 0, w, h],
        crop: [0, 0, w, h],
        colour,
        baseline_exposure,
        opcodes: OpcodeLists::default(),
        notes,
    };
    Ok((
        Decoded {
            header,
            data: DecodedData::Rgb(rgb),
        },
        opened,
    ))
}

/// Whether a DNG's image data is VC-5 compressed (Compression 9: GoPro's GPR).
fn vc5_compressed(decoder: &dyn rawler::decoders::Decoder) -> bool {
    if decoder.format_hint() != rawler::decoders::FormatHint::DNG {
        return false;
    }
    let Ok(Some(root)) = decoder.ifd(WellKnownIFD::Root) else {
        return false;
    };
    let vc5 = |ifd: &IFD| {
        ifd.get_entry(rawler::tags::TiffCommonTag::Compression)
            .is_some_and(|e| e.value.get_u32(0).ok().flatten() == Some(9))
    };
    vc5(&root)
        || root
            .get_sub_ifd_all(rawler::tags::TiffCommonTag::SubIFDs)
            .is_some_and(|subs| subs.iter().any(vc5))
}

/// The black and white levels of a RAW, with the DNG's per-row and per-column deltas.
fn levels(
    raw: &rawler::RawImage,
    tags: Option<&DngTags>,
    active: [usize; 4],
    notes: &mut Vec<String>,
) -> Levels {
    let bl = &raw.blacklevel;
    let planes = raw.cpp.max(1);
    let mut black = bl.as_vec();
    let mut repeat = [bl.height.max(1), bl.width.max(1)];
    if bl.cpp != planes || black.len() != repeat[0] * repeat[1] * planes {
        // A pattern rawler gave for another sample layout: its mean, for every sample.
        let mean = black.iter().sum::<f32>() / black.len().max(1) as f32;
        notes.push(format!(
            "the black level pattern ({} values for {} planes) does not fit the data; {mean} is used",
            black.len(),
            planes
        ));
        black = vec![mean; planes];
        repeat = [1, 1];
    }
    let white: Vec<f32> = raw.whitelevel.0.iter().map(|&v| v as f32).collect();
    let (delta_h, delta_v) = match tags {
        Some(t) => (
            t.floats(50715, active[2]).unwrap_or_default(),
            t.floats(50716, active[3]).unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Levels {
        black,
        repeat,
        // rawler already moved mosaic patterns to the sample grid's origin for DNGs (it
        // shifts the CFA); DNG black patterns and deltas start at the ActiveArea.
        origin: if tags.is_some() {
            [active[0], active[1]]
        } else {
            [0, 0]
        },
        delta_h,
        delta_v,
        white: if white.is_empty() {
            vec![65535.0]
        } else {
            white
        },
    }
}

/// Sensors our develop does not handle (X-Trans, monochrome, other CFAs): rawler's
/// levels, demosaic and crops, giving camera RGB in 0..1 of the white level.
fn develop_with_rawler(
    path: &Path,
    raw: &rawler::RawImage,
) -> Result<(usize, usize, Vec<f32>), JobError> {
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let develop = RawDevelop::new_with(&[
        ProcessingStep::Rescale,
        ProcessingStep::Demosaic,
        ProcessingStep::CropActiveArea,
        ProcessingStep::CropDefault,
    ]);
    let inter = develop
        .develop_intermediate(raw)
        .map_err(|e| corrupt(format!("cannot develop the RAW ({e})")))?;
    match inter {
        Intermediate::ThreeColor(px) => Ok((px.width, px.height, px.data.into_flattened())),
        Intermediate::Monochrome(px) => Ok((
            px.width,
            px.height,
            px.data.iter().flat_map(|&v| [v, v, v]).collect(),
        )),
        Intermediate::FourColor(_) => Err(JobError::file(
            ErrorCode::UnsupportedFormat,
            path,
            "four-colour (CYGM) sensors are not supported yet",
        )),
    }
}

/// Colour facts of a non-DNG RAW: rawler's camera matrices (from Adobe's published
/// coefficients) and the white balance it reads from the maker notes.
fn camera_colour(raw: &rawler::RawImage) -> ColourFacts {
    let mut calibrations: Vec<Calibration> = raw
        .color_matrix
        .iter()
        .filter_map(|(ill, m)| {
            let m = matrix(m)?;
            Some(Calibration {
                illuminant: *ill as u16,
                color_matrix: Some(m),
                ..Default::default()
            })
        })
        .collect();
    // A stable order (the map has none): by illuminant code.
    calibrations.sort_by_key(|c| c.illuminant);
    let wb = raw.wb_coeffs;
    let neutral = (wb[..3].iter().all(|v| v.is_finite() && *v > 0.0))
        .then(|| [1.0 / wb[0] as f64, 1.0 / wb[1] as f64, 1.0 / wb[2] as f64]);
    ColourFacts {
        origin: format!(
            "rawler's camera data for {} {}",
            raw.clean_make, raw.clean_model
        ),
        calibrations,
        as_shot_neutral: neutral,
        ..Default::default()
    }
}

fn matrix(v: &[f32]) -> Option<M3> {
    (v.len() >= 9).then(|| {
        [
            [v[0] as f64, v[1] as f64, v[2] as f64],
            [v[3] as f64, v[4] as f64, v[5] as f64],
            [v[6] as f64, v[7] as f64, v[8] as f64],
        ]
    })
}

/// The DNG's IFDs: IFD 0 (camera profile, white balance) and the raw IFD (levels, areas,
/// opcodes). A tag is looked up in IFD 0 first, then in the raw IFD.
struct DngTags {
    root: Option<std::rc::Rc<IFD>>,
    raw: Option<std::rc::Rc<IFD>>,
}

impl DngTags {
    fn entry(&self, tag: u16) -> Option<&rawler::formats::tiff::Entry> {
        self.root
            .as_ref()
            .and_then(|i| i.get_entry(tag))
            .or_else(|| self.raw.as_ref().and_then(|i| i.get_entry(tag)))
    }

    fn raw_entry(&self, tag: u16) -> Option<&rawler::formats::tiff::Entry> {
        self.raw
            .as_ref()
            .and_then(|i| i.get_entry(tag))
            .or_else(|| self.root.as_ref().and_then(|i| i.get_entry(tag)))
    }

    /// The tag's numbers, when it has exactly `n` that read as numbers.
    fn floats(&self, tag: u16, n: usize) -> Option<Vec<f32>> {
        let e = self.raw_entry(tag)?;
        if e.count() as usize != n {
            return None;
        }
        (0..n).map(|i| e.value.get_f32(i).ok().flatten()).collect()
    }

    fn numbers(&self, tag: u16) -> Option<Vec<f64>> {
        let e = self.entry(tag)?;
        (0..e.count() as usize)
            .map(|i| e.value.get_f32(i).ok().flatten().map(|v| v as f64))
            .collect()
    }

    fn m3(&self, tag: u16) -> Option<M3> {
        self.numbers(tag)
            .filter(|v| v.len() == 9)
            .map(|v| [[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]])
    }

    fn v3(&self, tag: u16) -> Option<V3> {
        self.numbers(tag)
            .filter(|v| v.len() == 3)
            .map(|v| [v[0], v[1], v[2]])
    }

    fn text(&self, tag: u16) -> String {
        self.entry(tag)
            .and_then(|e| e.value.as_string().cloned())
            .unwrap_or_default()
            .trim_end_matches('\0')
            .to_string()
    }

    fn colour(&self, notes: &mut Vec<String>) -> ColourFacts {
        let illuminant = |tag: u16| {
            self.numbers(tag)
                .and_then(|v| v.first().copied())
                .map(|v| v as u16)
        };
        let (i1, i2) = (illuminant(50778).unwrap_or(21), illuminant(50779));
        // CameraCalibration is for the camera the profile was made for only: the SDK uses it
        // when both signatures are set and equal, and (legacy files) when neither is set
        // and the illuminants are the classic A + D65 pair.
        let (cam_sig, prof_sig) = (self.text(50931), self.text(50932));
        let use_cc = if cam_sig.is_empty() && prof_sig.is_empty() {
            i1 == 17 && i2 == Some(21)
        } else {
            cam_sig == prof_sig
        };
        let cc = |tag: u16| if use_cc { self.m3(tag) } else { None };
        if !use_cc && (self.m3(50723).is_some() || self.m3(50724).is_some()) {
            notes.push(if cam_sig.is_empty() && prof_sig.is_empty() {
                "CameraCalibration is not used: no signature ties it to this profile (as in the DNG SDK)".into()
            } else {
                "CameraCalibration is for another profile (signatures differ); not used".into()
            });
        }
        let mut calibrations = vec![Calibration {
            illuminant: i1,
            color_matrix: self.m3(50721),
            forward_matrix: self.m3(50964),
            camera_calibration: cc(50723),
        }];
        if let Some(i2) = i2 {
            calibrations.push(Calibration {
                illuminant: i2,
                color_matrix: self.m3(50722),
                forward_matrix: self.m3(50965),
                camera_calibration: cc(50724),
            });
        }
        let xy = self
            .numbers(50729)
            .filter(|v| v.len() == 2)
            .map(|v| [v[0], v[1]]);
        ColourFacts {
            origin: "the DNG's colour tags".into(),
            calibrations,
            analog_balance: self.v3(50727),
            as_shot_neutral: self.v3(50728),
            as_shot_white_xy: xy,
        }
    }

    fn baseline_exposure(&self) -> f64 {
        let one = |tag: u16| {
            self.numbers(tag)
                .and_then(|v| v.first().copied())
                .filter(|v| v.is_finite() && v.abs() < 10.0)
                .unwrap_or(0.0)
        };
        one(50730) + one(51109)
    }

    fn opcodes(&self, notes: &mut Vec<String>) -> OpcodeLists {
        let list = |tag: u16, n: u32, notes: &mut Vec<String>| {
            let Some(e) = self.raw_entry(tag) else {
                return Vec::new();
            };
            let bytes = match &e.value {
                rawler::formats::tiff::Value::Undefined(b)
                | rawler::formats::tiff::Value::Byte(b) => b.as_slice(),
                _ => &[],
            };
            opcodes::parse(bytes).unwrap_or_else(|why| {
                notes.push(format!(
                    "OpcodeList{n} cannot be read ({why}); it is not applied"
                ));
                Vec::new()
            })
        };
        OpcodeLists {
            list1: list(51008, 1, notes),
            list2: list(51009, 2, notes),
            list3: list(51022, 3, notes),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rawler::decoders::{Camera, RawLoader, CAMERAS_TOML};

    /// rawler is patched (vendor/rawler/PATCHES.md, 2) to parse one camera definition when a
    /// file asks for it, through an index the build writes, instead of all 738 at start. The
    /// reference here is rawler's own start-up: every definition in one parse, each model
    /// alias in each mode, later entries replacing earlier ones. Every camera it knows must
    /// come back the same from the index, and every headerless file size the same camera.
    #[test]
    fn the_camera_index_finds_what_parsing_every_definition_finds() {
        let all: toml::Value = CAMERAS_TOML.parse().unwrap();
        let mut full = HashMap::new();
        let mut naked = HashMap::new();
        for camera in all["cameras"].as_array().unwrap() {
            let ct = camera.as_table().unwrap();
            let modes = ct.get("modes").and_then(|m| m.as_array());
            let tables: Vec<_> = std::iter::once(ct)
                .chain(modes.into_iter().flatten().map(|m| m.as_table().unwrap()))
                .collect();
            let mut base = Camera::new();
            base.update_from_toml(ct);
            let mut names = vec![(base.model.clone(), base.clean_model.clone())];
            for alias in ct
                .get("model_aliases")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                let name = |i: usize| alias[i].as_str().unwrap().to_string();
                names.push((name(0), name(1)));
            }
            for (model, clean_model) in names {
                for table in &tables {
                    let mut cam = base.clone();
                    cam.update_from_toml(table);
                    cam.model = model.clone();
                    cam.clean_model = clean_model.clone();
                    let key = (cam.make.clone(), cam.model.clone(), cam.mode.clone());
                    if cam.filesize > 0 {
                        naked.insert(cam.filesize, cam.clone());
                    }
                    full.insert(key, cam);
                }
            }
        }
        assert!(full.len() > 1000, "{} cameras", full.len());

        let loader = RawLoader::new();
        for ((make, model, mode), cam) in &full {
            let found = loader.camera(make, model, mode);
            assert_eq!(found.as_ref(), Some(cam), "{make} {model} mode {mode:?}");
        }
        for (size, cam) in &naked {
            assert_eq!(
                loader.naked_camera(*size).as_ref(),
                Some(cam),
                "{size} bytes"
            );
        }
        assert_eq!(
            loader.camera("NIKON CORPORATION", "NIKON D5000", "no such mode"),
            None
        );
        assert_eq!(loader.naked_camera(12345), None);
        assert_eq!(loader.get_cameras(), &full);
    }

    /// The patched lossless-JPEG decoder (vendor/rawler/PATCHES.md 3: predictor 1 through
    /// an 11-bit table) gives what rawler's own decoder gives, and what was encoded: a real
    /// photograph as a Bayer mosaic at 12, 14 and 16 bits, coded in 1, 2 and 4 interleaved
    /// components (as DNG tiles and CR2 slices are), into an offset, padded output, and
    /// narrower than coded. The 16-bit mosaic holds jumps of exactly 32768, the one
    /// difference whose bits DNGs store against the standard (`dng_bug`). Damaged streams
    /// (cut short, bytes changed, a marker in the data) decode to the same samples as
    /// rawler's decoder gives, wherever that one does not panic.
    #[test]
    fn fast_lossless_jpeg_decodes_what_rawler_decodes() {
        use rawler::decompressors::ljpeg::LjpegDecompressor;
        use rawler::ljpeg92::LjpegCompressor;

        let photo = crate::image::test_photo().into_rgb16();
        let (pw, ph) = (512usize, 384usize);
        let x0 = (photo.width() as usize - pw) / 2;
        let y0 = (photo.height() as usize - ph) / 2;
        let mosaic = |bits: u32| -> Vec<u16> {
            let mut m = Vec::with_capacity(pw * ph);
            for y in 0..ph {
                for x in 0..pw {
                    let c = [[0, 1], [1, 2]][y % 2][x % 2];
                    let v = photo.get_pixel((x0 + x) as u32, (y0 + y) as u32)[c];
                    m.push(v >> (16 - bits));
                }
            }
            if bits == 16 {
                for x in (0..pw).step_by(2) {
                    m[7 * pw + x] = 0;
                    m[7 * pw + x + 1] = 32768;
                }
            }
            m
        };
        // Decodes with both decoders into an output `pad` samples wider than `width`,
        // starting at `x`; `None` where rawler's own panics.
        let both = |src: &[u8], dng_bug: bool, width: usize, x: usize, pad: usize| {
            let d = LjpegDecompressor::new_full(src, dng_bug, false).unwrap();
            let stripwidth = x + width + pad;
            let mut fast = vec![7u16; stripwidth * d.height()];
            let mut reference = fast.clone();
            let h = d.height();
            d.decode(&mut fast, x, stripwidth, width, h, false).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                d.decode_reference(&mut reference, x, stripwidth, width, h)
            }));
            match r {
                Ok(Ok(())) => Some((fast, reference, stripwidth)),
                _ => None,
            }
        };
        for bits in [12u8, 14, 16] {
            let m = mosaic(bits as u32);
            for comps in [1usize, 2, 4] {
                let what = format!("{bits} bits, {comps} components");
                let enc = LjpegCompressor::new(&m, pw / comps, ph, comps, bits, 1, 0, 0)
                    .unwrap()
                    .encode()
                    .unwrap();
                // Whole, as coded: the samples that went in.
                let (fast, reference, _) = both(&enc, false, pw, 0, 0).unwrap();
                assert!(fast == m, "{what}: not the encoded samples");
                assert!(reference == fast, "{what}: differs from rawler's decoder");
                // Offset and padded, narrower than coded, and with DNG's 16-bit rule.
                for (dng_bug, width, x, pad) in [
                    (false, pw, 3 * comps, 5),
                    (false, pw - 2 * comps, 0, 0),
                    (true, pw, 0, 0),
                ] {
                    let (fast, reference, stripwidth) = both(&enc, dng_bug, width, x, pad).unwrap();
                    assert!(
                        reference == fast,
                        "{what}, x {x}, width {width}, dng_bug {dng_bug}"
                    );
                    for y in 0..ph {
                        let row = &fast[y * stripwidth + x..][..width];
                        if !dng_bug || bits != 16 {
                            assert!(row == &m[y * pw..][..width], "{what}: row {y}");
                        }
                    }
                }
                // Damaged: cut short, changed bytes, a marker inside the data.
                let mut damaged = vec![enc[..enc.len() * 2 / 3].to_vec(), enc.clone(), enc.clone()];
                let mid = enc.len() / 2;
                for (i, b) in damaged[1][mid..mid + 64].iter_mut().enumerate() {
                    *b = b.wrapping_mul(31).wrapping_add(i as u8);
                }
                damaged[2].splice(mid..mid, [0xff, 0xd9]);
                let mut compared = 0;
                for src in &damaged {
                    if let Some((fast, reference, _)) = both(src, false, pw, 0, 0) {
                        assert!(
                            reference == fast,
                            "{what}: a damaged stream decodes differently"
                        );
                        compared += 1;
                    }
                }
                assert!(
                    compared >= 2,
                    "{what}: rawler's decoder panicked on {} of 3",
                    3 - compared
                );
            }
        }
        // Random damage to the coded data (a fixed sequence): the fast decoder never
        // panics, and wherever rawler's own decoder gets through, both agree.
        let m = mosaic(14);
        let enc = LjpegCompressor::new(&m, pw / 2, ph, 2, 14, 1, 0, 0)
            .unwrap()
            .encode()
            .unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (start, span) = (enc.len() / 10, enc.len() * 9 / 10);
        let mut agreed = 0;
        for round in 0..200 {
            let mut src = enc.clone();
            for _ in 0..1 + next(4) {
                // 0xFF a quarter of the time: stuffing and markers inside the data.
                let byte = if next(4) == 0 { 0xff } else { next(256) as u8 };
                src[start + next(span)] = byte;
            }
            if next(4) == 0 {
                src.truncate(start + next(span));
            }
            if let Some((fast, reference, _)) = both(&src, false, pw, 0, 0) {
                assert!(fast == reference, "damage {round} decodes differently");
                agreed += 1;
            }
        }
        assert!(
            agreed >= 100,
            "rawler's decoder got through {agreed} of 200"
        );
    }
}
