//! Colour: the working space, output spaces with their ICC profiles, and the transforms.
//!
//! Working space, from ingest to encode: **linear light, Rec.2020 primaries, D65**, `f32`,
//! unclipped. It is wide enough for every camera colour photographers print, and linear so
//! that exposure, white balance and blending behave like light. Profiles, matrices and
//! transfer curves come from `moxcms` (no hand-written matrices); this module only builds
//! lookup tables so that encoding 24 MP stays fast and exact to well under one 16-bit code.

use crate::simd::Simd;
use std::sync::{Arc, OnceLock};

use moxcms::{ColorProfile, Layout, ToneReprCurve, TransformOptions};
use serde::{Deserialize, Serialize};

use crate::image::RgbF32;

/// The colour spaces outputs can be written in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OutputSpace {
    /// sRGB IEC 61966-2.1: the web and most screens.
    #[default]
    Srgb,
    /// Display P3: Apple and wide-gamut screens.
    DisplayP3,
    /// Adobe RGB (1998): print workflows.
    AdobeRgb,
    /// ProPhoto RGB (ROMM): Lightroom's own space, for further editing.
    Prophoto,
}

impl OutputSpace {
    /// The name used on the command line and in the protocol.
    pub fn name(self) -> &'static str {
        match self {
            OutputSpace::Srgb => "srgb",
            OutputSpace::DisplayP3 => "display-p3",
            OutputSpace::AdobeRgb => "adobe-rgb",
            OutputSpace::Prophoto => "prophoto",
        }
    }

    /// All spaces, for help texts and tests.
    pub const ALL: [OutputSpace; 4] = [
        OutputSpace::Srgb,
        OutputSpace::DisplayP3,
        OutputSpace::AdobeRgb,
        OutputSpace::Prophoto,
    ];

    fn profile(self) -> ColorProfile {
        match self {
            OutputSpace::Srgb => ColorProfile::new_srgb(),
            OutputSpace::DisplayP3 => ColorProfile::new_display_p3(),
            OutputSpace::AdobeRgb => ColorProfile::new_adobe_rgb(),
            OutputSpace::Prophoto => ColorProfile::new_pro_photo_rgb(),
        }
    }

    /// The ICC profile embedded in outputs of this space.
    pub fn icc(self) -> &'static [u8] {
        static CACHE: [OnceLock<Vec<u8>>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        CACHE[self as usize].get_or_init(|| {
            self.profile()
                .encode()
                .expect("moxcms encodes its built-in profiles")
        })
    }

    /// The encoder from the working space into this space.
    pub fn encoder(self) -> &'static Encoder {
        static CACHE: [OnceLock<Encoder>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        CACHE[self as usize].get_or_init(|| Encoder::new(&self.profile()))
    }
}

/// The working-space profile: Rec.2020 primaries with a linear transfer.
pub fn working_profile() -> ColorProfile {
    let mut p = ColorProfile::new_bt2020();
    let linear = ToneReprCurve::Lut(Vec::new());
    p.red_trc = Some(linear.clone());
    p.green_trc = Some(linear.clone());
    p.blue_trc = Some(linear);
    // Without this moxcms would take the BT.2020 transfer from the CICP tag instead.
    p.cicp = None;
    p
}

/// A 3×3 colour matrix, row by row.
pub type Matrix3 = [[f32; 3]; 3];

/// The linear-light matrices between the working space (Rec. 2020) and sRGB's primaries
/// (Rec. 709), both D65: `(working → sRGB, sRGB → working)`.
pub fn srgb_matrices() -> &'static (Matrix3, Matrix3) {
    static M: OnceLock<(Matrix3, Matrix3)> = OnceLock::new();
    M.get_or_init(|| {
        let srgb = ColorProfile::new_srgb();
        let to = working_profile().transform_matrix(&srgb);
        let from = {
            let mut lin = srgb.clone();
            let linear = ToneReprCurve::Lut(Vec::new());
            lin.red_trc = Some(linear.clone());
            lin.green_trc = Some(linear.clone());
            lin.blue_trc = Some(linear);
            lin.cicp = None;
            lin.transform_matrix(&working_profile())
        };
        (
            to.v.map(|r| r.map(|v| v as f32)),
            from.v.map(|r| r.map(|v| v as f32)),
        )
    })
}

/// Size of the encoding tables. They are indexed by `sqrt(linear)`, where every RGB
/// transfer curve is smooth enough that linear interpolation is exact to ~1e-6.
const LUT_SIZE: usize = 1 << 14;

/// Working space → one output space: a matrix, then the output's transfer curve.
pub struct Encoder {
    matrix: [[f32; 3]; 3],
    /// Fixed size, so the index bound below lets the compiler drop bounds checks.
    lut: Box<[f32; LUT_SIZE + 1]>,
}

impl Encoder {
    fn new(dst: &ColorProfile) -> Self {
        let m = working_profile().transform_matrix(dst);
        let matrix = [
            [m.v[0][0] as f32, m.v[0][1] as f32, m.v[0][2] as f32],
            [m.v[1][0] as f32, m.v[1][1] as f32, m.v[1][2] as f32],
            [m.v[2][0] as f32, m.v[2][1] as f32, m.v[2][2] as f32],
        ];
        let trc = dst
            .red_trc
            .as_ref()
            .expect("RGB output profiles have a TRC");
        let eval = trc
            .make_gamma_evaluator()
            .expect("output TRC is invertible");
        let mut lut = Box::new([0f32; LUT_SIZE + 1]);
        for (i, v) in lut.iter_mut().enumerate() {
            let t = i as f32 / LUT_SIZE as f32;
            *v = eval.evaluate_value(t * t).clamp(0.0, 1.0);
        }
        Encoder { matrix, lut }
    }

    /// Encodes one linear value of the output space's primaries to 0..1.
    #[inline(always)]
    pub fn transfer(&self, linear: f32) -> f32 {
        let t = Self::position(linear);
        let i = Self::index(t);
        let f = t - i as f32;
        let (a, b) = (self.lut[i], self.lut[i + 1]);
        a + (b - a) * f
    }

    /// Where `linear` falls in the table: `sqrt` of it clipped to 0..1 (NaN counts as 0:
    /// `max` and `min` drop it, and compile to one instruction each where `clamp`'s NaN
    /// rule does not), times the table's size.
    #[inline(always)]
    // `max` then `min` drop NaN; `clamp` would keep it and index the table with it.
    #[allow(clippy::manual_clamp)]
    fn position(linear: f32) -> f32 {
        linear.max(0.0).min(1.0).sqrt() * LUT_SIZE as f32
    }

    /// The table entry left of `position`, which is finite and in 0..=LUT_SIZE.
    #[inline(always)]
    fn index(position: f32) -> usize {
        // SAFETY: `position` is finite and in 0..=LUT_SIZE, so it fits an i32.
        let i = unsafe { position.to_int_unchecked::<i32>() };
        i.clamp(0, LUT_SIZE as i32 - 1) as usize
    }

    /// Working-space pixel → encoded output pixel, 0..1, clipped to the output gamut.
    #[inline(always)]
    pub fn encode(&self, p: &[f32]) -> [f32; 3] {
        let m = &self.matrix;
        let r = m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] * p[2];
        let g = m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] * p[2];
        let b = m[2][0] * p[0] + m[2][1] * p[1] + m[2][2] * p[2];
        [self.transfer(r), self.transfer(g), self.transfer(b)]
    }

    /// Interleaved working-space pixels → interleaved 16-bit code values (`dst` as long as
    /// `src`), with the best kernel this CPU runs: the same values as [`Encoder::encode`]
    /// one pixel at a time, a block of pixels split into channel arrays so it vectorises.
    pub fn encode_u16(&self, src: &[f32], dst: &mut [u16], simd: Simd) {
        assert_eq!(src.len(), dst.len());
        let e = self;
        crate::simd::dispatch!(simd, Encoder::encode_u16_plain(e: &Encoder, src: &[f32], dst: &mut [u16], simd: Simd))
    }

    #[inline(always)]
    // `max` then `min` drop NaN, which the unchecked cast below relies on; `clamp` keeps it.
    #[allow(clippy::manual_clamp)]
    fn encode_u16_plain(&self, src: &[f32], dst: &mut [u16], simd: Simd) {
        self.blocks(src, dst, simd, |_, v, _| {
            // `(v * 65535.0 + 0.5) as u16` for v in 0..=1 (the table's range), without the
            // saturating cast, which the compiler builds one lane at a time.
            let x = v.max(0.0).min(1.0) * 65535.0 + 0.5;
            // SAFETY: `x` is finite and in 0.5..=65535.5.
            unsafe { x.to_int_unchecked::<i32>() as u16 }
        })
    }

    /// Interleaved working-space pixels of row `y` → interleaved 8-bit code values with
    /// triangular dither ([`tpdf`], by position so a picture always dithers the same),
    /// with the best kernel this CPU runs: the same values as [`Encoder::encode`] and the
    /// dither one pixel at a time.
    pub fn encode_u8_dithered(&self, src: &[f32], dst: &mut [u8], y: u32, simd: Simd) {
        assert_eq!(src.len(), dst.len());
        let e = self;
        crate::simd::dispatch!(simd, Encoder::encode_u8_dithered_plain(e: &Encoder, src: &[f32], dst: &mut [u8], y: u32, simd: Simd))
    }

    #[inline(always)]
    // As `encode_u16_plain`: NaN must not survive to the unchecked cast.
    #[allow(clippy::manual_clamp)]
    fn encode_u8_dithered_plain(&self, src: &[f32], dst: &mut [u8], y: u32, simd: Simd) {
        self.blocks(src, dst, simd, |c, v, x| {
            let q = (v * 255.0 + 0.5 + tpdf(x, y, c)).max(0.0).min(255.0);
            // SAFETY: `q` is finite (`max` drops NaN) and in 0..=255; as for 16 bits.
            unsafe { q.to_int_unchecked::<i32>() as u8 }
        })
    }

    /// [`Encoder::transfer`] over a block: the same arithmetic, with the table read by
    /// [`crate::simd::gather_pairs`].
    #[inline(always)]
    fn transfer_block(&self, simd: Simd, v: &mut [f32; BLOCK]) {
        let (mut t, mut idx) = ([0f32; BLOCK], [0i32; BLOCK]);
        for i in 0..BLOCK {
            t[i] = Self::position(v[i]);
            idx[i] = Self::index(t[i]) as i32;
        }
        let (mut a, mut b) = ([0f32; BLOCK], [0f32; BLOCK]);
        crate::simd::gather_pairs(simd, &self.lut[..], &idx, &mut a, &mut b);
        for i in 0..BLOCK {
            let f = t[i] - idx[i] as f32;
            v[i] = a[i] + (b[i] - a[i]) * f;
        }
    }

    /// The kernels' one loop: a block of pixels split into channel arrays, the matrix,
    /// the transfer curve over each channel's block, `code` per sample (channel, encoded
    /// value, x), interleaved back. Inlined into each caller, so it is compiled with the
    /// caller's instruction set.
    #[inline(always)]
    fn blocks<T: Copy + Default>(
        &self,
        src: &[f32],
        dst: &mut [T],
        simd: Simd,
        code: impl Fn(u32, f32, u32) -> T,
    ) {
        let m = &self.matrix;
        for (b, (s, d)) in src
            .chunks(3 * BLOCK)
            .zip(dst.chunks_mut(3 * BLOCK))
            .enumerate()
        {
            let mut px = [[0f32; BLOCK]; 3];
            crate::simd::split_rgb(simd, s, &mut px);
            let mut lin = [[0f32; BLOCK]; 3];
            for (c, l) in lin.iter_mut().enumerate() {
                for i in 0..BLOCK {
                    l[i] = m[c][0] * px[0][i] + m[c][1] * px[1][i] + m[c][2] * px[2][i];
                }
                self.transfer_block(simd, l);
            }
            let x0 = (b * BLOCK) as u32;
            let mut out = [[T::default(); BLOCK]; 3];
            for c in 0..3 {
                for i in 0..BLOCK {
                    out[c][i] = code(c as u32, lin[c][i], x0 + i as u32);
                }
            }
            for (i, o) in d.chunks_exact_mut(3).enumerate() {
                o[0] = out[0][i];
                o[1] = out[1][i];
                o[2] = out[2][i];
            }
        }
    }
}

/// Pixels per block of the encode kernels: three channel arrays of it stay in registers
/// and L1.
const BLOCK: usize = 64;

/// Triangular (TPDF) dither noise in (-1, 1) code values for sample `c` of pixel (x, y):
/// a hash of the position, so the same picture always gets the same dither (outputs are
/// reproducible) and no two neighbours share it.
#[inline(always)]
pub fn tpdf(x: u32, y: u32, c: u32) -> f32 {
    let mut h =
        x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ c.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    let a = (h & 0xffff) as f32 / 65535.0;
    let b = (h >> 16) as f32 / 65535.0;
    a - b
}

/// Converts encoded RGB (0..1) described by `icc` (sRGB when none) into the working space.
///
/// Errors name what is wrong with the profile; callers add the file name.
pub fn to_working(
    width: usize,
    height: usize,
    encoded: Vec<f32>,
    icc: Option<&[u8]>,
) -> Result<RgbF32, String> {
    samples_to_working(width, height, &encoded, |v| v, icc)
}

/// [`to_working`] from integer samples, each made 0..1 by `unit` as it is converted: an
/// 8- or 16-bit photo goes into the working space in one parallel pass, without a
/// full-size 0..1 copy first.
pub fn samples_to_working<T: Copy + Sync>(
    width: usize,
    height: usize,
    encoded: &[T],
    unit: impl Fn(T) -> f32 + Sync,
    icc: Option<&[u8]>,
) -> Result<RgbF32, String> {
    let src = match icc {
        Some(bytes) => ColorProfile::new_from_slice(bytes)
            .map_err(|e| format!("unreadable ICC profile: {e}"))?,
        None => ColorProfile::new_srgb(),
    };
    let options = TransformOptions {
        allow_use_cicp_transfer: false,
        ..TransformOptions::default()
    };
    let transform: Arc<_> = src
        .create_transform_f32(Layout::Rgb, &working_profile(), Layout::Rgb, options)
        .map_err(|e| format!("unsupported ICC profile: {e}"))?;
    use rayon::prelude::*;
    const CHUNK: usize = 3 * 4096;
    // Every sample is written by the transform below.
    let mut out = crate::memory::reusable_f32(encoded.len());
    out.par_chunks_mut(CHUNK)
        .zip(encoded.par_chunks(CHUNK))
        .try_for_each_init(
            || Vec::with_capacity(CHUNK),
            |unit_chunk: &mut Vec<f32>, (dst, src)| {
                unit_chunk.clear();
                unit_chunk.extend(src.iter().map(|&v| unit(v)));
                transform.transform(unit_chunk, dst)
            },
        )
        .map_err(|e| format!("colour transform failed: {e}"))?;
    Ok(RgbF32::new(width, height, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel quantises a real photo (in the working space, with values past white
    /// and below black) to the code values of `encode` one pixel at a time, in every
    /// output space.
    #[test]
    fn every_kernel_quantises_like_encode_per_pixel() {
        let photo = crate::image::test_photo().to_rgb32f();
        let src: Vec<f32> = photo
            .into_raw()
            .chunks_exact(3)
            .flat_map(|p| [p[0] * p[0] * 1.3 - 0.02, p[1] * p[1], p[2] * p[2] * 1.1])
            .collect();
        for space in [
            OutputSpace::Srgb,
            OutputSpace::DisplayP3,
            OutputSpace::AdobeRgb,
            OutputSpace::Prophoto,
        ] {
            let enc = space.encoder();
            let want: Vec<u16> = src
                .chunks_exact(3)
                .flat_map(|p| enc.encode(p).map(|v| (v * 65535.0 + 0.5) as u16))
                .collect();
            for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
                if simd.available() != simd {
                    continue;
                }
                let mut got = vec![0u16; src.len()];
                enc.encode_u16(&src, &mut got, simd);
                assert!(got == want, "{simd:?} {space:?}");
            }
        }
    }

    /// Every kernel dithers a real photo's rows (values past white and below black, a
    /// width that is not a whole number of blocks) to the 8-bit codes of `encode` and
    /// `tpdf` one pixel at a time, in every output space.
    #[test]
    fn every_kernel_dithers_like_encode_per_pixel() {
        let photo = crate::image::test_photo().to_rgb32f();
        let w = photo.width() as usize;
        assert!(!w.is_multiple_of(64), "the test wants a partial last block");
        let src: Vec<f32> = photo
            .into_raw()
            .chunks_exact(3)
            .flat_map(|p| [p[0] * p[0] * 1.3 - 0.02, p[1] * p[1], p[2] * p[2] * 1.1])
            .collect();
        for space in OutputSpace::ALL {
            let enc = space.encoder();
            for (y, row) in src.chunks_exact(3 * w).enumerate().step_by(7) {
                let want: Vec<u8> = row
                    .chunks_exact(3)
                    .enumerate()
                    .flat_map(|(x, p)| {
                        let e = enc.encode(p);
                        (0..3).map(move |k| {
                            let n = tpdf(x as u32, y as u32, k as u32);
                            (e[k] * 255.0 + 0.5 + n).clamp(0.0, 255.0) as u8
                        })
                    })
                    .collect();
                for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
                    if simd.available() != simd {
                        continue;
                    }
                    let mut got = vec![0u8; row.len()];
                    enc.encode_u8_dithered(row, &mut got, y as u32, simd);
                    assert!(got == want, "{simd:?} {space:?} row {y}");
                }
            }
        }
    }

    /// 8- and 16-bit samples go into the working space exactly as their `image`
    /// conversion to 0..1 would, with no profile and with one.
    #[test]
    fn integer_samples_convert_like_their_float_copy() {
        let photo = crate::image::test_photo();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        for icc in [None, Some(OutputSpace::DisplayP3.icc())] {
            let rgb8 = photo.to_rgb8();
            let want = to_working(w, h, photo.to_rgb32f().into_raw(), icc).unwrap();
            let got = samples_to_working(w, h, rgb8.as_raw(), |v| v as f32 / 255.0, icc).unwrap();
            assert!(got.data == want.data, "8-bit, profile {}", icc.is_some());
            let rgb16 = photo.to_rgb16();
            let want = to_working(
                w,
                h,
                ::image::DynamicImage::ImageRgb16(rgb16.clone())
                    .into_rgb32f()
                    .into_raw(),
                icc,
            )
            .unwrap();
            let got =
                samples_to_working(w, h, rgb16.as_raw(), |v| v as f32 / 65535.0, icc).unwrap();
            assert!(got.data == want.data, "16-bit, profile {}", icc.is_some());
        }
    }

    fn srgb_oetf(x: f32) -> f32 {
        if x <= 0.0031308 {
            12.92 * x
        } else {
            1.055 * x.powf(1.0 / 2.4) - 0.055
        }
    }

    #[test]
    fn srgb_encoder_matches_the_standard_curve_to_a_fraction_of_a_16_bit_code() {
        let enc = OutputSpace::Srgb.encoder();
        for i in 0..=10_000 {
            let x = i as f32 / 10_000.0;
            let err = (enc.transfer(x) - srgb_oetf(x)).abs() * 65535.0;
            assert!(err < 0.5, "x={x} off by {err} codes");
        }
    }

    #[test]
    fn working_white_and_grey_stay_neutral_in_every_output_space() {
        for space in OutputSpace::ALL {
            let enc = space.encoder();
            for v in [0.18f32, 1.0] {
                let [r, g, b] = enc.encode(&[v, v, v]);
                assert!(
                    (r - g).abs() < 2e-3 && (g - b).abs() < 2e-3,
                    "{space:?} grey {v} -> {r},{g},{b}"
                );
            }
        }
    }

    #[test]
    fn icc_profiles_parse_back() {
        for space in OutputSpace::ALL {
            let p = ColorProfile::new_from_slice(space.icc()).expect("valid ICC");
            assert!(p.red_trc.is_some(), "{space:?}");
        }
    }

    #[test]
    fn srgb_input_round_trips_through_the_working_space() {
        let encoded: Vec<f32> = (0..300).map(|i| (i % 100) as f32 / 99.0).collect();
        let working = to_working(100, 1, encoded.clone(), None).unwrap();
        let enc = OutputSpace::Srgb.encoder();
        for (px, want) in working.data.chunks(3).zip(encoded.chunks(3)) {
            let got = enc.encode(px);
            for c in 0..3 {
                assert!((got[c] - want[c]).abs() < 2e-3, "{:?} vs {:?}", got, want);
            }
        }
    }
}
