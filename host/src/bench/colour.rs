//! `luminary bench --colour DIR`: does the base look like what the camera showed?
//!
//! For every camera RAW in DIR, the base (intensity 0) is compared with the JPEG preview
//! the camera (or Adobe's converter) embedded in the same file — an independent reference
//! rendered by someone else's code from the same sensor data. LibRaw's develop of the same
//! file (rawpy, camera white balance, sRGB) is measured the same way, side by side.
//!
//! Matching, before any number is taken: the preview is turned (0/90/180/270°) to whichever
//! fits the base best, both are area-averaged to the same size (the preview's, at most
//! 768 px), and the preview is registered onto the base (scale and shift: previews often
//! show a slightly different crop). Then, on the pixels both cover:
//!
//! * ΔL*: median L* of the candidate minus median L* of the preview (brightness as shown);
//! * Δab: the chroma distance √(Δa*² + Δb*²) after matching the tone curve — the
//!   candidate's L* mapped onto the preview's by quantiles and each pixel's XYZ scaled to
//!   that lightness, so a different contrast curve is not counted as a colour error.
//!   Median and 90th percentile.
//!
//! The embedded preview is only ever a reference here: rendering never reads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

use crate::color::OutputSpace;
use crate::config::Config;
use crate::image::RgbF32;
use crate::paths::Paths;
use crate::pipeline::{encode, preview, render};
use crate::transfer::align;

/// rawpy: the embedded preview (decoded as stored) and LibRaw's develop, as PNGs.
const PREVIEW_SCRIPT: &str = r#"
import sys, json, io
import rawpy
from PIL import Image
out = sys.argv[1]
for i, p in enumerate(sys.argv[2:]):
    r = {"file": p, "preview": None, "libraw": None}
    try:
        with rawpy.imread(p) as raw:
            try:
                t = raw.extract_thumb()
                if t.format == rawpy.ThumbFormat.JPEG:
                    im = Image.open(io.BytesIO(t.data)).convert("RGB")
                else:
                    im = Image.fromarray(t.data).convert("RGB")
                f = "%s/%d-preview.png" % (out, i)
                im.save(f)
                r["preview"] = f
            except Exception as e:
                r["preview_error"] = str(e)
            try:
                rgb = raw.postprocess(use_camera_wb=True, gamma=(2.4, 12.92), output_bps=8)
                f = "%s/%d-libraw.png" % (out, i)
                Image.fromarray(rgb).save(f)
                r["libraw"] = f
            except Exception as e:
                r["libraw_error"] = str(e)
    except Exception as e:
        r["libraw_error"] = str(e)
    print(json.dumps(r), flush=True)
"#;

/// Colour and brightness of one rendering against the preview.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Agreement {
    /// Median chroma distance Δab after tone matching.
    pub dab_median: f64,
    /// 90th percentile of it.
    pub dab_p90: f64,
    /// Median L* minus the preview's.
    pub dl: f64,
    /// Quarter turns (clockwise) the preview needed to match.
    pub turns: u8,
    /// Registration scale of the preview onto the base.
    pub scale: f32,
    /// Pixels compared.
    pub pixels: usize,
}

/// One file's row.
#[derive(Serialize, Clone, Debug)]
pub struct Row {
    /// The RAW.
    pub file: PathBuf,
    /// The base's size.
    pub width: usize,
    /// The base's height.
    pub height: usize,
    /// The size of LibRaw's develop (upright), when it read the file.
    pub libraw_size: Option<[usize; 2]>,
    /// Quarter turns that match LibRaw's develop to ours (0: the same orientation).
    pub libraw_turns: Option<u8>,
    /// The embedded preview's size, when there is one.
    pub preview_size: Option<[usize; 2]>,
    /// Luminary's base against the preview.
    pub luminary: Option<Agreement>,
    /// LibRaw's develop against the preview.
    pub libraw: Option<Agreement>,
    /// The base's near-white highlights (L* ≥ 97): their share of the picture and the 99th
    /// percentile of their chroma — blown highlights must be neutral, not magenta or cyan.
    pub highlights: Option<(f64, f64)>,
    /// White point the base used (CIE xy) and its temperature.
    pub white: Option<([f64; 2], f64)>,
    /// Fallbacks develop logged.
    pub notes: Vec<String>,
    /// Why this file could not be measured (decode errors, a missing reference).
    pub error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Reference {
    file: PathBuf,
    preview: Option<PathBuf>,
    libraw: Option<PathBuf>,
    #[serde(default)]
    libraw_error: Option<String>,
}

/// The camera RAWs directly in `dir`, sorted.
pub fn raws_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                crate::ingest::checks::RAW_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs the benchmark over `dir` and prints a table (or JSON lines).
pub fn run(
    paths: &Paths,
    dir: &Path,
    python: &str,
    json: bool,
    save: Option<&Path>,
) -> anyhow::Result<i32> {
    let config = Config::load(&paths.config_file)?;
    let files = raws_in(dir)?;
    if files.is_empty() {
        anyhow::bail!("{}: no camera RAW files", dir.display());
    }
    let tmp = tempfile::tempdir()?;
    let refs = references(python, tmp.path(), &files)?;
    let rows: Vec<Row> = files
        .iter()
        .map(|f| measure(f, refs.iter().find(|r| &r.file == f), &config, save))
        .collect();
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(0);
    }
    println!("base against the embedded preview (Δab after tone matching; ΔL* as shown)");
    println!(
        "{:<44} {:>11} {:>21} {:>21}",
        "file", "size", "Luminary Δab/p90/ΔL*", "LibRaw Δab/p90/ΔL*"
    );
    let fmt = |a: &Option<Agreement>| match a {
        Some(a) => format!("{:>5.1} {:>5.1} {:>+6.1}", a.dab_median, a.dab_p90, a.dl),
        None => "-".into(),
    };
    for r in &rows {
        let name = r
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{:<44} {:>11} {:>21} {:>21}{}",
            name,
            format!("{}×{}", r.width, r.height),
            fmt(&r.luminary),
            fmt(&r.libraw),
            r.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
        if let Some((xy, cct)) = r.white {
            println!(
                "{:<44}   white xy {:.4},{:.4} ({cct:.0} K)",
                "", xy[0], xy[1]
            );
        }
        for n in &r.notes {
            println!("{:<44}   note: {n}", "");
        }
    }
    Ok(0)
}

/// The previews and LibRaw's develops, through rawpy, in one Python run.
fn references(python: &str, tmp: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Reference>> {
    if python.is_empty() {
        anyhow::bail!("the colour benchmark needs Python with rawpy and Pillow (--python)");
    }
    let out = Command::new(python)
        .arg("-c")
        .arg(PREVIEW_SCRIPT)
        .arg(tmp)
        .args(files)
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "the reference script failed (are rawpy and Pillow installed? `pip install rawpy pillow`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("the reference script's answer"))
        .collect()
}

fn load_srgb(path: &Path) -> anyhow::Result<RgbF32> {
    let img = image::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .into_rgb32f();
    Ok(RgbF32::new(
        img.width() as usize,
        img.height() as usize,
        img.into_raw(),
    ))
}

fn measure(
    file: &Path,
    reference: Option<&Reference>,
    config: &Config,
    save: Option<&Path>,
) -> Row {
    let mut row = Row {
        file: file.to_path_buf(),
        width: 0,
        height: 0,
        libraw_size: None,
        libraw_turns: None,
        preview_size: None,
        luminary: None,
        libraw: None,
        highlights: None,
        white: None,
        notes: Vec::new(),
        error: None,
    };
    let ingested = match crate::ingest::ingest(file, &config.limits) {
        Ok(i) => i,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    if let Some(r) = &ingested.raw {
        row.white = Some((r.white_xy, r.cct));
        row.notes = r.notes.clone();
    }
    let mut base = ingested.image;
    render::render_base(&mut base, ingested.rendering);
    let ours = to_srgb(&base);
    row.width = ours.width;
    row.height = ours.height;
    row.highlights = Some(highlights(&ours));
    if let Some(dir) = save {
        let bytes: Vec<u8> = ours.data.iter().map(|v| (v * 255.0 + 0.5) as u8).collect();
        let name = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let out = dir.join(format!("{name}-base.jpg"));
        if let Err(e) = image::save_buffer(
            &out,
            &bytes,
            ours.width as u32,
            ours.height as u32,
            image::ExtendedColorType::Rgb8,
        ) {
            row.notes
                .push(format!("cannot save {}: {e}", out.display()));
        }
    }
    let Some(reference) = reference else {
        row.error = Some("no reference from rawpy".into());
        return row;
    };
    let libraw = reference.libraw.as_ref().and_then(|p| load_srgb(p).ok());
    if let Some(l) = &libraw {
        row.libraw_size = Some([l.width, l.height]);
        row.libraw_turns = best_turn(l, &ours).map(|(t, _)| t);
    } else if let Some(e) = &reference.libraw_error {
        row.notes.push(format!("LibRaw: {e}"));
    }
    let Some(preview) = reference.preview.as_ref().and_then(|p| load_srgb(p).ok()) else {
        return row;
    };
    row.preview_size = Some([preview.width, preview.height]);
    row.luminary = agreement(&ours, &preview);
    row.libraw = libraw.as_ref().and_then(|l| agreement(l, &preview));
    row
}

/// The base as sRGB-encoded values 0..1.
fn to_srgb(base: &RgbF32) -> RgbF32 {
    let v = encode::to_u16(base, OutputSpace::Srgb);
    RgbF32::new(
        base.width,
        base.height,
        v.iter().map(|&c| c as f32 / 65535.0).collect(),
    )
}

/// `img` turned clockwise by `turns` quarter turns.
fn turned(img: &RgbF32, turns: u8) -> RgbF32 {
    // EXIF orientations 6 (90° cw), 3 (180°), 8 (270° cw).
    match turns % 4 {
        0 => img.clone(),
        1 => img.clone().oriented(6),
        2 => img.clone().oriented(3),
        _ => img.clone().oriented(8),
    }
}

fn luma(img: &RgbF32) -> Vec<f32> {
    img.data
        .par_chunks_exact(3)
        .map(|p| 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2])
        .collect()
}

/// Both pictures at one size: `reference`'s, at most 768 px, `candidate`'s aspect.
fn common_size(candidate: &RgbF32, reference: &RgbF32) -> (usize, usize) {
    let long = reference
        .width
        .max(reference.height)
        .min(768)
        .min(candidate.width.max(candidate.height));
    let s = long as f64 / candidate.width.max(candidate.height) as f64;
    (
        ((candidate.width as f64 * s).round() as usize).max(8),
        ((candidate.height as f64 * s).round() as usize).max(8),
    )
}

/// A registered pair: candidate and reference on one grid, and where the reference is valid.
struct Pair {
    cand: RgbF32,
    refr: Vec<f32>,
    valid: Vec<f32>,
    scale: f32,
    score: f64,
}

fn pair(candidate: &RgbF32, reference: &RgbF32) -> Option<Pair> {
    let aspect = |i: &RgbF32| i.width as f64 / i.height as f64;
    if (aspect(candidate) / aspect(reference)).ln().abs() > 0.12 {
        return None;
    }
    let (w, h) = common_size(candidate, reference);
    let cand = preview::resize_area(candidate, w, h);
    let refr = preview::resize_area(reference, w, h);
    let t = align::estimate(&luma(&cand), &luma(&refr), w, h);
    let (warped, valid) = align::warp(&refr.data, w, h, t);
    // Agreement of structure: correlation of luma gradients where both exist.
    let (la, lb) = (luma(&cand), luma(&RgbF32::new(w, h, warped.clone())));
    let grad = |l: &[f32], i: usize| -> f64 {
        let (x, y) = (i % w, i / w);
        if x + 1 >= w || y + 1 >= h {
            return 0.0;
        }
        ((l[i + 1] - l[i]).abs() + (l[i + w] - l[i]).abs()) as f64
    };
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..w * h {
        if valid[i] > 0.5 {
            let (a, b) = (grad(&la, i), grad(&lb, i));
            sab += a * b;
            saa += a * a;
            sbb += b * b;
        }
    }
    Some(Pair {
        cand,
        refr: warped,
        valid,
        scale: t.scale(),
        score: sab / (saa * sbb).sqrt().max(1e-12),
    })
}

/// The quarter turn of `reference` that best matches `candidate`, and that pair.
fn best_turn(reference: &RgbF32, candidate: &RgbF32) -> Option<(u8, Pair)> {
    (0..4u8)
        .filter_map(|t| pair(candidate, &turned(reference, t)).map(|p| (t, p)))
        .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
}

/// Share of pixels at L* ≥ 97 and the 99th percentile of their chroma.
fn highlights(img: &RgbF32) -> (f64, f64) {
    let mut chroma: Vec<f64> = img
        .data
        .par_chunks_exact(3)
        .filter_map(|p| {
            let l = lab(to_xyz(p));
            (l[0] >= 97.0).then(|| l[1].hypot(l[2]))
        })
        .collect();
    if chroma.is_empty() {
        return (0.0, 0.0);
    }
    chroma.sort_by(f64::total_cmp);
    (
        chroma.len() as f64 / img.pixels() as f64,
        quantile(&chroma, 0.99),
    )
}

fn srgb_to_linear(v: f32) -> f64 {
    let v = v.clamp(0.0, 1.0) as f64;
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

fn to_xyz(p: &[f32]) -> [f64; 3] {
    let [r, g, b] = [p[0], p[1], p[2]].map(srgb_to_linear);
    [
        0.4124564 * r + 0.3575761 * g + 0.1804375 * b,
        0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
        0.0193339 * r + 0.1191920 * g + 0.9503041 * b,
    ]
}

const D65: [f64; 3] = [0.95047, 1.0, 1.08883];

fn lab(xyz: [f64; 3]) -> [f64; 3] {
    let f = |t: f64| {
        if t > 216.0 / 24389.0 {
            t.cbrt()
        } else {
            (24389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let [fx, fy, fz] = [0, 1, 2].map(|i| f(xyz[i] / D65[i]));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn y_of_l(l: f64) -> f64 {
    let fy = (l + 16.0) / 116.0;
    if fy > 6.0 / 29.0 {
        fy * fy * fy
    } else {
        (l * 27.0 / 24389.0).max(0.0)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How well `candidate` (sRGB 0..1, upright) agrees with `reference` in colour and
/// brightness (see the module documentation).
pub fn agreement(candidate: &RgbF32, reference: &RgbF32) -> Option<Agreement> {
    let (turns, p) = best_turn(reference, candidate)?;
    let n = p.valid.len();
    let idx: Vec<usize> = (0..n).filter(|&i| p.valid[i] > 0.5).collect();
    if idx.len() < 64 {
        return None;
    }
    let cand: Vec<([f64; 3], [f64; 3])> = idx
        .iter()
        .map(|&i| {
            let xyz = to_xyz(&p.cand.data[i * 3..i * 3 + 3]);
            (xyz, lab(xyz))
        })
        .collect();
    let refr: Vec<[f64; 3]> = idx
        .iter()
        .map(|&i| lab(to_xyz(&p.refr[i * 3..i * 3 + 3])))
        .collect();
    let mut lc: Vec<f64> = cand.iter().map(|c| c.1[0]).collect();
    let mut lr: Vec<f64> = refr.iter().map(|r| r[0]).collect();
    lc.sort_by(f64::total_cmp);
    lr.sort_by(f64::total_cmp);
    let dl = quantile(&lc, 0.5) - quantile(&lr, 0.5);
    // Tone matching: a monotone map of L* by quantiles (1001 knots).
    let knots: Vec<(f64, f64)> = (0..=1000)
        .map(|k| {
            let q = k as f64 / 1000.0;
            (quantile(&lc, q), quantile(&lr, q))
        })
        .collect();
    let map_l = |l: f64| -> f64 {
        let i = knots.partition_point(|k| k.0 < l);
        if i == 0 {
            return knots[0].1;
        }
        if i >= knots.len() {
            return knots[knots.len() - 1].1;
        }
        let (a, b) = (knots[i - 1], knots[i]);
        if b.0 - a.0 < 1e-9 {
            return 0.5 * (a.1 + b.1);
        }
        a.1 + (b.1 - a.1) * (l - a.0) / (b.0 - a.0)
    };
    let mut dab: Vec<f64> = cand
        .par_iter()
        .zip(refr.par_iter())
        .map(|((xyz, l), r)| {
            let y = xyz[1];
            let target = y_of_l(map_l(l[0]));
            let m = if y > 1e-6 {
                lab(xyz.map(|v| v * target / y))
            } else {
                [0.0; 3]
            };
            ((m[1] - r[1]).powi(2) + (m[2] - r[2]).powi(2)).sqrt()
        })
        .collect();
    dab.sort_by(f64::total_cmp);
    Some(Agreement {
        dab_median: quantile(&dab, 0.5),
        dab_p90: quantile(&dab, 0.9),
        dl,
        turns,
        scale: p.scale,
        pixels: idx.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo-like test card: smooth colour fields and edges at several scales.
    fn card(w: usize, h: usize) -> RgbF32 {
        let mut d = vec![0f32; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
                let ring = (((u - 0.4).powi(2) + (v - 0.5).powi(2)).sqrt() * 18.0).sin() > 0.0;
                let bar = ((u * 7.0) as usize + (v * 5.0) as usize).is_multiple_of(2);
                let i = (y * w + x) * 3;
                d[i] = 0.2 + 0.6 * u * if ring { 1.0 } else { 0.7 };
                d[i + 1] = 0.3 + 0.4 * v * if bar { 1.0 } else { 0.8 };
                d[i + 2] = 0.25 + 0.5 * (1.0 - u) * v;
            }
        }
        RgbF32::new(w, h, d)
    }

    #[test]
    fn a_picture_agrees_with_itself_turned_and_smaller() {
        let img = card(600, 400);
        let small = preview::resize_area(&img, 300, 200).oriented(8);
        let a = agreement(&img, &small).unwrap();
        assert_eq!(a.turns, 1, "{a:?}");
        assert!(a.dab_median < 0.5 && a.dl.abs() < 0.5, "{a:?}");
    }

    #[test]
    fn a_colour_cast_shows_in_dab_and_a_darker_picture_in_dl_only() {
        let img = card(600, 400);
        let mut cast = img.clone();
        cast.data.chunks_exact_mut(3).for_each(|p| {
            p[0] = (p[0] * 1.15).min(1.0);
            p[2] *= 0.85;
        });
        let a = agreement(&cast, &img).unwrap();
        assert!(a.dab_median > 5.0, "{a:?}");
        let mut dark = img.clone();
        dark.data.iter_mut().for_each(|v| *v *= 0.8);
        let d = agreement(&dark, &img).unwrap();
        assert!(d.dl < -5.0, "{d:?}");
        assert!(
            d.dab_median < 1.5,
            "tone matching removes brightness from Δab: {d:?}"
        );
    }
}
