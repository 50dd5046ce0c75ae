//! Stage 7 — Transfer: carry an engine's low-resolution edit onto the full-resolution
//! base without losing the camera's detail.
//!
//! AI engines answer with about a megapixel at 8 bits; upscaling that answer would throw
//! away everything the sensor resolved. Instead the *edit* is learned on the preview and
//! re-applied to the original's own pixels:
//!
//! * **Look** (tone, colour, light): a bilateral grid of local affine colour maps fitted
//!   preview → answer ([`grid`]), applied to every full-resolution pixel, plus the
//!   low-resolution residual the grid cannot express (added back bilinearly).
//! * **Content** (objects added or removed): where the answer's content differs from
//!   anything a colour map of the preview could produce, a soft change mask takes the
//!   engine's pixels (upscaled); everywhere else the look transfer keeps the original's
//!   detail. The mask is feathered, so there is no seam.
//! * **Auto**: look presets use the look path but still hand regions with large residuals
//!   (the engine changed content there) to the content path, with a stricter threshold.
//!
//! Domain: the fit and the maps work on `sqrt` of linear working-space values (Rec. 2020
//! primaries). That is close to the gamma the engine's picture was edited in — curves and
//! grades are near-affine there and errors weigh like they look — and costs one `sqrt`
//! and one multiply per sample to enter and leave. The answer is registered to the preview
//! first ([`align`]).

pub mod align;
pub mod blur;
pub mod fidelity;
pub mod generative;
pub mod grid;
pub mod texture;
pub(crate) mod trace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::resample as preview;
use blur::box_blur;
use grid::{Grid, GridShape, K};
use trace::{fit_trace_on, trace};

/// Which transfer to use; from the preset's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Tone, colour, light.
    Look,
    /// Objects added, removed or reshaped.
    Content,
}

/// Thresholds of the change mask, in `sqrt`-domain units (0..1 ≈ black..white), applied
/// to the blurred residual of a robust colour fit.
#[derive(Clone, Copy, Debug)]
struct MaskThresholds {
    low: f32,
    high: f32,
    /// Fraction of the preview that must be flagged before a look transfer uses any mask
    /// (isolated flags are JPEG noise or a sharpened edge, not new content).
    min_area: f32,
}

impl Mode {
    fn thresholds(self) -> MaskThresholds {
        match self {
            Mode::Content => MaskThresholds {
                low: 0.05,
                high: 0.10,
                min_area: 0.0,
            },
            Mode::Look => MaskThresholds {
                low: 0.12,
                high: 0.22,
                min_area: 0.002,
            },
        }
    }
}

/// What the fit found, for logs, results and the benchmark.
#[derive(Clone, Debug)]
pub struct FitReport {
    /// How the answer was moved onto the preview.
    pub motion: align::Affine,
    /// How far that motion was checked.
    pub registration: align::Quality,
    /// Milliseconds the registration took (part of `fit_ms`).
    pub register_ms: f64,
    /// What the job's result should say about the transfer (a registration it could not
    /// trust, and what was done instead); empty when all went as it should.
    pub note: Option<String>,
    /// The bands at the preview's edges the answer did not cover.
    pub uncovered: align::Coverage,
    /// Share of the picture taken from the engine's pixels (content), 0..1.
    pub changed: f32,
    /// Milliseconds the fit took.
    pub fit_ms: f64,
}

impl Default for FitReport {
    fn default() -> FitReport {
        FitReport {
            motion: align::Affine::IDENTITY,
            registration: align::Quality::Identity,
            register_ms: 0.0,
            note: None,
            uncovered: align::Coverage::default(),
            changed: 0.0,
            fit_ms: 0.0,
        }
    }
}

/// A fitted transfer, ready to apply at any resolution.
pub struct Transfer {
    grid: Grid,
    /// The grid's nodes laid out for the apply kernel.
    nodes4: Vec<Line>,
    /// Preview size.
    pw: usize,
    ph: usize,
    /// Per preview pixel: residual (3), then — when `content` — the answer (3) and the
    /// mask (1), all in the `sqrt` domain. Interleaved so one bilinear fetch serves all.
    extras: Vec<f32>,
    content: bool,
    /// What the fit found.
    pub report: FitReport,
}

/// Floats per preview pixel in `extras`: the residual (3) and padding, so every fetch is
/// one 4-wide vector; content adds the mask (in the padding slot) and the answer (3 + 1).
const EXTRA_LOOK: usize = 4;
const EXTRA_CONTENT: usize = 8;

/// Four lanes: r, g, b and padding. Plain arrays with lane-wise loops compile to one SSE
/// instruction each on every x86-64 and NEON on ARM; the padding buys that.
type V4 = [f32; 4];

#[inline(always)]
fn v_madd(acc: V4, w: f32, b: V4) -> V4 {
    [
        acc[0] + w * b[0],
        acc[1] + w * b[1],
        acc[2] + w * b[2],
        acc[3] + w * b[3],
    ]
}

#[inline(always)]
fn v_scale(w: f32, b: V4) -> V4 {
    [w * b[0], w * b[1], w * b[2], w * b[3]]
}

#[inline(always)]
fn v_lerp(a: V4, b: V4, f: f32) -> V4 {
    [
        a[0] + f * (b[0] - a[0]),
        a[1] + f * (b[1] - a[1]),
        a[2] + f * (b[2] - a[2]),
        a[3] + f * (b[3] - a[3]),
    ]
}

/// A grid node as four columns (the r, g, b slopes and the offset), each over the output
/// channels.
type Node4 = [V4; 4];

fn node4(k: &[f32; K]) -> Line {
    Line([
        [k[0], k[1], k[2], 0.0],
        [k[3], k[4], k[5], 0.0],
        [k[6], k[7], k[8], 0.0],
        [k[9], k[10], k[11], 0.0],
    ])
}

/// A node on a cache line of its own: a node read by the kernels never straddles two
/// lines (one 16-wide load with AVX-512).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line(Node4);

fn nodes(v: &[Line]) -> &[Node4] {
    // SAFETY: `Line` is `Node4` (64 bytes) with a stricter alignment and no padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const Node4, v.len()) }
}

/// Nodes as plain floats, 16 per node.
fn floats(v: &[Node4]) -> &[f32] {
    // SAFETY: `Node4` is 16 `f32`s with no padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len() * 16) }
}

fn floats_mut(v: &mut [Line]) -> &mut [f32] {
    // SAFETY: as `floats`; `Line` has no padding either.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut f32, v.len() * 16) }
}

/// `out = a + f·(b − a)` over whole rows of nodes, as wide as the chosen kernel `simd`
/// (already checked by [`Simd::available`]).
fn lerp_nodes(out: &mut [f32], a: &[f32], b: &[f32], f: f32, simd: Simd) {
    #[inline(always)]
    fn plain(out: &mut [f32], a: &[f32], b: &[f32], f: f32) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = a + f * (b - a);
        }
    }
    crate::simd::dispatch!(simd, plain(out: &mut [f32], a: &[f32], b: &[f32], f: f32))
}

fn to_sqrt(lin: &[f32]) -> Vec<f32> {
    lin.par_iter().map(|v| v.max(0.0).sqrt()).collect()
}

/// Brings an answer of any size to the preview's size.
///
/// A larger canvas is area-averaged, which softens it by up to a pixel. Catmull-Rom
/// sampling straight from the canvas instead was measured (24 MP, combined look; the
/// registration's warp kept bilinear): an answer only resampled onto Gemini's canvas gained
/// 0.8–1.4 dB, but with all degradations the blossom's combined look lost 0.4 dB and its
/// clarity 0.9, the portrait's colour grade 1.3 and its vignette 1.7, while the flower's
/// 4:3 rows lost 0.2–0.3. Sampling the registration's warp by Catmull-Rom as well cost
/// the moved answer 0.8 dB. Not taken.
fn to_size(img: &RgbF32, w: usize, h: usize) -> std::borrow::Cow<'_, RgbF32> {
    use std::borrow::Cow;
    if img.width == w && img.height == h {
        return Cow::Borrowed(img);
    }
    if img.width >= w && img.height >= h {
        return Cow::Owned(preview::resize_area(img, w, h));
    }
    Cow::Owned(resize_bilinear(img, w, h))
}

/// An engine's answer registered to the preview it was made from, both in the `sqrt`
/// domain at the preview's size: what every learner of the edit starts from (the transfer
/// here, a shoot's look in `look`).
pub struct Registered {
    /// The preview as the engine saw it, `sqrt` of linear working space.
    pub src: Vec<f32>,
    /// The answer, resized to the preview and moved onto it.
    pub dst: Vec<f32>,
    /// Per preview pixel, 1 where the moved answer covers it (0 outside, soft between);
    /// `None` when the answer needed no moving.
    pub valid: Option<Vec<f32>>,
    /// How the answer was moved, and how far that can be trusted.
    pub registration: align::Registration,
}

/// How deep a band at an edge the answer may leave out before the result says so: the
/// benchmark's moved answers leave out 1–2 % at an edge (a model's own shift and zoom), gpt-image-1's 3:2 canvas 5.6 % at the top and at the bottom of a 4:3 photo.
const UNCOVERED_NOTE: f32 = 0.03;

/// What the result says about edges the answer left out. The look there can only be
/// carried over from the rest of the picture, and a look that varies across the frame
/// (a vignette, clarity) does not carry: on the fidelity bench, a 4:3 portrait on
/// gpt-image-1's canvas comes out at 16.6 dB in its top band against 35.6 dB in the
/// middle. Two remedies were measured and not taken. Extending the covered nodes' maps
/// outward: 16.6 → 17.9 dB at the top, worse on the flower. Sending the photo already
/// at the canvas's shape, its edges mirrored outward and cropped off the answer: top band
/// 16.6 → 27.9 dB, but the model's vignette then sits on the wider picture, and the
/// whole combined look went from 27.75 to 31.7 dB on the portrait, 32.5 to 31.8 on the flower
/// and 31.7 to 31.6 on the blossom; it also changes every cached 4:3 answer's key, and
/// whether gpt-image-1 covers, stretches or extends a picture of another shape is not
/// documented.
fn uncovered_note(c: &align::Coverage) -> Option<String> {
    let missing = c.missing(UNCOVERED_NOTE);
    if missing.is_empty() {
        return None;
    }
    let edges = missing
        .iter()
        .map(|(edge, d)| format!("{edge} {:.0} %", d * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "the engine's picture left out the photo's edges ({edges}; its canvas has another shape than the photo): the look there is carried over from the rest of the picture, so check those edges"
    ))
}

/// Both notes, when there are two.
fn join_notes(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// Per-axis scales under which an answer on a `cw`×`ch` canvas, resized to the preview's
/// `pw`×`ph`, lines up if the model made its content *cover* the canvas (scaled by the
/// larger ratio, the rest cropped) rather than fill it: `(1, 1)` when the aspects match.
fn cover_base(cw: usize, ch: usize, pw: usize, ph: usize) -> (f32, f32) {
    let (kx, ky) = (cw as f32 / pw as f32, ch as f32 / ph as f32);
    let k = kx.max(ky);
    (k / kx, k / ky)
}

/// Brings `answer` (linear working space, any size) onto `seen` (linear working space).
pub fn register(seen: &RgbF32, answer: &RgbF32) -> Registered {
    let started = Instant::now();
    let (pw, ph) = (seen.width, seen.height);
    let cover = cover_base(answer.width, answer.height, pw, ph);
    let answer = to_size(answer, pw, ph);
    let src = to_sqrt(&seen.data);
    let mut dst = to_sqrt(&answer.data);
    trace("to sqrt", started);
    let luma = |v: &[f32]| -> Vec<f32> { v.par_chunks_exact(3).map(grid::guide).collect() };
    // Stretched to the preview, or cropped to cover the model's canvas: the search tries
    // both when the canvas has another aspect.
    let mut bases = vec![(1.0, 1.0)];
    if (cover.0 - 1.0).abs().max((cover.1 - 1.0).abs()) > 0.002 {
        bases.push(cover);
    }
    let registration = align::register(&luma(&src), &luma(&dst), pw, ph, &bases);
    let mut valid: Option<Vec<f32>> = None;
    if !registration.motion.is_identity(pw, ph) {
        let (warped, v) = align::warp(&dst, pw, ph, registration.motion);
        dst = warped;
        valid = Some(v);
    }
    Registered {
        src,
        dst,
        valid,
        registration,
    }
}

/// `v` (`sqrt`-domain RGB) with its chroma — each channel minus the guide's luma —
/// averaged over 3×3 pixels and its luma untouched: what a 4:2:0 JPEG keeps of a picture,
/// roughly. Fitting the grid between a preview with full-resolution chroma and an answer
/// with half-resolution chroma dilutes every colour slope toward zero (the answer's chroma
/// varies less within a node than the preview's does); low-passing both alike removes that
/// bias while luma, which JPEG keeps at full resolution, stays sharp for local edits such
/// as clarity. Measured on the fidelity table (24 MP, JPEG q90 answers): +1.5 to +2.9 dB
/// on single operators, +0.5 dB combined, against fitting the pictures as they are
/// (blurring all of RGB instead did as well on global operators and 1.2 dB worse on
/// clarity).
fn chroma_low(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    let luma = |p: &[f32]| grid::GUIDE[0] * p[0] + grid::GUIDE[1] * p[1] + grid::GUIDE[2] * p[2];
    let mut c = v.to_vec();
    c.par_chunks_exact_mut(3).for_each(|p| {
        let l = luma(p);
        p.iter_mut().for_each(|x| *x -= l);
    });
    box_blur(&mut c, w, h, 3, 1, 1);
    c.par_chunks_exact_mut(3)
        .zip(v.par_chunks_exact(3))
        .for_each(|(p, o)| {
            let l = luma(o);
            p.iter_mut().for_each(|x| *x += l);
        });
    c
}

/// `v` (`sqrt`-domain RGB) with its chroma removed: each pixel's channels set to the
/// guide's luma.
fn luma_only(mut v: Vec<f32>) -> Vec<f32> {
    v.par_chunks_exact_mut(3).for_each(|p| {
        // Not `grid::guide`, which clamps to 0..1 as a grid coordinate must: a residual is
        // as often negative, and clamped, only the answer's brighter half came through
        // (fixing it, all degradations at 24 MP: clarity +0.1 to +1.0 dB, the combined
        // look up to +0.3, the tone curve −0.2 to −0.4; JPEG q90 clarity +0.8 to +1.3).
        let l = crate::image::luma(p);
        p.fill(l);
    });
    v
}

/// Bilinear resize (for upscaling small answers).
pub fn resize_bilinear(img: &RgbF32, w: usize, h: usize) -> RgbF32 {
    let mut out = vec![0f32; w * h * 3];
    let (sw, sh) = (img.width, img.height);
    out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
        let fy = ((y as f32 + 0.5) * sh as f32 / h as f32 - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = (fy as usize).min(sh.saturating_sub(2));
        let y1 = (y0 + 1).min(sh - 1);
        let ty = fy - y0 as f32;
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * sw as f32 / w as f32 - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = (fx as usize).min(sw.saturating_sub(2));
            let x1 = (x0 + 1).min(sw - 1);
            let tx = fx - x0 as f32;
            for c in 0..3 {
                let p = |xx: usize, yy: usize| img.data[(yy * sw + xx) * 3 + c];
                let a = p(x0, y0) + tx * (p(x1, y0) - p(x0, y0));
                let b = p(x0, y1) + tx * (p(x1, y1) - p(x0, y1));
                row[x * 3 + c] = a + ty * (b - a);
            }
        }
    });
    RgbF32::new(w, h, out)
}

/// Grey-level dilation by a square of radius `r`.
pub(crate) fn dilate(v: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; w * h];
    tmp.par_chunks_mut(w)
        .zip(v.par_chunks(w))
        .for_each(|(out, row)| {
            let window = |x: usize| {
                let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
                row[a..b].iter().copied().fold(0.0, f32::max)
            };
            if w <= 2 * r {
                (0..w).for_each(|x| out[x] = window(x));
                return;
            }
            // The interior as `2r + 1` shifted copies, vector loops; the ends clipped.
            let n = w - 2 * r;
            let inner = &mut out[r..r + n];
            inner.fill(0.0);
            for d in 0..=2 * r {
                for (o, &s) in inner.iter_mut().zip(&row[d..d + n]) {
                    *o = o.max(s);
                }
            }
            for x in (0..r).chain(w - r..w) {
                out[x] = window(x);
            }
        });
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
        for yy in a..b {
            for (o, &t) in out.iter_mut().zip(&tmp[yy * w..(yy + 1) * w]) {
                *o = o.max(t);
            }
        }
    });
    out
}

fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Ridge strengths of the grid fit (`sqrt`-domain variance units). `EPS` keeps slopes of
/// nodes whose pixels span a tiny range from chasing 8-bit and JPEG noise; `KAPPA / n`
/// hands nodes with few pixels to the coarser level.
/// (Scaling `EPS` by ¼ to 16 for re-drawn and JPEG answers moved no row of the flower's
/// generative table by more than 0.2 dB.)
const EPS: f32 = 2e-5;
const KAPPA: f32 = 2e-3;
/// How much harder a lossy answer's nodes lean on the coarser level. A JPEG's errors are
/// whole 8×8 blocks, so a fine node's pixels share one error and its slopes chase it.
/// Measured on the fidelity photo (×1 → ×64): JPEG q90 rows +0.05 to +2.0 dB, the
/// all-degradations rows +1.2 to +2.0 dB for single operators and +0.3 dB combined;
/// ×256 starts to lose the combined look again (−0.2 dB against ×64). Lossless answers
/// keep `KAPPA`: ×64 would cost them 0.1–1.8 dB.
const LOSSY_KAPPA: f32 = 64.0 * KAPPA;

impl Transfer {
    /// Learns the edit: `seen` is the preview exactly as the engine received it (linear
    /// working space), `answer` the engine's picture (linear working space, any size).
    pub fn fit(seen: &RgbF32, answer: &RgbF32, mode: Mode) -> Transfer {
        Transfer::fit_answer(seen, answer, mode, false)
    }

    /// As [`Transfer::fit`]; `lossy` says the answer came as a JPEG. Its 8×8 blocks and
    /// half-resolution chroma are noise the residual must not carry to full resolution, so
    /// the residual is smoothed (to about two preview pixels) before it is kept; and the
    /// grid is fitted on both pictures with their chroma low-passed alike
    /// ([`chroma_low`]), or the answer's softer chroma would flatten every node's slopes.
    ///
    /// Putting the preview through the answer's 4:2:0 instead — its chroma averaged per
    /// 2×2 block of the answer's canvas where the registration placed it, spread back with
    /// the decoder's triangle filter, clipped like its output — was built and measured
    /// (flower, 24 MP, chroma-averaging JPEGs): in place at q90 the tone curve gained
    /// 2.2 dB and the vignette 1.4 dB but the colour grade lost 0.9 dB and split toning
    /// 0.6 dB; on the all-degradations rows the tone curve gained 0.7 dB, clarity 0.5 dB,
    /// the colour grade lost 2.5 dB and the combined look 0.1 dB. Not taken.
    ///
    /// Rebuilding a 4:2:0 answer's fine chroma from its luma before the fit (a guided
    /// filter: per 5×5 window, chroma regressed on 3×3-blurred luma, the slope applied to
    /// the sharp luma) was measured too (flower, 24 MP): JPEG q75 alone +0.4 dB on the
    /// combined look, all degradations +0.2, but every single operator there lost 0.8–2.1
    /// dB, and a 4:4:4 answer 3.2. Not taken.
    pub fn fit_answer(seen: &RgbF32, answer: &RgbF32, mode: Mode, lossy: bool) -> Transfer {
        let started = Instant::now();
        let (pw, ph) = (seen.width, seen.height);
        let Registered {
            src,
            dst,
            valid,
            registration,
        } = register(seen, answer);
        let t = registration.motion;
        let align_ms = started.elapsed().as_secs_f64() * 1e3;
        let uncovered = valid
            .as_deref()
            .map_or_else(align::Coverage::default, |v| align::Coverage::of(v, pw, ph));

        let shape = GridShape::for_preview(pw, ph);
        // Like with like: the preview softened as much as the answer is, so the maps
        // learn the edit rather than the answer's softness (see `texture`).
        let texture = texture::compare(&src, &dst, pw, ph);
        trace("texture", started);
        // What a softened answer costs even so (flower, 24 MP, combined look, in place):
        // σ = 0.8 px alone takes 43.9 dB to 36.1 (σ = 0.4: 40.3; the fresh noise alone 42.4,
        // the grain alone 43.3), and the maps alone, without the residual, lose 3.4 dB on a
        // pointwise look (44.4 → 41.0), so it is not only the residual that cannot be kept.
        // Two remedies were measured on the softened answer (combined look, global look,
        // clarity) and not taken. Weighting each pixel's part in the fit by how little the
        // softening moved it, 1 / (1 + (Δ/τ)²) (so an edge, where the blur of a curve is
        // not the curve of the blur, teaches nothing): τ = 0.02 moved the rows by
        // −0.13 to +0.13 dB, τ = 0.005 lost up to 0.44. A prior that keeps all sixteen
        // brightness bins down to one spatial node (a global curve under the local maps):
        // within 0.1 dB.
        let softened = (!texture.is_exact()).then(|| texture::soften(&src, pw, ph, &texture));
        let lossy_fit = (softened.is_none() && lossy)
            .then(|| (chroma_low(&src, pw, ph), chroma_low(&dst, pw, ph)));
        // A registration the tiles could not confirm may be off by a few pixels here and
        // there. A look is then learned between heavily smoothed pictures (σ ≈ 3.5 px, so
        // a pixel's misalignment barely moves a node's statistics) and carried by the
        // colour maps alone: no residual and no change mask, the two things that would
        // print misaligned edges onto the photo as ghosts.
        let unsure = matches!(registration.quality, align::Quality::Unsure { .. });
        let guarded = unsure && mode == Mode::Look;
        // And with cells of 64 preview pixels, so a few pixels' misalignment is a small
        // part of each cell.
        let shape = if guarded { shape.coarser(8) } else { shape };
        // Cells twice as large for every lossy answer were measured and not taken: the
        // smooth operators gain 1.1–2.5 dB on the all-degradations rows, but the combined
        // look loses 1.3 dB, clarity 1.1 dB and a JPEG q95 answer 2.0 dB.
        let smooth_fit = guarded.then(|| {
            let smooth = |v: &[f32]| {
                let mut v = v.to_vec();
                box_blur(&mut v, pw, ph, 3, 3, 3);
                v
            };
            (smooth(&src), smooth(&dst))
        });
        let (fit_src, fit_dst) = match (&smooth_fit, &softened, &lossy_fit) {
            (Some((a, b)), _, _) => (&a[..], &b[..]),
            (None, Some(s), _) => (&s[..], &dst[..]),
            (None, None, Some((a, b))) => (&a[..], &b[..]),
            (None, None, None) => (&src[..], &dst[..]),
        };
        let kappa = if lossy { LOSSY_KAPPA } else { KAPPA };
        // Fitting the softened preview to the answer learns G with G(B·x) ≈ B·T(x), which
        // for an edit that is not pointwise (clarity) is not B·G(x) ≈ B·T(x). One refit
        // against `dst + α·(G(B·x) − B·G(x))` — the blur moved to the prediction's side,
        // the residual taken against B·G(x) — was measured on the three fidelity photos
        // (24 MP, all degradations): α = 1 gained the combined look 0.7–1.3 dB and clarity
        // up to 0.8 dB but cost the tone curve 0.2–1.3 dB, and the fine detail overshot
        // (energy up to 1.11× the truth's); α = 0.5 gained the combined look 0.4–0.8 dB
        // and lost at most 0.75 dB (tone curve, blossom). Not taken: the second fit costs
        // 45–60 ms, past the look fit's 100 ms. Accumulating only its cross terms (the
        // preview's moments are the first fit's) might make it affordable.
        // The maps' chroma outputs fitted from the preview blurred whole by the measured
        // chroma kernel (a 4:2:0 answer's chroma lost the fine colour that the edit made
        // from fine luma), their luma outputs as now, were measured too (flower, 24 MP):
        // JPEG q95 alone combined look +1.2 dB, all degradations +0.2 dB, clarity −0.3;
        // not taken for a second grid fit.
        // Taking the residual against the sharp preview's prediction softened like the
        // answer, B·G(x), rather than G(B·x): the flower's clarity +0.8 dB and combined look
        // +0.2, but the blossom's clarity −0.2 and tone curve −0.5, the portrait unchanged.
        // Not taken.
        // What the maps predict the answer from.
        let predict_from: &[f32] = softened.as_deref().unwrap_or(&src);
        let grid = Grid::fit(
            shape,
            fit_src,
            fit_dst,
            valid.as_deref(),
            pw,
            ph,
            EPS,
            kappa,
        );
        trace("grid fit", started);
        let mut look = Transfer::look_only(grid, pw, ph);
        let fitted = look.slice_preview(predict_from);
        trace("slice preview", started);
        let grid_ms = started.elapsed().as_secs_f64() * 1e3 - align_ms;

        // Change detection: the residual of a colour fit is small wherever the answer is
        // a recolouring of the preview. One reweighted refit keeps new content from
        // bending the grid, then the blurred residual marks what changed.
        let th = mode.thresholds();
        // The residual: what the grid cannot express; nothing outside the registered
        // answer, where there is nothing to compare or learn from.
        let residual_of = |fitted: Vec<f32>| -> Vec<f32> {
            let mut r = fitted;
            r.par_iter_mut().zip(&dst).for_each(|(r, d)| *r = d - *r);
            if let Some(v) = &valid {
                r.par_chunks_exact_mut(3)
                    .zip(v.par_iter())
                    .for_each(|(r, &ok)| r.iter_mut().for_each(|x| *x *= ok));
            }
            r
        };
        // Both pictures are low-passed before they are compared — an answer that is
        // softer or resampled differs along every edge, new content differs over an
        // area — which by linearity is the low-passed residual. The same low-pass is the
        // smoothing a JPEG or resampled answer's residual needs.
        // Its strength barely matters once the answer was re-drawn: radius 1 or 2, one to
        // three passes, moved the flower's all-degradations combined look and clarity by
        // at most 0.15 dB, and a lighter one cost the tone curve up to 0.9. What the grid
        // gets wrong there is not in the residual; without any residual the combined look
        // loses only 0.35 dB.
        let low = |r: &[f32]| -> Vec<f32> {
            let mut v = r.to_vec();
            box_blur(&mut v, pw, ph, 3, 2, 2);
            v
        };
        let err = |low_residual: &[f32]| -> Vec<f32> {
            low_residual
                .par_chunks_exact(3)
                .map(|d| d[0].abs().max(d[1].abs()).max(d[2].abs()))
                .collect::<Vec<f32>>()
        };
        let mut residual = residual_of(fitted);
        let mut residual_low = low(&residual);
        trace("low-pass residual", started);
        let mut e = err(&residual_low);
        box_blur(&mut e, pw, ph, 1, 2, 2);
        let flagged = e.par_iter().filter(|&&v| v > th.low).count() as f32 / (pw * ph) as f32;
        let use_mask = flagged > th.min_area && !guarded;
        trace("change error", started);
        let mut mask = vec![0f32; pw * ph];
        if use_mask {
            let weights: Vec<f32> = e
                .par_iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ok = valid.as_ref().map_or(1.0, |m| m[i]);
                    ok * (1.0 - smoothstep(th.low * 0.5, th.low, v))
                })
                .collect();
            let grid = Grid::fit(shape, fit_src, fit_dst, Some(&weights), pw, ph, EPS, kappa);
            look = Transfer::look_only(grid, pw, ph);
            residual = residual_of(look.slice_preview(predict_from));
            residual_low = low(&residual);
            let mut e = err(&residual_low);
            box_blur(&mut e, pw, ph, 1, 2, 2);
            let raw: Vec<f32> = e
                .par_iter()
                .map(|&v| smoothstep(th.low, th.high, v))
                .collect();
            let r = (pw.max(ph) / 200).max(2);
            mask = dilate(&raw, pw, ph, r);
            box_blur(&mut mask, pw, ph, 1, r, 3);
        }
        // Outside the registered answer there is nothing to learn from: keep the grid's
        // prediction there (no residual).
        trace("mask", started);
        let content = use_mask && mask.par_iter().any(|&m| m > 1e-3);
        let stride = if content { EXTRA_CONTENT } else { EXTRA_LOOK };
        let mut extras = vec![0f32; pw * ph * stride];
        let residual = if lossy || valid.is_some() || !texture.is_exact() {
            residual_low
        } else {
            residual
        };
        // A JPEG answer's chroma is a quarter of its pixels, blurred and bled across
        // edges: the maps take its colour from the whole picture, and only the residual's
        // luma is kept (measured on the generative rows of the fidelity table: +0.2 to
        // +1.3 dB on every JPEG row against keeping the chroma as well). Adding back its
        // chroma low-passed far harder (box radius 4 and 8, three passes) gained at most
        // 0.2 dB on the flower.
        let residual = if guarded {
            vec![0.0; residual.len()]
        } else if lossy {
            luma_only(residual)
        } else {
            residual
        };
        extras
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(i, x)| {
                x[..3].copy_from_slice(&residual[i * 3..i * 3 + 3]);
                if content {
                    // The residual is meaningless where the engine's pixels are taken.
                    let ok = valid.as_ref().map_or(1.0, |v| v[i]);
                    for c in 0..3 {
                        x[c] *= 1.0 - mask[i];
                        x[4 + c] = dst[i * 3 + c];
                    }
                    x[3] = mask[i] * ok;
                }
            });
        trace("extras", started);
        tracing::debug!(
            "transfer fit: align {align_ms:.1} ms, grid {grid_ms:.1} ms, total {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        if fit_trace_on() {
            eprintln!(
                "fit: align {align_ms:.1} ms ({t:?}, {}), texture {texture:?}, grid {grid_ms:.1} ms, mask {use_mask}, total {:.1} ms",
                registration.quality,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        let changed = if content {
            mask.iter().sum::<f32>() / (pw * ph) as f32
        } else {
            0.0
        };
        Transfer {
            extras,
            content,
            report: FitReport {
                motion: t,
                registration: registration.quality.clone(),
                register_ms: align_ms,
                note: join_notes(unsure.then(|| {
                    if guarded {
                        format!(
                            "the engine's picture could not be lined up with the photo with confidence ({}); its look was carried by colour maps alone, without its finest local changes",
                            registration.quality
                        )
                    } else {
                        format!(
                            "the engine's picture could not be lined up with the photo with confidence ({}); check the edges of what it changed",
                            registration.quality
                        )
                    }
                }), uncovered_note(&uncovered)),
                uncovered,
                changed,
                fit_ms: started.elapsed().as_secs_f64() * 1e3,
            },
            ..look
        }
    }

    /// The grid alone, no residual: what the fit's own passes over the preview use.
    fn look_only(grid: Grid, pw: usize, ph: usize) -> Transfer {
        Transfer {
            nodes4: grid.nodes.iter().map(node4).collect(),
            grid,
            pw,
            ph,
            extras: Vec::new(),
            content: false,
            report: FitReport::default(),
        }
    }

    /// The grid applied to the (`sqrt`-domain) preview it was fitted on, with the fast
    /// row kernel.
    fn slice_preview(&self, src: &[f32]) -> Vec<f32> {
        let mut out = src.to_vec();
        self.apply_rows::<true>(
            &mut out,
            self.pw,
            self.ph,
            1.0,
            &Cancel::default(),
            Kernel::default(),
        )
        .expect("not cancelled");
        out
    }

    /// Applies the edit to `base` (linear working space, any size with the preview's
    /// aspect) and blends at `intensity`, in place: no second full-resolution buffer.
    pub fn apply_blend(
        &self,
        base: &mut RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        let (w, h) = (base.width, base.height);
        self.apply_rows::<false>(&mut base.data, w, h, intensity, cancel, Kernel::default())
    }

    /// As [`Transfer::apply_blend`] with a chosen kernel, so tests can check that every
    /// kernel computes the same picture.
    #[doc(hidden)]
    pub fn apply_blend_with(&self, base: &mut RgbF32, intensity: f32, kernel: Kernel) {
        let (w, h) = (base.width, base.height);
        self.apply_rows::<false>(&mut base.data, w, h, intensity, &Cancel::default(), kernel)
            .expect("not cancelled");
    }

    /// The row loop. `RAW`: `data` is already in the `sqrt` domain and receives the
    /// grid's output there, unblended (the fit's own passes over the preview).
    fn apply_rows<const RAW: bool>(
        &self,
        data: &mut [f32],
        w: usize,
        h: usize,
        intensity: f32,
        cancel: &Cancel,
        kernel: Kernel,
    ) -> Result<(), JobError> {
        let stride = if self.content {
            EXTRA_CONTENT
        } else {
            EXTRA_LOOK
        };
        let gcols = grid::columns(w, self.grid.gx);
        let pcols = grid::columns(w, self.pw);
        let gz = self.grid.gz;
        let nodes_per_row = self.grid.gx * gz;
        // The same columns as offsets (in floats) and weights, for the AVX-512 kernel's
        // 16-wide loads.
        let g_off: Vec<u32> = gcols.iter().map(|c| c.0 * gz as u32 * 16).collect();
        let g_frac: Vec<f32> = gcols.iter().map(|c| c.1).collect();
        let p_off: Vec<u32> = pcols.iter().map(|c| c.0 * stride as u32).collect();
        let p_frac: Vec<f32> = pcols.iter().map(|c| c.1).collect();
        // Few rows per node row (a preview): interpolating the whole row of nodes for
        // every row would cost more than the pixels, so the kernel interpolates just the
        // nodes each pixel uses.
        let tri = kernel.tri.unwrap_or(h < self.grid.gy * 16);
        let simd = kernel.simd.available();
        let all = nodes(&self.nodes4);
        let stop = AtomicBool::new(false);
        data.par_chunks_mut(w * 3 * 8)
            .enumerate()
            .for_each(|(chunk, rows)| {
                if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                let mut slice: Vec<Line> = if tri {
                    Vec::new()
                } else {
                    vec![Line([[0.0; 4]; 4]); nodes_per_row]
                };
                let mut extra_row = vec![0f32; self.pw * stride];
                for (r, row) in rows.chunks_exact_mut(w * 3).enumerate() {
                    let y = chunk * 8 + r;
                    let (j0, fy_nodes) =
                        grid::split(grid::node_coord(y, h, self.grid.gy), self.grid.gy);
                    let two_rows = &all[j0 * nodes_per_row..(j0 + 2) * nodes_per_row];
                    if !tri {
                        let (a, b) = two_rows.split_at(nodes_per_row);
                        lerp_nodes(floats_mut(&mut slice), floats(a), floats(b), fy_nodes, simd);
                    }
                    let (p0, fy) = grid::split(grid::node_coord(y, h, self.ph), self.ph.max(2));
                    let p1 = (p0 + 1).min(self.ph - 1);
                    // No residual yet (the fit's own passes): the row stays zero.
                    if !self.extras.is_empty() {
                        let (ra, rb) = (
                            &self.extras[p0 * self.pw * stride..(p0 + 1) * self.pw * stride],
                            &self.extras[p1 * self.pw * stride..(p1 + 1) * self.pw * stride],
                        );
                        lerp_nodes(&mut extra_row, ra, rb, fy, simd);
                    }
                    let rowk = RowKernel {
                        slice: if tri { two_rows } else { nodes(&slice) },
                        fy: fy_nodes,
                        gz,
                        gcols: &gcols,
                        pcols: &pcols,
                        g_off: &g_off,
                        g_frac: &g_frac,
                        p_off: &p_off,
                        p_frac: &p_frac,
                        extra_row: &extra_row,
                        pw: self.pw,
                        intensity,
                    };
                    match (self.content, tri) {
                        (true, false) => rowk.run::<EXTRA_CONTENT, RAW, false>(row, simd),
                        (false, false) => rowk.run::<EXTRA_LOOK, RAW, false>(row, simd),
                        (true, true) => rowk.run::<EXTRA_CONTENT, RAW, true>(row, simd),
                        (false, true) => rowk.run::<EXTRA_LOOK, RAW, true>(row, simd),
                    }
                }
            });
        if stop.load(Ordering::Relaxed) {
            return Err(JobError::cancelled());
        }
        Ok(())
    }

    /// The edit at preview size, blended: what a live intensity slider shows. Cheap
    /// (one preview-sized pass), and never calls the engine.
    pub fn preview_blend(&self, seen: &RgbF32, intensity: f32) -> RgbF32 {
        let mut out = seen.clone();
        self.apply_blend(&mut out, intensity, &Cancel::default())
            .expect("not cancelled");
        out
    }
}

/// Which row kernel to run: the default picks the fastest for the CPU and the size.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel {
    /// The instruction set; one the CPU lacks falls back to the next below it.
    pub simd: Simd,
    /// Interpolate down the grid per pixel (`Some(true)`) or once per row
    /// (`Some(false)`); `None` picks by the number of rows per node row.
    pub tri: Option<bool>,
}

pub use crate::simd::Simd;

/// What one full-resolution row needs.
struct RowKernel<'a> {
    /// `TRI == false`: the row's slice of the grid (`gx × gz` nodes, already interpolated
    /// down the grid). `TRI == true`: the two node rows around the row, interpolated per
    /// pixel with `fy`.
    slice: &'a [Node4],
    fy: f32,
    gz: usize,
    gcols: &'a [(u32, f32)],
    pcols: &'a [(u32, f32)],
    /// `gcols` as the offset of the column's first node in floats, and the weight (the
    /// AVX-512 gather reads these; other targets use `gcols`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    g_off: &'a [u32],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    g_frac: &'a [f32],
    /// `pcols` as the offset into `extra_row` in floats, and the weight.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    p_off: &'a [u32],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    p_frac: &'a [f32],
    extra_row: &'a [f32],
    pw: usize,
    intensity: f32,
}

impl RowKernel<'_> {
    /// Runs the row with `simd`, which [`Simd::available`] has checked.
    fn run<const S: usize, const RAW: bool, const TRI: bool>(&self, row: &mut [f32], simd: Simd) {
        #[cfg(target_arch = "x86_64")]
        match simd {
            // SAFETY: `Simd::available` detected the features on this CPU.
            Simd::Avx512 => return unsafe { avx512::apply_row::<S, RAW, TRI>(self, row) },
            Simd::Avx2 => return unsafe { fma::apply_row::<S, RAW, TRI>(self, row) },
            _ => {}
        }
        let _ = simd;
        apply_row::<S, RAW, TRI>(self, row);
    }

    /// Nodes across one row of the grid.
    fn gx<const TRI: bool>(&self) -> usize {
        self.slice.len() / self.gz / if TRI { 2 } else { 1 }
    }
}

/// The row kernel with AVX-512: a node is one 16-wide register, so a pixel's four
/// corners are four loads and four multiply-adds, and the per-pixel node offsets and
/// weights are computed 16 pixels at a time (channels split with two permutes each).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{grid, RowKernel, ROW_BLOCK};
    use std::arch::x86_64::*;

    /// Weighted sum of a node's four corners.
    #[inline(always)]
    unsafe fn corners(p00: *const f32, gz: usize, w: [*const f32; 4]) -> __m512 {
        let p10 = p00.add(gz * 16);
        let mut m = _mm512_mul_ps(_mm512_set1_ps(*w[0]), _mm512_loadu_ps(p00));
        m = _mm512_fmadd_ps(_mm512_set1_ps(*w[1]), _mm512_loadu_ps(p00.add(16)), m);
        m = _mm512_fmadd_ps(_mm512_set1_ps(*w[2]), _mm512_loadu_ps(p10), m);
        _mm512_fmadd_ps(_mm512_set1_ps(*w[3]), _mm512_loadu_ps(p10.add(16)), m)
    }

    /// Lane `j` of channel `c` of 16 interleaved RGB pixels in `v0 v1 v2`.
    #[inline(always)]
    unsafe fn channel(v0: __m512, v1: __m512, v2: __m512, c: i32) -> __m512 {
        let lo = _mm512_setr_epi32(
            c,
            3 + c,
            6 + c,
            9 + c,
            12 + c,
            15 + c,
            18 + c,
            21 + c,
            24 + c,
            27 + c,
            30 + c,
            (33 + c) & 31,
            (36 + c) & 31,
            (39 + c) & 31,
            (42 + c) & 31,
            (45 + c) & 31,
        );
        let hi = _mm512_sub_epi32(lo, _mm512_set1_epi32(32));
        // Lanes whose element lies in `v2` (index 32 or more).
        let from_v2: __mmask16 = (0..16).fold(0, |m, j| m | (((3 * j + c >= 32) as u16) << j));
        let a = _mm512_permutex2var_ps(v0, lo, v1);
        _mm512_mask_permutexvar_ps(a, from_v2, hi, v2)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn apply_row<const S: usize, const RAW: bool, const TRI: bool>(
        k: &RowKernel,
        row: &mut [f32],
    ) {
        let (gz, pw) = (k.gz, k.pw);
        let npx = row.len() / 3;
        let gx = k.gx::<TRI>();
        // Everything indexed below is checked here once.
        assert!(gz >= 2 && pw >= 2 && gx >= 2);
        assert!(k.g_off.len() >= npx && k.g_frac.len() >= npx);
        assert!(k.p_off.len() >= npx && k.p_frac.len() >= npx);
        assert!(k.extra_row.len() >= pw * S);
        // Offsets are clamped to the last whole 2×2 block of nodes and the last pair of
        // residual pixels, so no read leaves the slices whatever the columns say.
        assert!(k.slice.len() >= gx * gz * if TRI { 2 } else { 1 });
        let omax = ((gx - 2) * gz + gz - 2) as u32 * 16;
        let jmax = (pw - 2) * S;
        let zmax = (gz - 1) as f32;
        let kmax = _mm512_set1_epi32(gz as i32 - 2);
        let sp = k.slice.as_ptr() as *const f32;
        // The second node row (TRI), in floats.
        let down = gx * gz * 16;
        let fy = _mm512_set1_ps(k.fy);
        let ep = k.extra_row.as_ptr();
        let [g0, g1, g2] = grid::GUIDE.map(|g| _mm512_set1_ps(g));
        let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
        let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        // One spare float: the last pixel's 4-wide load reads one past its three.
        let mut sq = [0f32; ROW_BLOCK * 3 + 1];
        let mut qs = [0f32; ROW_BLOCK * 3 + 1];
        let mut off = [0u32; ROW_BLOCK];
        let mut wts = [[0f32; ROW_BLOCK]; 4];
        let mut x0 = 0;
        for block in row.chunks_mut(ROW_BLOCK * 3) {
            let n = block.len();
            super::enter_block::<RAW>(block, &mut sq);
            let m = n / 3;
            // Where each pixel's four nodes are and their weights: 16 pixels at a time,
            // the rest one by one.
            let whole = m / 16 * 16;
            for i in (0..whole).step_by(16) {
                let b = sq.as_ptr().add(3 * i);
                let (v0, v1, v2) = (
                    _mm512_loadu_ps(b),
                    _mm512_loadu_ps(b.add(16)),
                    _mm512_loadu_ps(b.add(32)),
                );
                let l = _mm512_fmadd_ps(
                    g2,
                    channel(v0, v1, v2, 2),
                    _mm512_fmadd_ps(
                        g1,
                        channel(v0, v1, v2, 1),
                        _mm512_mul_ps(g0, channel(v0, v1, v2, 0)),
                    ),
                );
                let zc = _mm512_mul_ps(
                    _mm512_min_ps(_mm512_max_ps(l, zero), one),
                    _mm512_set1_ps(zmax),
                );
                let k0 = _mm512_min_epi32(_mm512_cvttps_epi32(zc), kmax);
                let fz = _mm512_sub_ps(zc, _mm512_cvtepi32_ps(k0));
                let go = _mm512_loadu_si512(k.g_off.as_ptr().add(x0 + i) as *const _);
                let fx = _mm512_loadu_ps(k.g_frac.as_ptr().add(x0 + i));
                let o = _mm512_min_epu32(
                    _mm512_add_epi32(go, _mm512_slli_epi32::<4>(k0)),
                    _mm512_set1_epi32(omax as i32),
                );
                _mm512_storeu_si512(off.as_mut_ptr().add(i) as *mut _, o);
                let (ax, az) = (_mm512_sub_ps(one, fx), _mm512_sub_ps(one, fz));
                _mm512_storeu_ps(wts[0].as_mut_ptr().add(i), _mm512_mul_ps(ax, az));
                _mm512_storeu_ps(wts[1].as_mut_ptr().add(i), _mm512_mul_ps(ax, fz));
                _mm512_storeu_ps(wts[2].as_mut_ptr().add(i), _mm512_mul_ps(fx, az));
                _mm512_storeu_ps(wts[3].as_mut_ptr().add(i), _mm512_mul_ps(fx, fz));
            }
            for i in whole..m {
                let s = sq.get_unchecked(3 * i..3 * i + 3);
                let zc = grid::guide(s) * zmax;
                // `guide` clamps to 0..1 and `sqrt(max(v, 0))` is never NaN.
                let k0 = (zc.to_int_unchecked::<u32>()).min(gz as u32 - 2);
                let fz = zc - k0 as f32;
                let fx = *k.g_frac.get_unchecked(x0 + i);
                *off.get_unchecked_mut(i) = (*k.g_off.get_unchecked(x0 + i) + k0 * 16).min(omax);
                wts[0][i] = (1.0 - fx) * (1.0 - fz);
                wts[1][i] = (1.0 - fx) * fz;
                wts[2][i] = fx * (1.0 - fz);
                wts[3][i] = fx * fz;
            }
            for i in 0..m {
                let w = [0, 1, 2, 3].map(|c| wts.get_unchecked(c).as_ptr().add(i));
                let p00 = sp.add(*off.get_unchecked(i) as usize);
                let mut mm = corners(p00, gz, w);
                if TRI {
                    let m1 = corners(p00.add(down), gz, w);
                    mm = _mm512_fmadd_ps(fy, _mm512_sub_ps(m1, mm), mm);
                }
                // [r r r r g g g g b b b b 1 1 1 1] times the four columns, then the four
                // 4-lane quarters added.
                let px =
                    _mm_blend_ps::<0b1000>(_mm_loadu_ps(sq.as_ptr().add(3 * i)), _mm_set1_ps(1.0));
                let t = _mm512_mul_ps(
                    mm,
                    _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(px)),
                );
                let t = _mm256_add_ps(
                    _mm512_castps512_ps256(t),
                    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(t))),
                );
                let q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
                let j = (*k.p_off.get_unchecked(x0 + i) as usize).min(jmax);
                let q = super::fma::with_extras::<S>(q, ep.add(j), *k.p_frac.get_unchecked(x0 + i));
                // Four lanes stored, the fourth is overwritten by the next pixel.
                _mm_storeu_ps(qs.as_mut_ptr().add(3 * i), q);
            }
            super::leave_block::<RAW>(block, &qs, k.intensity);
            x0 += m;
        }
    }
}

/// The row kernel with explicit FMA: a node (four columns of four lanes) is two 8-wide
/// loads and two multiply-adds per corner, and the per-pixel node offsets and weights are
/// computed in a loop of their own, where the portable version's compiler output splits
/// the work into pairs and scalars.
#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{grid, RowKernel, EXTRA_CONTENT, ROW_BLOCK};
    use std::arch::x86_64::*;

    /// Weighted sum of a node's four corners, as (columns r|g, columns b|offset).
    #[inline(always)]
    unsafe fn corners(p00: *const f32, gz: usize, w: *const f32) -> (__m256, __m256) {
        let (p01, p10) = (p00.add(16), p00.add(gz * 16));
        let p11 = p10.add(16);
        let (w00, w01) = (_mm256_broadcast_ss(&*w), _mm256_broadcast_ss(&*w.add(1)));
        let (w10, w11) = (
            _mm256_broadcast_ss(&*w.add(2)),
            _mm256_broadcast_ss(&*w.add(3)),
        );
        let mut lo = _mm256_mul_ps(w00, _mm256_loadu_ps(p00));
        let mut hi = _mm256_mul_ps(w00, _mm256_loadu_ps(p00.add(8)));
        lo = _mm256_fmadd_ps(w01, _mm256_loadu_ps(p01), lo);
        hi = _mm256_fmadd_ps(w01, _mm256_loadu_ps(p01.add(8)), hi);
        lo = _mm256_fmadd_ps(w10, _mm256_loadu_ps(p10), lo);
        hi = _mm256_fmadd_ps(w10, _mm256_loadu_ps(p10.add(8)), hi);
        lo = _mm256_fmadd_ps(w11, _mm256_loadu_ps(p11), lo);
        hi = _mm256_fmadd_ps(w11, _mm256_loadu_ps(p11.add(8)), hi);
        (lo, hi)
    }

    /// Adds the residual interpolated at `f` between the two preview pixels at `e` (and
    /// for content, blends toward the answer by the mask): the per-pixel tail both x86
    /// kernels share.
    #[inline(always)]
    pub(super) unsafe fn with_extras<const S: usize>(q: __m128, e: *const f32, f: f32) -> __m128 {
        let f = _mm_set1_ps(f);
        let (ea, eb) = (_mm_loadu_ps(e), _mm_loadu_ps(e.add(S)));
        let r = _mm_fmadd_ps(f, _mm_sub_ps(eb, ea), ea);
        let q = _mm_add_ps(q, r);
        if S != EXTRA_CONTENT {
            return q;
        }
        let (ea, eb) = (_mm_loadu_ps(e.add(4)), _mm_loadu_ps(e.add(S + 4)));
        let answer = _mm_fmadd_ps(f, _mm_sub_ps(eb, ea), ea);
        // The mask sits in the residual's fourth lane.
        let mask = _mm_shuffle_ps::<0xFF>(r, r);
        _mm_fmadd_ps(mask, _mm_sub_ps(answer, q), q)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn apply_row<const S: usize, const RAW: bool, const TRI: bool>(
        k: &RowKernel,
        row: &mut [f32],
    ) {
        let (gz, pw, gcols, pcols) = (k.gz, k.pw, k.gcols, k.pcols);
        let npx = row.len() / 3;
        let gx = k.gx::<TRI>();
        // Everything indexed below is checked here once.
        assert!(gz >= 2 && pw >= 2 && gx >= 2 && gcols.len() >= npx && pcols.len() >= npx);
        assert!(k.extra_row.len() >= pw * S);
        let zmax = (gz - 1) as f32;
        let sp = k.slice.as_ptr() as *const f32;
        // The second node row (TRI), in floats.
        let down = gx * gz * 16;
        let fy = _mm256_set1_ps(k.fy);
        let ep = k.extra_row.as_ptr();
        // One spare float: the last pixel's 4-wide load reads one past its three.
        let mut sq = [0f32; ROW_BLOCK * 3 + 1];
        let mut qs = [0f32; ROW_BLOCK * 3 + 1];
        let mut off = [0u32; ROW_BLOCK];
        let mut wts = [[0f32; 4]; ROW_BLOCK];
        let mut x0 = 0;
        for block in row.chunks_mut(ROW_BLOCK * 3) {
            let n = block.len();
            super::enter_block::<RAW>(block, &mut sq);
            let m = n / 3;
            // Per pixel, first the scalar part: where its four nodes are and their
            // weights. A loop of its own keeps the node loop below free of it.
            for i in 0..m {
                let s = sq.get_unchecked(3 * i..3 * i + 3);
                let gc = *gcols.get_unchecked(x0 + i);
                let zc = grid::guide(s) * zmax;
                // `guide` clamps to 0..1 and `sqrt(max(v, 0))` is never NaN.
                let k0 = (zc.to_int_unchecked::<u32>()).min(gz as u32 - 2);
                let fz = zc - k0 as f32;
                let i0 = gc.0.min(gx as u32 - 2);
                let fx = gc.1;
                *off.get_unchecked_mut(i) = (i0 * gz as u32 + k0) * 16;
                *wts.get_unchecked_mut(i) = [
                    (1.0 - fx) * (1.0 - fz),
                    (1.0 - fx) * fz,
                    fx * (1.0 - fz),
                    fx * fz,
                ];
            }
            for i in 0..m {
                let pc = *pcols.get_unchecked(x0 + i);
                let wp = wts.as_ptr().add(i) as *const f32;
                let p00 = sp.add(*off.get_unchecked(i) as usize);
                let (mut lo, mut hi) = corners(p00, gz, wp);
                if TRI {
                    let (lo1, hi1) = corners(p00.add(down), gz, wp);
                    lo = _mm256_fmadd_ps(fy, _mm256_sub_ps(lo1, lo), lo);
                    hi = _mm256_fmadd_ps(fy, _mm256_sub_ps(hi1, hi), hi);
                }
                // r·col0 + g·col1 in the two halves of one vector, b·col2 + offset in
                // the other, then the halves added.
                let px = _mm256_castps128_ps256(_mm_loadu_ps(sq.as_ptr().add(3 * i)));
                let s01 = _mm256_permutevar8x32_ps(px, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
                let s2 = _mm256_permutevar8x32_ps(px, _mm256_set1_epi32(2));
                let s2one = _mm256_blend_ps::<0xF0>(s2, _mm256_set1_ps(1.0));
                let t = _mm256_fmadd_ps(hi, s2one, _mm256_mul_ps(lo, s01));
                let q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
                let j = (pc.0 as usize).min(pw - 2) * S;
                let q = with_extras::<S>(q, ep.add(j), pc.1);
                // Four lanes stored, the fourth is overwritten by the next pixel.
                _mm_storeu_ps(qs.as_mut_ptr().add(3 * i), q);
            }
            super::leave_block::<RAW>(block, &qs, k.intensity);
            x0 += n / 3;
        }
    }
}

/// A block of a row into the `sqrt` domain (`RAW`: it is there already), for every kernel.
#[inline(always)]
fn enter_block<const RAW: bool>(block: &[f32], sq: &mut [f32]) {
    let sq = &mut sq[..block.len()];
    if RAW {
        sq.copy_from_slice(block);
    } else {
        for (d, &v) in sq.iter_mut().zip(block) {
            *d = v.max(0.0).sqrt();
        }
    }
}

/// The kernel's output for a block back into the row: squared out of the `sqrt` domain
/// and blended at `intensity` (`RAW`: stored as it is).
#[inline(always)]
fn leave_block<const RAW: bool>(block: &mut [f32], qs: &[f32], intensity: f32) {
    let qs = &qs[..block.len()];
    if RAW {
        block.copy_from_slice(qs);
    } else {
        for (p, &q) in block.iter_mut().zip(qs) {
            let v = q.max(0.0);
            *p += intensity * (v * v - *p);
        }
    }
}

/// One full-resolution row: slice, residual, optional content composite, blend.
#[inline(always)]
fn apply_row<const S: usize, const RAW: bool, const TRI: bool>(k: &RowKernel, row: &mut [f32]) {
    let (gz, pw, gcols, pcols, extra_row) = (k.gz, k.pw, k.gcols, k.pcols, k.extra_row);
    let zmax = (gz - 1) as f32;
    let gx = k.gx::<TRI>();
    let (slice, below) = k.slice.split_at(if TRI { gx * gz } else { k.slice.len() });
    let last = slice.len() - gz - 2;
    let pw1 = pw.max(2);
    // Three passes over the row, so the two streaming ones (into and out of the `sqrt`
    // domain, and the blend) run as plain vector loops and only the grid lookup is
    // per pixel.
    let mut sq = [0f32; ROW_BLOCK * 3];
    let mut qs = [0f32; ROW_BLOCK * 3];
    let mut x0 = 0;
    for block in row.chunks_mut(ROW_BLOCK * 3) {
        let n = block.len();
        enter_block::<RAW>(block, &mut sq);
        for (i, (s, q_out)) in sq[..n]
            .chunks_exact(3)
            .zip(qs[..n].chunks_exact_mut(3))
            .enumerate()
        {
            let (gc, pc) = (gcols[x0 + i], pcols[x0 + i]);
            // Bilinear in (x, brightness) over the row slice.
            let zc = grid::guide(s) * zmax;
            let k0 = (zc as u32 as usize).min(gz - 2);
            let fz = zc - k0 as f32;
            let fx = gc.1;
            let base = (gc.0 as usize * gz + k0).min(last);
            let (w00, w01) = ((1.0 - fx) * (1.0 - fz), (1.0 - fx) * fz);
            let (w10, w11) = (fx * (1.0 - fz), fx * fz);
            let corners = |nodes: &[Node4]| -> Node4 {
                let (n00, n01, n10, n11) = (
                    &nodes[base],
                    &nodes[base + 1],
                    &nodes[base + gz],
                    &nodes[base + gz + 1],
                );
                let mut m: Node4 = [[0.0; 4]; 4];
                for col in 0..4 {
                    let v = v_scale(w00, n00[col]);
                    let v = v_madd(v, w01, n01[col]);
                    let v = v_madd(v, w10, n10[col]);
                    m[col] = v_madd(v, w11, n11[col]);
                }
                m
            };
            let mut m = corners(slice);
            if TRI {
                let m1 = corners(below);
                for col in 0..4 {
                    m[col] = v_lerp(m[col], m1[col], k.fy);
                }
            }
            let mut q = v_madd(v_madd(v_madd(m[3], s[0], m[0]), s[1], m[1]), s[2], m[2]);
            // The low-resolution residual (and for content, the answer and the mask).
            let i0 = (pc.0 as usize).min(pw1 - 2);
            let f = pc.1;
            let ea = &extra_row[i0 * S..i0 * S + S];
            let eb = &extra_row[i0 * S + S..i0 * S + 2 * S];
            let r = v_lerp(
                [ea[0], ea[1], ea[2], ea[3]],
                [eb[0], eb[1], eb[2], eb[3]],
                f,
            );
            q = [q[0] + r[0], q[1] + r[1], q[2] + r[2], 0.0];
            if S == EXTRA_CONTENT {
                let e = v_lerp(
                    [ea[4], ea[5], ea[6], ea[7]],
                    [eb[4], eb[5], eb[6], eb[7]],
                    f,
                );
                q = v_lerp(q, e, r[3]);
            }
            q_out.copy_from_slice(&q[..3]);
        }
        leave_block::<RAW>(block, &qs, k.intensity);
        x0 += n / 3;
    }
}

/// Pixels per pass of the row kernel (its scratch stays in L1).
const ROW_BLOCK: usize = 256;

/// An error for answers that cannot be used at all.
pub fn unusable(detail: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::EngineUnavailable, detail.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_residuals_luma_keeps_its_sign() {
        // A pixel the answer has darker than the maps predict, and one brighter: both
        // residuals reach the photo, as grey of their own luma.
        let r = luma_only(vec![-0.10, -0.08, -0.12, 0.2, 0.0, 0.0]);
        let dark = crate::image::luma(&[-0.10, -0.08, -0.12]);
        assert!(dark < -0.08, "{dark}");
        assert_eq!(r[..3], [dark; 3]);
        assert_eq!(r[3..], [crate::image::luma(&[0.2, 0.0, 0.0]); 3]);
    }
}
