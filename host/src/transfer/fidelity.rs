//! The fidelity benchmark: how close a transferred edit comes to the same edit made at
//! full resolution, against the peer tools' method (bicubic upscaling of the answer).
//!
//! Known edits — tone curve, colour grade, clarity, vignette, split toning, all of them
//! combined, and a pasted object — are computed on the full-resolution photo (ground
//! truth) and on the 1024-px preview (the "engine's answer"), the answer sent back as PNG
//! or as a 4:2:0 JPEG at quality 90, the way engines send it. Edits work on sRGB-encoded
//! values, as an engine's would. PSNR is measured on sRGB-encoded output.
//!
//! Used by `luminary bench transfer` (prints the table) and by the threshold test in
//! `tests/tests/fidelity.rs`.

use std::time::Instant;

use rayon::prelude::*;

use super::blur::box_blur;
use super::{Mode, Transfer};
use crate::color::OutputSpace;
use crate::error::Cancel;
use crate::image::RgbF32;
use crate::resample as preview;

/// The edits of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// An RGB point curve: S-shaped, lifted blacks.
    ToneCurve,
    /// A warm grade with a saturation boost.
    ColourGrade,
    /// Local contrast (a large-radius unsharp mask on luma, midtones only).
    Clarity,
    /// Darkened corners.
    Vignette,
    /// Teal shadows, orange highlights.
    SplitTone,
    /// All of the above in sequence.
    Combined,
    /// The combined look plus an object pasted into the scene.
    PasteObject,
    /// The combined look's global part only — tone curve, colour grade with saturation,
    /// split toning — what a shoot's look (`look/`) carries. Not in the transfer's table.
    GlobalLook,
}

impl Edit {
    /// Every edit, in table order.
    pub const ALL: [Edit; 7] = [
        Edit::ToneCurve,
        Edit::ColourGrade,
        Edit::Clarity,
        Edit::Vignette,
        Edit::SplitTone,
        Edit::Combined,
        Edit::PasteObject,
    ];

    /// Table label.
    pub fn name(self) -> &'static str {
        match self {
            Edit::ToneCurve => "tone curve",
            Edit::ColourGrade => "colour grade",
            Edit::Clarity => "clarity",
            Edit::Vignette => "vignette",
            Edit::SplitTone => "split tone",
            Edit::Combined => "combined look",
            Edit::PasteObject => "paste object",
            Edit::GlobalLook => "global look",
        }
    }

    /// How the transfer treats it.
    pub fn mode(self) -> Mode {
        if self == Edit::PasteObject {
            Mode::Content
        } else {
            Mode::Look
        }
    }
}

fn luma(p: &[f32]) -> f32 {
    0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2]
}

fn tone(v: f32) -> f32 {
    let s = v * v * (3.0 - 2.0 * v);
    (0.03 + 0.97 * (0.55 * s + 0.45 * v)).clamp(0.0, 1.0)
}

fn grade(p: &mut [f32]) {
    let (r, g, b) = (p[0], p[1], p[2]);
    let mut q = [
        1.06 * r + 0.03 * g + 0.01,
        0.02 * r + 0.97 * g + 0.02 * b,
        0.04 * g + 0.86 * b + 0.01,
    ];
    let y = luma(&q);
    for c in &mut q {
        *c = y + 1.25 * (*c - y);
    }
    for c in 0..3 {
        p[c] = q[c].clamp(0.0, 1.0);
    }
}

fn split_tone(p: &mut [f32]) {
    let y = luma(p).clamp(0.0, 1.0);
    let (sh, hi) = ((1.0 - y) * (1.0 - y), y * y);
    let add = [
        -0.04 * sh + 0.06 * hi,
        0.01 * sh + 0.015 * hi,
        0.05 * sh - 0.05 * hi,
    ];
    for c in 0..3 {
        p[c] = (p[c] + add[c]).clamp(0.0, 1.0);
    }
}

fn vignette(img: &mut RgbF32) {
    let (w, h) = (img.width, img.height);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let rmax = (cx * cx + cy * cy).sqrt();
    img.par_rows_mut().for_each(|(y, row)| {
        let dy = (y as f32 + 0.5 - cy) / rmax;
        for (x, p) in row.chunks_exact_mut(3).enumerate() {
            let dx = (x as f32 + 0.5 - cx) / rmax;
            let r2 = dx * dx + dy * dy;
            let f = 1.0 - 0.5 * r2 * r2.sqrt().sqrt();
            for v in p.iter_mut() {
                *v *= f;
            }
        }
    });
}

fn clarity(img: &mut RgbF32) {
    let (w, h) = (img.width, img.height);
    let l: Vec<f32> = img.data.chunks_exact(3).map(luma).collect();
    // Radius 1.2 % of the long edge, so the edit is the same picture at any size.
    let r = ((w.max(h) as f32 * 0.012).round() as usize).max(1);
    let mut blur = l.clone();
    for _ in 0..3 {
        blur = crate::engine::filters::box_mean(&blur, w, h, r);
    }
    img.data
        .par_chunks_mut(3)
        .zip(l.par_iter().zip(blur.par_iter()))
        .for_each(|(p, (&y, &b))| {
            let amount = 0.7 * 4.0 * y.clamp(0.0, 1.0) * (1.0 - y.clamp(0.0, 1.0));
            let d = amount * (y - b);
            for v in p.iter_mut() {
                *v = (*v + d).clamp(0.0, 1.0);
            }
        });
}

/// The pasted object: a bright disc with a textured ring, at a fixed place in picture
/// coordinates, drawn at the resolution of the image it is pasted into (as an engine
/// would draw it at its resolution).
fn paste(img: &mut RgbF32) {
    let h = img.height as f32;
    let (cx, cy, rad) = paste_disc(img.width, img.height);
    img.par_rows_mut().for_each(|(y, row)| {
        let fy = y as f32 + 0.5;
        for (x, p) in row.chunks_exact_mut(3).enumerate() {
            let fx = x as f32 + 0.5;
            let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt() / rad;
            if d < 1.0 {
                // Anti-aliased edge one preview pixel wide, whatever the resolution.
                let edge = ((1.0 - d) * rad / (h / 683.0)).clamp(0.0, 1.0);
                let ring = 0.5 + 0.5 * (d * 18.0).cos();
                let obj = [0.92 - 0.3 * d, 0.55 + 0.25 * ring * d, 0.18 + 0.1 * ring];
                for c in 0..3 {
                    p[c] += edge * (obj[c] - p[c]);
                }
            }
        }
    });
}

/// Centre and radius of the pasted object in an image of `w`×`h`.
fn paste_disc(w: usize, h: usize) -> (f32, f32, f32) {
    (0.68 * w as f32, 0.36 * h as f32, 0.09 * h as f32)
}

/// Applies `edit` to sRGB-encoded `img` in place.
pub fn apply_edit(edit: Edit, img: &mut RgbF32) {
    let per_pixel = |img: &mut RgbF32, f: &(dyn Fn(&mut [f32]) + Sync)| {
        img.data.par_chunks_mut(3).for_each(f);
    };
    match edit {
        Edit::ToneCurve => per_pixel(img, &|p| p.iter_mut().for_each(|v| *v = tone(*v))),
        Edit::ColourGrade => per_pixel(img, &grade),
        Edit::Clarity => clarity(img),
        Edit::Vignette => vignette(img),
        Edit::SplitTone => per_pixel(img, &split_tone),
        Edit::Combined => {
            clarity(img);
            per_pixel(img, &|p| {
                p.iter_mut().for_each(|v| *v = tone(*v));
                grade(p);
                split_tone(p);
            });
            vignette(img);
        }
        Edit::PasteObject => {
            apply_edit(Edit::Combined, img);
            paste(img);
        }
        Edit::GlobalLook => per_pixel(img, &|p| {
            p.iter_mut().for_each(|v| *v = tone(*v));
            grade(p);
            split_tone(p);
        }),
    }
}

/// How the engine's answer travels back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFormat {
    /// Lossless 8-bit.
    Png,
    /// Quality 90, 4:2:0 chroma subsampling.
    Jpeg90,
}

/// sRGB-encoded → working space (linear Rec. 2020).
pub fn srgb_to_working(img: &RgbF32) -> RgbF32 {
    crate::color::to_working(img.width, img.height, img.data.clone(), None)
        .expect("sRGB always converts")
}

/// Working space → sRGB-encoded 0..1.
pub fn working_to_srgb(img: &RgbF32) -> RgbF32 {
    let enc = OutputSpace::Srgb.encoder();
    let mut out = vec![0f32; img.data.len()];
    out.par_chunks_mut(3)
        .zip(img.data.par_chunks(3))
        .for_each(|(o, p)| o.copy_from_slice(&enc.encode(p)));
    RgbF32::new(img.width, img.height, out)
}

fn quantize8(img: &RgbF32) -> Vec<u8> {
    img.data
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

fn from8(w: usize, h: usize, v: &[u8]) -> RgbF32 {
    RgbF32::new(w, h, v.iter().map(|&b| b as f32 / 255.0).collect())
}

/// Passes 8-bit sRGB through the answer's format (a JPEG round trip for `Jpeg90`).
pub fn through_format(w: usize, h: usize, rgb8: Vec<u8>, format: AnswerFormat) -> Vec<u8> {
    match format {
        AnswerFormat::Png => rgb8,
        AnswerFormat::Jpeg90 => {
            super::generative::jpeg_round_trip(w, h, rgb8, super::generative::Jpeg::q(90))
        }
    }
}

/// High-frequency detail: luma minus its 5×5 mean, the scale of texture and noise that a
/// look must leave as the camera recorded it.
fn high_pass(img: &[f32], w: usize, h: usize) -> Vec<f32> {
    let luma: Vec<f32> = img
        .par_chunks_exact(3)
        .map(|p| {
            luma(&[
                p[0].clamp(0.0, 1.0),
                p[1].clamp(0.0, 1.0),
                p[2].clamp(0.0, 1.0),
            ])
        })
        .collect();
    super::blur::high_pass(&luma, w, h, 2)
}

/// The detail kept: how a result's high frequencies compare with the ground truth's.
#[derive(Clone, Copy, Debug)]
pub struct Detail {
    /// PSNR of the result's high-pass luma against the truth's (peak 1): texture imprinted
    /// from the answer, or the camera's detail lost, both lower it.
    pub luminary_db: f64,
    /// The result's high-frequency energy over the truth's: 1 is the camera's detail
    /// kept, below 1 lost, above 1 noise added.
    pub luminary_ratio: f64,
    /// The same ratio for bicubic upscaling of the answer.
    pub bicubic_ratio: f64,
}

fn detail(out: &[f32], bicubic: &[f32], truth: &[f32], w: usize, h: usize) -> Detail {
    let (o, b, t) = (
        high_pass(out, w, h),
        high_pass(bicubic, w, h),
        high_pass(truth, w, h),
    );
    let energy = |v: &[f32]| v.par_iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
    let et = energy(&t).max(1e-12);
    let se: f64 = o
        .par_iter()
        .zip(&t)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    Detail {
        luminary_db: 10.0 * (1.0 / (se / t.len() as f64).max(1e-20)).log10(),
        luminary_ratio: energy(&o) / et,
        bicubic_ratio: energy(&b) / et,
    }
}

/// Where a result's error lies: the error (result − truth, sRGB, clipped like [`psnr`])
/// split by scale at about one preview pixel, and each part per pixel into its luma (the
/// channels' mean) and its chroma (what is left). Each figure is the PSNR the picture
/// would have if that part were its only error, so the four mean squares add up to about
/// the total's (exactly for luma against chroma; nearly for the two bands).
///
/// It says which part of the fit a row's loss is in: the low band is the colour the maps
/// give each region; the high band is how they carry the camera's detail (their slopes),
/// and the chroma of both is what a 4:2:0 answer no longer shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorBands {
    /// Scales above about one preview pixel, luma.
    pub low_luma_db: f64,
    /// Scales above about one preview pixel, chroma.
    pub low_chroma_db: f64,
    /// Scales below it, luma.
    pub high_luma_db: f64,
    /// Scales below it, chroma.
    pub high_chroma_db: f64,
}

/// [`ErrorBands`] of `out` against `truth` (`w`×`h`, sRGB-encoded) for a preview `pw`
/// pixels wide, over the pixels where `mask` is above 0.5 (`keep = true`) or below.
pub fn error_bands(
    out: &[f32],
    truth: &[f32],
    w: usize,
    h: usize,
    pw: usize,
    mask: Option<(&[f32], bool)>,
) -> ErrorBands {
    let err: Vec<f32> = out
        .par_iter()
        .zip(truth)
        .map(|(a, b)| a.clamp(0.0, 1.0) - b.clamp(0.0, 1.0))
        .collect();
    // Three passes of a box of radius r ≈ a Gaussian of σ ≈ r: one preview pixel.
    let mut low = err.clone();
    box_blur(&mut low, w, h, 3, (w / pw.max(1)).max(1), 3);
    // Per pixel: the squared luma part (times three channels) and chroma part, low then
    // high band.
    let (sums, n) = err
        .par_chunks_exact(3)
        .zip(low.par_chunks_exact(3))
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|(m, keep)| (m[*i] > 0.5) == keep))
        .map(|(_, (e, l))| {
            let split = |p: [f32; 3]| -> (f64, f64) {
                let y = (p[0] + p[1] + p[2]) / 3.0;
                let c: f64 = p.iter().map(|v| ((v - y) as f64).powi(2)).sum();
                (3.0 * (y as f64).powi(2), c)
            };
            let (ly, lc) = split([l[0], l[1], l[2]]);
            let (hy, hc) = split([e[0] - l[0], e[1] - l[1], e[2] - l[2]]);
            ([ly, lc, hy, hc], 3usize)
        })
        .reduce(
            || ([0.0; 4], 0),
            |a, b| {
                (
                    [
                        a.0[0] + b.0[0],
                        a.0[1] + b.0[1],
                        a.0[2] + b.0[2],
                        a.0[3] + b.0[3],
                    ],
                    a.1 + b.1,
                )
            },
        );
    let db = |se: f64| -10.0 * (se / n.max(1) as f64).max(1e-10).log10();
    ErrorBands {
        low_luma_db: db(sums[0]),
        low_chroma_db: db(sums[1]),
        high_luma_db: db(sums[2]),
        high_chroma_db: db(sums[3]),
    }
}

/// PSNR of two sRGB-encoded pictures (peak 1), optionally only where `mask` (per pixel)
/// is above 0.5 (`keep = true`) or below (`keep = false`).
pub fn psnr(a: &[f32], b: &[f32], mask: Option<(&[f32], bool)>) -> f64 {
    let (se, n) = a
        .par_chunks(3)
        .zip(b.par_chunks(3))
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|(m, keep)| (m[*i] > 0.5) == keep))
        .map(|(_, (p, q))| {
            let mut s = 0f64;
            for c in 0..3 {
                let d = (p[c].clamp(0.0, 1.0) - q[c].clamp(0.0, 1.0)) as f64;
                s += d * d;
            }
            (s, 3usize)
        })
        .reduce(|| (0.0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    let mse = se / n.max(1) as f64;
    if mse <= 0.0 {
        return 99.0;
    }
    10.0 * (1.0 / mse).log10()
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The edit.
    pub edit: Edit,
    /// The answer's format.
    pub format: AnswerFormat,
    /// Bicubic upscaling of the answer vs ground truth (whole picture, or for the pasted
    /// object the unchanged area).
    pub bicubic_db: f64,
    /// Luminary vs ground truth (same area).
    pub luminary_db: f64,
    /// Pasted object only: inside the object, Luminary vs the bicubic-upscaled answer
    /// (how closely the changed region follows the engine), and bicubic vs ground truth.
    pub changed: Option<(f64, f64)>,
    /// High-frequency detail against the truth's.
    pub detail: Detail,
    /// Where Luminary's error lies (same area as `luminary_db`), on a scene made
    /// [`Scene::with_error_bands`].
    pub bands: Option<ErrorBands>,
    /// Fit time.
    pub fit_ms: f64,
    /// What the fit found (registration, notes).
    pub report: super::FitReport,
    /// Apply (slice + blend) throughput at full resolution, wall clock.
    pub apply_mps: f64,
    /// The same per CPU-second of this process: what each core does, independent of
    /// other load on the machine (times the core count is the figure on an idle machine).
    pub apply_mp_per_cpu_s: f64,
}

/// The photo, prepared once for every row.
pub struct Scene {
    /// sRGB-encoded full resolution.
    pub full_srgb: RgbF32,
    /// Working space full resolution (the pipeline's base).
    pub base: RgbF32,
    /// Preview size the engine gets.
    pub preview_size: usize,
    /// Whether rows measure [`ErrorBands`]: about 2 s a row at 24 MP, which only the
    /// benchmark's table reads.
    error_bands: bool,
}

impl Scene {
    /// From an sRGB-encoded photo.
    pub fn new(full_srgb: RgbF32, preview_size: usize) -> Scene {
        let base = srgb_to_working(&full_srgb);
        Scene {
            full_srgb,
            base,
            preview_size,
            error_bands: false,
        }
    }

    /// The same scene, its rows also saying where the error lies ([`Row::bands`]).
    pub fn with_error_bands(self) -> Scene {
        Scene {
            error_bands: true,
            ..self
        }
    }

    /// Runs one row of the table.
    pub fn row(&self, edit: Edit, format: AnswerFormat) -> Row {
        self.row_as(edit, format, edit.mode())
    }

    /// Runs one row with the transfer forced into `mode` (e.g. a pasted object handed to
    /// a look preset's transfer, which must still find and take the changed region).
    /// What the engine saw and what it answered (both in the working space), as the
    /// transfer receives them.
    pub fn answer(&self, edit: Edit, format: AnswerFormat) -> (RgbF32, RgbF32) {
        let (seen, answer_srgb) = self.engine_answer(edit, format, None);
        (seen, srgb_to_working(&answer_srgb))
    }

    /// What the engine saw (working space) and its exact answer (sRGB-encoded), for rows
    /// that degrade the answer in their own way before [`Scene::measure`].
    pub fn exact_answer(&self, edit: Edit) -> (RgbF32, RgbF32) {
        self.engine_answer(edit, AnswerFormat::Png, None)
    }

    /// The preview as the engine received it (working space) and its answer (sRGB).
    fn engine_answer(
        &self,
        edit: Edit,
        format: AnswerFormat,
        moved: Option<super::align::Similarity>,
    ) -> (RgbF32, RgbF32) {
        // What the engine receives: the area-averaged preview, 8-bit sRGB.
        let preview_lin = preview::downscale(&self.base, self.preview_size);
        let (pw, ph) = (preview_lin.width, preview_lin.height);
        let sent8 = quantize8(&working_to_srgb(&preview_lin));
        let seen = srgb_to_working(&from8(pw, ph, &sent8));
        // The engine's answer.
        let mut answer = from8(pw, ph, &sent8);
        apply_edit(edit, &mut answer);
        if let Some(t) = moved {
            answer.data = super::align::warp(&answer.data, pw, ph, t).0;
        }
        let answer8 = through_format(pw, ph, quantize8(&answer), format);
        (seen, from8(pw, ph, &answer8))
    }

    pub fn row_as(&self, edit: Edit, format: AnswerFormat, mode: Mode) -> Row {
        self.row_moved(edit, format, mode, None)
    }

    /// Runs one row with the engine's answer moved (shifted, cropped and rescaled by
    /// `moved`), as generative engines return it.
    pub fn row_moved(
        &self,
        edit: Edit,
        format: AnswerFormat,
        mode: Mode,
        moved: Option<super::align::Similarity>,
    ) -> Row {
        let (seen, answer_srgb) = self.engine_answer(edit, format, moved);
        let lossy = format == AnswerFormat::Jpeg90;
        let mut row = self.measure(edit, mode, &seen, &answer_srgb, lossy, moved.is_none());
        row.format = format;
        row
    }

    /// Runs one row with the exact answer degraded as a generative model would give it
    /// ([`super::generative`]): its canvas, moved content, re-drawn texture, JPEG.
    pub fn row_generative(&self, edit: Edit, d: &super::generative::Degradation) -> Row {
        let (seen, exact) = self.engine_answer(edit, AnswerFormat::Png, None);
        let answer = super::generative::answer(&exact, d);
        let in_place = d.canvas.is_none() && d.geometry.is_none();
        self.measure(
            edit,
            edit.mode(),
            &seen,
            &answer,
            d.jpeg.is_some(),
            in_place,
        )
    }

    /// Transfers `answer_srgb` (any size) learned against `seen`, and scores the result
    /// and bicubic upscaling of the same answer against the edit made at full resolution.
    /// `in_place`: the answer's content lies where the preview's does (not moved, not on
    /// another canvas).
    pub fn measure(
        &self,
        edit: Edit,
        mode: Mode,
        seen: &RgbF32,
        answer_srgb: &RgbF32,
        lossy: bool,
        in_place: bool,
    ) -> Row {
        let (w, h) = (self.base.width, self.base.height);
        let answer_lin = srgb_to_working(answer_srgb);
        // Ground truth.
        let mut truth = self.full_srgb.clone();
        apply_edit(edit, &mut truth);
        // Peer method: the answer, whatever its canvas, stretched to the photo.
        let bicubic = {
            let img = image::ImageBuffer::<image::Rgb<f32>, _>::from_raw(
                answer_srgb.width as u32,
                answer_srgb.height as u32,
                answer_srgb.data.clone(),
            )
            .expect("sizes match");
            let up = image::imageops::resize(
                &img,
                w as u32,
                h as u32,
                image::imageops::FilterType::CatmullRom,
            );
            up.into_raw()
        };
        // Luminary.
        let t = Transfer::fit_answer(seen, &answer_lin, mode, lossy);
        let mut out = self.base.clone();
        let started = Instant::now();
        let cpu0 = super::trace::cpu_seconds();
        t.apply_blend(&mut out, 1.0, &Cancel::default())
            .expect("not cancelled");
        let apply_s = started.elapsed().as_secs_f64();
        let apply_cpu_s = super::trace::cpu_seconds().map_or(f64::NAN, |c| c - cpu0.unwrap_or(c));
        let out_srgb = working_to_srgb(&out);
        let pw = seen.width;

        let (bicubic_db, luminary_db, changed, bands) = if edit == Edit::PasteObject {
            // The changed region, and the unchanged area: everything farther than four
            // preview pixels from the object.
            let (cx, cy, rad) = paste_disc(w, h);
            let margin = 4.0 * w as f32 / pw as f32;
            let dist: Vec<f32> = (0..w * h)
                .into_par_iter()
                .map(|i| {
                    let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
                    ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()
                })
                .collect();
            let grow: Vec<f32> = dist
                .iter()
                .map(|&d| if d < rad + margin { 1.0 } else { 0.0 })
                .collect();
            let core: Vec<f32> = dist
                .iter()
                .map(|&d| if d < rad - margin { 1.0 } else { 0.0 })
                .collect();
            let b = psnr(&bicubic, &truth.data, Some((&grow, false)));
            let l = psnr(&out_srgb.data, &truth.data, Some((&grow, false)));
            // An answer that was moved has its object moved too: the transfer puts it back
            // where the preview had it, so "follows the engine" compares against the
            // object drawn in place, at full resolution.
            let reference = if in_place {
                &bicubic[..]
            } else {
                &truth.data[..]
            };
            let follows = psnr(&out_srgb.data, reference, Some((&core, true)));
            let bic_truth = psnr(&bicubic, &truth.data, Some((&core, true)));
            let bands = self
                .error_bands
                .then(|| error_bands(&out_srgb.data, &truth.data, w, h, pw, Some((&grow, false))));
            (b, l, Some((follows, bic_truth)), bands)
        } else {
            (
                psnr(&bicubic, &truth.data, None),
                psnr(&out_srgb.data, &truth.data, None),
                None,
                self.error_bands
                    .then(|| error_bands(&out_srgb.data, &truth.data, w, h, pw, None)),
            )
        };
        Row {
            edit,
            format: if lossy {
                AnswerFormat::Jpeg90
            } else {
                AnswerFormat::Png
            },
            bicubic_db,
            luminary_db,
            changed,
            detail: detail(&out_srgb.data, &bicubic, &truth.data, w, h),
            bands,
            fit_ms: t.report.fit_ms,
            report: t.report.clone(),
            apply_mps: (w * h) as f64 / 1e6 / apply_s,
            apply_mp_per_cpu_s: (w * h) as f64 / 1e6 / apply_cpu_s,
        }
    }
}

/// Mirror-tiles an image to `ow`×`oh` at its native resolution (I | flipLR(I), rows
/// alternately flipped): a large photo with real detail and no seams, from a smaller one.
pub fn mirror_tile(img: &RgbF32, ow: usize, oh: usize) -> RgbF32 {
    let (w, h) = (img.width, img.height);
    let mut data = vec![0f32; ow * oh * 3];
    data.par_chunks_mut(ow * 3)
        .enumerate()
        .for_each(|(y, row)| {
            let sy = if (y / h) % 2 == 0 {
                y % h
            } else {
                h - 1 - y % h
            };
            for x in 0..ow {
                let sx = if (x / w) % 2 == 0 {
                    x % w
                } else {
                    w - 1 - x % w
                };
                let s = (sy * w + sx) * 3;
                row[x * 3..x * 3 + 3].copy_from_slice(&img.data[s..s + 3]);
            }
        });
    RgbF32::new(ow, oh, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with smooth colour and fine texture (a fixed hash), sRGB 0..1.
    fn textured(w: usize, h: usize) -> Vec<f32> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
                let n = ((i as u32).wrapping_mul(2_654_435_761) >> 24) as f32 / 255.0 - 0.5;
                [
                    0.3 + 0.4 * x + 0.1 * n,
                    0.5 + 0.2 * y + 0.1 * n,
                    0.4 - 0.2 * x + 0.1 * n,
                ]
            })
            .collect()
    }

    #[test]
    fn error_bands_put_a_cast_low_and_fine_colour_noise_high() {
        let (w, h, pw) = (600, 400, 100);
        let truth = textured(w, h);
        // A brightness lift of 0.01 on every channel: all low-band luma, 40 dB.
        let lifted: Vec<f32> = truth.iter().map(|v| v + 0.01).collect();
        let b = error_bands(&lifted, &truth, w, h, pw, None);
        assert!((b.low_luma_db - 40.0).abs() < 0.01, "{b:?}");
        assert!(b.low_chroma_db > 90.0 && b.high_luma_db > 90.0, "{b:?}");
        assert!(b.high_chroma_db > 90.0, "{b:?}");
        // Red up and blue down by 0.01, the sign flipping pixel by pixel: all high-band
        // chroma, mean square 2·10⁻⁴ / 3 per channel value (41.76 dB).
        let fringed: Vec<f32> = truth
            .chunks_exact(3)
            .enumerate()
            .flat_map(|(i, p)| {
                let s = if (i % w + i / w) % 2 == 0 {
                    0.01
                } else {
                    -0.01
                };
                [p[0] + s, p[1], p[2] - s]
            })
            .collect();
        let b = error_bands(&fringed, &truth, w, h, pw, None);
        assert!((b.high_chroma_db - 41.76).abs() < 0.05, "{b:?}");
        assert!(b.low_chroma_db > 70.0 && b.high_luma_db > 90.0, "{b:?}");
        // Only the masked half is scored.
        let mut mask = vec![0f32; w * h];
        mask[..w * h / 2].fill(1.0);
        let half: Vec<f32> = truth
            .iter()
            .enumerate()
            .map(|(i, v)| if i < w * h * 3 / 2 { *v } else { v + 0.01 })
            .collect();
        let kept = error_bands(&half, &truth, w, h, pw, Some((&mask, true)));
        let left = error_bands(&half, &truth, w, h, pw, Some((&mask, false)));
        assert!(kept.low_luma_db > 50.0, "{kept:?}");
        assert!(left.low_luma_db < 41.0, "{left:?}");
    }
}
