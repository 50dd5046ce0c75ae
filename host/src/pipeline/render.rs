//! Stage 3 — Render: linear pixels → the display-referred base ("the original").
//!
//! A camera RAW arrives scene-referred (the camera's neutral at clip on 1.0). It is
//! rendered the way a raw converter shows it by default, so that intensity 0 looks like
//! what the camera showed:
//!
//! 1. **Baseline exposure** (DNG BaselineExposure + BaselineExposureOffset): a positive one
//!    is a gain whose top is rolled off smoothly into white instead of clipped (the DNG SDK
//!    clips it; that would throw away highlights the RAW holds); a negative one darkens
//!    with the DNG SDK's exposure curve, which keeps white at white.
//! 2. **The default tone curve**: our own rational curve `x(ax+b) / (x(x+c)+d)`,
//!    normalised to 1 at 1, fitted to the shape of Adobe's default raw tone curve (the
//!    ACR3 curve, which Lightroom and the DNG SDK use when a profile has none): a slight
//!    toe, mid-grey 0.18 → 0.39 (about +1.1 EV), a long shoulder. Within one 8-bit code of
//!    it everywhere (measured in sRGB); no table is copied.
//! 3. Applied **hue-preserving**, as the DNG SDK applies tone curves (`RefBaselineRGBTone`):
//!    the curve maps the largest and smallest channel, and the middle one keeps its place
//!    between them, so hues do not drift while contrast rises.
//!
//! A TIFF, JPEG or PNG was rendered by whoever made it, so it only has its values brought
//! into 0..1. In both cases values a camera matrix pushes past white are compressed towards
//! white along their hue (rather than clipped per channel, which turns bright skies cyan and
//! skin yellow), and negative values (colours outside Rec.2020) are clipped.

use std::sync::Arc;

use rayon::prelude::*;

use crate::display::{compress_block, BLOCK};
use crate::image::RgbF32;
use crate::ingest::Rendering;
use crate::simd::Simd;

/// The default tone curve's parameters (see the module documentation).
const CURVE: [f64; 4] = [3.2837, 0.086166, 0.198399, 0.048432];

/// The default tone curve on 0..1, linear in and out, `curve(1) == 1`.
pub fn default_curve(x: f64) -> f64 {
    let [a, b, c, d] = CURVE;
    let g = |t: f64| t * (a * t + b) / (t * (t + c) + d);
    (g(x.clamp(0.0, 1.0)) / g(1.0)).clamp(0.0, 1.0)
}

/// Where the highlight roll-off of a positive exposure starts (linear, after the gain).
const KNEE: f64 = 0.5;

/// Exposure of `ev` on a scene value `x` (1.0 = the neutral at clip), into 0..1.
pub fn exposure(x: f64, ev: f64) -> f64 {
    let x = x.max(0.0);
    if ev >= 0.0 {
        let white = ev.exp2();
        let t = (x * white).min(white);
        if t <= KNEE || white <= 1.0 {
            return t.min(1.0);
        }
        // Rolls [KNEE, white] onto [KNEE, 1] with slope 1 at the knee.
        let u = (t - KNEE) / (white - KNEE);
        let a = (white - 1.0) / (1.0 - KNEE);
        KNEE + (1.0 - KNEE) * u * (1.0 + a) / (1.0 + a * u)
    } else {
        // The DNG SDK's negative exposure (`dng_function_exposure_tone`): linear below
        // 0.25, a quadratic above that still reaches 1 at 1.
        let x = x.min(1.0);
        let s = ev.exp2();
        let a = 16.0 / 9.0 * (1.0 - s);
        let b = s - a / 2.0;
        let c = 1.0 - a - b;
        if x <= 0.25 {
            s * x
        } else {
            (a * x + b) * x + c
        }
    }
}

/// Entries of the tone table, indexed by √x over 0..1.
const TABLE: usize = 4096;

/// Exposure and tone curve of one rendering, tabulated.
pub struct Tone {
    /// `curve(exposure(x))` at x = (i / TABLE)².
    table: Box<[f32; TABLE + 1]>,
}

impl Tone {
    /// The tone of a RAW with baseline exposure `ev`.
    pub fn new(ev: f32) -> Tone {
        let mut table = Box::new([0f32; TABLE + 1]);
        for (i, v) in table.iter_mut().enumerate() {
            let s = i as f64 / TABLE as f64;
            *v = default_curve(exposure(s * s, ev as f64)) as f32;
        }
        Tone { table }
    }

    /// The tone of one channel value (0..1; values beyond are clamped).
    #[inline(always)]
    pub fn map(&self, x: f32) -> f32 {
        let s = x.clamp(0.0, 1.0).sqrt() * TABLE as f32;
        let i = (s as usize).min(TABLE - 1);
        let f = s - i as f32;
        self.table[i] + f * (self.table[i + 1] - self.table[i])
    }

    /// Tone of one pixel, hue-preserving: largest and smallest channel through the
    /// curve, the middle one kept at its place between them.
    #[inline(always)]
    pub fn apply(&self, p: &mut [f32]) {
        let v = [p[0], p[1], p[2]].map(|c| c.clamp(0.0, 1.0));
        let (hi, lo) = (v[0].max(v[1]).max(v[2]), v[0].min(v[1]).min(v[2]));
        let (th, tl) = (self.map(hi), self.map(lo));
        if hi - lo <= 1e-7 {
            p[0] = th;
            p[1] = th;
            p[2] = th;
            return;
        }
        let k = (th - tl) / (hi - lo);
        for c in 0..3 {
            p[c] = tl + (v[c] - lo) * k;
        }
    }
}

/// The tone of a rendering, shared between renders of the same exposure.
pub fn tone_for(ev: f32) -> Arc<Tone> {
    use std::sync::Mutex;
    static LAST: Mutex<Option<(u32, Arc<Tone>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match &*last {
        Some((bits, t)) if *bits == ev.to_bits() => t.clone(),
        _ => {
            let t = Arc::new(Tone::new(ev));
            *last = Some((ev.to_bits(), t.clone()));
            t
        }
    }
}

impl Tone {
    /// [`Tone::apply`] over a block of pixels held as one array per channel; the same
    /// values, without a branch per pixel. The table reads are gathers
    /// ([`crate::simd::gather_pairs`]): read one lane at a time they were a third of the
    /// render's time.
    #[inline(always)]
    fn apply_block(
        &self,
        r: &mut [f32; BLOCK],
        g: &mut [f32; BLOCK],
        b: &mut [f32; BLOCK],
        simd: Simd,
    ) {
        let (mut hi, mut lo) = ([0f32; BLOCK], [0f32; BLOCK]);
        for i in 0..BLOCK {
            let v = [r[i], g[i], b[i]].map(|c| c.clamp(0.0, 1.0));
            hi[i] = v[0].max(v[1]).max(v[2]);
            lo[i] = v[0].min(v[1]).min(v[2]);
        }
        let (th, tl) = (self.map_block(&hi, simd), self.map_block(&lo, simd));
        for i in 0..BLOCK {
            let v = [r[i], g[i], b[i]].map(|c| c.clamp(0.0, 1.0));
            let flat = hi[i] - lo[i] <= 1e-7;
            let k = (th[i] - tl[i]) / (hi[i] - lo[i]);
            r[i] = if flat {
                th[i]
            } else {
                tl[i] + (v[0] - lo[i]) * k
            };
            g[i] = if flat {
                th[i]
            } else {
                tl[i] + (v[1] - lo[i]) * k
            };
            b[i] = if flat {
                th[i]
            } else {
                tl[i] + (v[2] - lo[i]) * k
            };
        }
    }

    /// The curve at each of a block's values in 0..=1.
    #[inline(always)]
    fn map_block(&self, x: &[f32; BLOCK], simd: Simd) -> [f32; BLOCK] {
        let (mut s, mut idx) = ([0f32; BLOCK], [0i32; BLOCK]);
        for i in 0..BLOCK {
            s[i] = x[i].clamp(0.0, 1.0).sqrt() * TABLE as f32;
            // `(s as i32).clamp(0, TABLE - 1)`, without Rust's saturating cast, which the
            // compiler turns into one scalar conversion and insert per lane: `max` maps
            // NaN to 0, and the clamped value fits an i32.
            let c = s[i].max(0.0).min((TABLE - 1) as f32);
            // SAFETY: `c` is finite and in 0..TABLE.
            idx[i] = unsafe { c.to_int_unchecked::<i32>() }.clamp(0, TABLE as i32 - 1);
        }
        let (mut a, mut b) = ([0f32; BLOCK], [0f32; BLOCK]);
        crate::simd::gather_pairs(simd, &self.table[..], &idx, &mut a, &mut b);
        let mut out = [0f32; BLOCK];
        for i in 0..BLOCK {
            let f = s[i] - idx[i] as f32;
            out[i] = a[i] + f * (b[i] - a[i]);
        }
        out
    }
}

/// Renders the base in place, with the best kernel this CPU runs.
pub fn render_base(img: &mut RgbF32, rendering: Rendering) {
    render_base_with(img, rendering, Simd::Best)
}

/// [`render_base`] with the kernel `simd` (or the next one down this CPU runs).
#[doc(hidden)]
pub fn render_base_with(img: &mut RgbF32, rendering: Rendering, simd: Simd) {
    let tone = match rendering {
        Rendering::AsIs => None,
        Rendering::Camera { exposure_ev } => Some(tone_for(exposure_ev)),
    };
    let simd = simd.available();
    img.data
        .par_chunks_mut(3 * 4096)
        .for_each(|chunk| render_chunk(chunk, tone.as_deref(), simd));
}

/// [`render_base`], and the area-averaged downscale of its result to `long_edge` (the
/// preview, [`crate::resample::downscale`]), in one pass over the picture: each row is
/// averaged right after it is rendered, while it is in cache. The same bits as the two
/// one after the other.
pub fn render_base_and_downscale(
    img: &mut RgbF32,
    rendering: Rendering,
    long_edge: usize,
) -> RgbF32 {
    let tone = match rendering {
        Rendering::AsIs => None,
        Rendering::Camera { exposure_ev } => Some(tone_for(exposure_ev)),
    };
    let simd = Simd::Best.available();
    crate::resample::downscale_after(img, long_edge, |row| {
        render_chunk(row, tone.as_deref(), simd)
    })
}

fn render_chunk(chunk: &mut [f32], tone: Option<&Tone>, simd: Simd) {
    #[inline(always)]
    fn plain(chunk: &mut [f32], tone: Option<&Tone>, simd: Simd) {
        for part in chunk.chunks_mut(3 * BLOCK) {
            let mut px = [[0f32; BLOCK]; 3];
            crate::simd::split_rgb(simd, part, &mut px);
            let [r, g, b] = &mut px;
            compress_block(r, g, b);
            if let Some(t) = tone {
                t.apply_block(r, g, b, simd);
            }
            crate::simd::merge_rgb(simd, &px, part);
        }
    }
    crate::simd::dispatch!(simd, plain(chunk: &mut [f32], tone: Option<&Tone>, simd: Simd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::compress_to_display;

    /// Every kernel renders a real photo's linear data (pushed past white, so the
    /// compression runs too) to the values of the pixel-at-a-time functions, to the bit.
    #[test]
    fn every_kernel_renders_like_the_pixel_functions() {
        let photo = crate::image::test_photo().to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        // Linear, 1.5 stops over, with a colour matrix's negative lobes.
        let data: Vec<f32> = photo
            .into_raw()
            .chunks_exact(3)
            .flat_map(|p| {
                let l = [p[0], p[1], p[2]].map(|v| v * v * 2.8);
                [l[0] * 1.2 - 0.1 * l[1], l[1], l[2] * 1.1 - 0.05 * l[0]]
            })
            .collect();
        for rendering in [
            Rendering::AsIs,
            Rendering::Camera { exposure_ev: 0.0 },
            Rendering::Camera { exposure_ev: 1.3 },
            Rendering::Camera { exposure_ev: -0.7 },
        ] {
            let mut want = data.clone();
            let tone = Tone::new(match rendering {
                Rendering::Camera { exposure_ev } => exposure_ev,
                Rendering::AsIs => 0.0,
            });
            for p in want.chunks_exact_mut(3) {
                compress_to_display(p);
                if matches!(rendering, Rendering::Camera { .. }) {
                    tone.apply(p);
                }
            }
            for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
                if simd.available() != simd {
                    continue;
                }
                let mut img = RgbF32::new(w, h, data.clone());
                render_base_with(&mut img, rendering, simd);
                assert!(
                    img.data
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{simd:?} {rendering:?}"
                );
            }
        }
    }

    /// Rendering with the preview made in the same pass gives the base and the preview of
    /// rendering first and downscaling after, to the bit.
    #[test]
    fn the_preview_made_while_rendering_is_the_preview_of_the_render() {
        let photo = crate::image::test_photo().to_rgb32f();
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let data: Vec<f32> = photo.into_raw().iter().map(|v| v * v * 2.2).collect();
        for rendering in [Rendering::AsIs, Rendering::Camera { exposure_ev: 0.6 }] {
            let mut want = RgbF32::new(w, h, data.clone());
            render_base(&mut want, rendering);
            for long_edge in [w.max(h) / 5, w.max(h)] {
                let mut got = RgbF32::new(w, h, data.clone());
                let preview = render_base_and_downscale(&mut got, rendering, long_edge);
                assert!(got.data == want.data, "{rendering:?} base");
                let want_preview = crate::resample::downscale(&want, long_edge);
                assert!(
                    preview.data == want_preview.data,
                    "{rendering:?} {long_edge}"
                );
            }
        }
    }

    #[test]
    fn the_default_curve_lifts_mid_grey_like_a_raw_converter_and_keeps_black_and_white() {
        assert_eq!(default_curve(0.0), 0.0);
        assert!((default_curve(1.0) - 1.0).abs() < 1e-12);
        // Mid-grey about +1.1 EV; a slight toe; a shoulder far below the diagonal's slope.
        let mid = default_curve(0.18);
        assert!((0.37..0.40).contains(&mid), "{mid}");
        assert!(default_curve(0.005) < 0.005);
        let slope_top = (default_curve(1.0) - default_curve(0.99)) / 0.01;
        assert!(slope_top < 0.3, "{slope_top}");
        let mut last = 0.0;
        for i in 1..=1000 {
            let y = default_curve(i as f64 / 1000.0);
            assert!(y > last, "monotone at {i}");
            last = y;
        }
    }

    #[test]
    fn positive_exposure_rolls_highlights_off_instead_of_clipping_them() {
        let ev = 1.0;
        // Below the knee: a plain gain.
        assert!((exposure(0.2, ev) - 0.4).abs() < 1e-12);
        // The neutral at clip reaches white exactly, and everything below stays distinct.
        assert!((exposure(1.0, ev) - 1.0).abs() < 1e-12);
        let (a, b) = (exposure(0.8, ev), exposure(0.9, ev));
        assert!(a < b && b < 1.0, "{a} {b}");
        // Negative exposure darkens and keeps white.
        assert!((exposure(0.2, -1.0) - 0.1).abs() < 1e-12);
        assert!((exposure(1.0, -1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_tone_keeps_hue_order_and_neutrals_neutral() {
        let tone = Tone::new(0.0);
        let mut grey = [0.18, 0.18, 0.18];
        tone.apply(&mut grey);
        assert!(
            grey.iter()
                .all(|v| (v - grey[0]).abs() < 1e-7 && (0.37..0.40).contains(v)),
            "{grey:?}"
        );
        let mut skin = [0.40f32, 0.25, 0.15];
        let ratio = (skin[1] - skin[2]) / (skin[0] - skin[2]);
        tone.apply(&mut skin);
        let after = (skin[1] - skin[2]) / (skin[0] - skin[2]);
        assert!((ratio - after).abs() < 1e-5, "hue moved: {ratio} → {after}");
        assert!(skin[0] > skin[1] && skin[1] > skin[2]);
        // The table follows the analytic curve within a fraction of a 16-bit code.
        for i in 0..=200 {
            let x = (i as f32 / 200.0).powi(2);
            let exact = default_curve(x as f64) as f32;
            assert!(
                (tone.map(x) - exact).abs() < 2e-5,
                "{x}: {} vs {exact}",
                tone.map(x)
            );
        }
    }
}
