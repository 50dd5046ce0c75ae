//! Luminary Film: emulations of classic photographic films.
//!
//! Looks only: each recipe shapes tone, colour and grain the way the film stock is known
//! for. "cinestill-800t" also has a pixel function, run after its recipe, that adds the red
//! halation glow that stock shows around bright lights (it has no anti-halation layer) —
//! something a recipe of global operators cannot express.

use luminary_plugin_api::prompts::{KEEP_LOOK, NEGATIVE};
use luminary_plugin_api::*;

/// The plugin value exported below.
pub struct Film;

fn strength() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "strength": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0, "title": "Strength",
                         "description": "Scales the emulation (1 = as the film)."},
            "grain": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.5, "title": "Grain"}
        },
        "additionalProperties": false
    })
}

impl Plugin for Film {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "photo.luminary.film".into(),
            name: "Luminary Film".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Colour negative, slide and black & white film emulations".into(),
            author: "Luminary".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        let p = |id: &str, name: &str, d: &str, i: f64| {
            PresetDescriptor::look(id, name, d)
                .intensity(i)
                .params(strength())
                .tags(&["film"])
        };
        vec![
            p(
                "portra-400",
                "Portra 400",
                "Warm, soft colour negative with gentle skin tones and creamy highlights.",
                0.8,
            ),
            p(
                "velvia-50",
                "Velvia 50",
                "Saturated slide film: deep blues and greens, punchy contrast.",
                0.7,
            ),
            p(
                "kodachrome-64",
                "Kodachrome 64",
                "Rich reds and yellows, dense shadows, the classic slide look.",
                0.75,
            ),
            p(
                "tri-x-400",
                "Tri-X 400",
                "Gritty high-contrast black & white with visible grain.",
                1.0,
            ),
            p(
                "faded-instant",
                "Faded instant",
                "Soft, faded instant-print colours with lifted blacks.",
                0.8,
            ),
            p(
                "cinestill-800t",
                "CineStill 800T",
                "Tungsten-balanced cinema film: cool tones and red halation around lights.",
                0.8,
            )
            .with_pixel_function(),
        ]
    }

    fn build_request(
        &self,
        preset: &str,
        params: &Params,
        _facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        let s = params.f32_or("strength", 1.0);
        let grain = params.f32_or("grain", 0.5);
        let mut r = Recipe::default();
        let what = match preset {
            "portra-400" => {
                r.white_balance.temperature = 0.15 * s;
                r.tone.contrast = -0.15 * s;
                r.tone.highlights = -0.3 * s;
                r.tone.shadows = 0.15 * s;
                r.tone.fade = 0.06 * s;
                r.saturation = -0.1 * s;
                r.grade.highlights = Tint {
                    hue: 35.0,
                    amount: 0.15 * s,
                };
                r.grade.shadows = Tint {
                    hue: 180.0,
                    amount: 0.1 * s,
                };
                r.grain = Grain {
                    amount: 0.25 * grain,
                    size: 1.2,
                };
                "Kodak Portra 400 colour negative film: warm, soft contrast, natural pastel skin, creamy highlights, fine grain"
            }
            "velvia-50" => {
                r.tone.contrast = 0.35 * s;
                r.saturation = 0.25 * s;
                r.vibrance = 0.2 * s;
                r.tone.blacks = -0.2 * s;
                r.grade.shadows = Tint {
                    hue: 230.0,
                    amount: 0.1 * s,
                };
                r.grain = Grain {
                    amount: 0.1 * grain,
                    size: 0.8,
                };
                "Fujichrome Velvia 50 slide film: highly saturated blues and greens, deep blacks, punchy contrast"
            }
            "kodachrome-64" => {
                r.tone.contrast = 0.25 * s;
                r.tone.blacks = -0.15 * s;
                r.white_balance.temperature = 0.08 * s;
                r.saturation = 0.1 * s;
                r.grade.midtones = Tint {
                    hue: 20.0,
                    amount: 0.12 * s,
                };
                r.grade.shadows = Tint {
                    hue: 220.0,
                    amount: 0.08 * s,
                };
                r.grain = Grain {
                    amount: 0.15 * grain,
                    size: 0.9,
                };
                "Kodachrome 64 slide film: rich reds and warm yellows, dense shadows, vintage saturated colour"
            }
            "tri-x-400" => {
                r.monochrome = Some(Monochrome {
                    red: 0.4,
                    green: 0.5,
                    blue: 0.1,
                });
                r.tone.contrast = 0.45 * s;
                r.tone.blacks = -0.15 * s;
                r.clarity = 0.3 * s;
                r.grain = Grain {
                    amount: 0.6 * grain.max(0.2),
                    size: 1.6,
                };
                "Kodak Tri-X 400 black and white film pushed one stop: gritty, high contrast, visible grain"
            }
            "faded-instant" => {
                r.tone.fade = 0.35 * s;
                r.tone.contrast = -0.2 * s;
                r.tone.highlights = -0.2 * s;
                r.saturation = -0.25 * s;
                r.grade.highlights = Tint {
                    hue: 50.0,
                    amount: 0.18 * s,
                };
                r.grade.shadows = Tint {
                    hue: 200.0,
                    amount: 0.2 * s,
                };
                r.vignette = Vignette {
                    amount: -0.25 * s,
                    midpoint: 0.45,
                    feather: 0.7,
                };
                "a faded instant print: soft washed-out colours, lifted milky blacks, cyan shadows, warm highlights"
            }
            "cinestill-800t" => {
                r.white_balance.temperature = -0.3 * s;
                r.tone.contrast = 0.1 * s;
                r.tone.highlights = -0.2 * s;
                r.grade.shadows = Tint {
                    hue: 190.0,
                    amount: 0.2 * s,
                };
                r.grain = Grain {
                    amount: 0.3 * grain,
                    size: 1.3,
                };
                "CineStill 800T tungsten cinema film: cool teal tones, soft red halation glow around bright lights, fine grain"
            }
            other => return Err(format!("unknown preset '{other}'")),
        };
        let mut req = EngineRequest::new(
            &format!("Give this photograph the look of {what}. {KEEP_LOOK}"),
            r,
        );
        req.negative_prompt = NEGATIVE.into();
        Ok(req)
    }

    fn process_pixels(
        &self,
        preset: &str,
        params: &Params,
        _facts: &ImageFacts,
        image: &mut Image<'_>,
    ) -> Result<bool, String> {
        if preset != "cinestill-800t" {
            return Ok(false);
        }
        // Runs after the recipe (cool balance, grade, grain): only the glow is ours.
        halation(image, 0.35 * params.f32_or("strength", 1.0));
        Ok(true)
    }
}

/// Adds a red-orange glow around highlights: a blurred highlight mask, computed at 1/8
/// resolution (the glow is soft anyway) and added back with bilinear upsampling. Both
/// full-resolution passes run on every core, in bands of rows, as plain loops over whole
/// rows that the compiler vectorises (no per-pixel table reads or per-cell sums): the
/// mask sums t² down each column of a cell row first, the glow is interpolated across once
/// per low-resolution row, already weighted per channel, and only blended down per row.
fn halation(image: &mut Image<'_>, amount: f32) {
    const F: usize = 8;
    /// The glow's share per channel: red-orange.
    const TINT: [f32; 3] = [1.0, 0.3, 0.08];
    let (w, h) = (image.width, image.height);
    if w == 0 || h == 0 {
        return;
    }
    let (lw, lh) = (w.div_ceil(F), h.div_ceil(F));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The mask: each low-resolution row from its F full rows, the mean of t² per cell.
    let mut mask = vec![0f32; lw * lh];
    let band = lh.div_ceil(threads);
    let data = &*image.data;
    std::thread::scope(|s| {
        for (i, m) in mask.chunks_mut(band * lw).enumerate() {
            s.spawn(move || {
                let mut columns = vec![0f32; w];
                for (k, cells) in m.chunks_mut(lw).enumerate() {
                    let ly = i * band + k;
                    let rows = ly * F..((ly + 1) * F).min(h);
                    let n = rows.len();
                    columns.fill(0.0);
                    for y in rows {
                        let row = &data[y * w * 3..(y + 1) * w * 3];
                        for (c, p) in columns.iter_mut().zip(row.chunks_exact(3)) {
                            let l = 0.2627 * p[0] + 0.6780 * p[1] + 0.0593 * p[2];
                            let v = ((l - 0.7) / 0.3).clamp(0.0, 1.0);
                            *c += v * v;
                        }
                    }
                    for (c, col) in cells.iter_mut().zip(columns.chunks(F)) {
                        *c = col.iter().sum::<f32>() / (col.len() * n) as f32;
                    }
                }
            });
        }
    });
    // Three box blurs ≈ a Gaussian; radius about 1% of the long edge.
    let radius = ((w.max(h) as f32 * 0.01) / F as f32).ceil().max(1.0) as usize;
    for _ in 0..3 {
        mask = box_blur(&mask, lw, lh, radius);
    }
    // Where each full-resolution column falls between two cells.
    let columns: Vec<(usize, usize, f32)> = (0..w)
        .map(|x| {
            let fx = ((x as f32 + 0.5) / F as f32 - 0.5).clamp(0.0, (lw - 1) as f32);
            let x0 = fx as usize;
            (x0, (x0 + 1).min(lw - 1), fx.fract())
        })
        .collect();
    // Low-resolution row `ly` interpolated across to full width, interleaved as the
    // picture is, each sample its channel's share of the glow.
    let across = |ly: usize, out: &mut [f32]| {
        let cells = &mask[ly * lw..][..lw];
        for (o, &(x0, x1, tx)) in out.chunks_exact_mut(3).zip(&columns) {
            let g = amount * (cells[x0] * (1.0 - tx) + cells[x1] * tx);
            o[0] = TINT[0] * g;
            o[1] = TINT[1] * g;
            o[2] = TINT[2] * g;
        }
    };
    let rows_per = h.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, chunk) in image.data.chunks_mut(rows_per * w * 3).enumerate() {
            let across = &across;
            s.spawn(move || {
                // The two low-resolution rows the current full row lies between, each
                // made once per band (a row moves from `below` to `above` as y passes it).
                let (mut above, mut below) = (vec![0f32; w * 3], vec![0f32; w * 3]);
                let mut have: (Option<usize>, Option<usize>) = (None, None);
                for (k, row) in chunk.chunks_exact_mut(w * 3).enumerate() {
                    let y = i * rows_per + k;
                    let fy = ((y as f32 + 0.5) / F as f32 - 0.5).clamp(0.0, (lh - 1) as f32);
                    let (y0, ty) = (fy as usize, fy.fract());
                    let y1 = (y0 + 1).min(lh - 1);
                    if have.0 != Some(y0) {
                        if have.1 == Some(y0) {
                            std::mem::swap(&mut above, &mut below);
                            have.0 = have.1.take();
                        } else {
                            across(y0, &mut above);
                            have.0 = Some(y0);
                        }
                    }
                    if have.1 != Some(y1) {
                        across(y1, &mut below);
                        have.1 = Some(y1);
                    }
                    for ((p, a), b) in row.iter_mut().zip(&above).zip(&below) {
                        *p += a * (1.0 - ty) + b * ty;
                    }
                }
            });
        }
    });
}

/// A box blur of radius `r` along x then y, the window clipped at the edges (the mean of
/// what is inside), by running sums.
fn box_blur(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    fn line(get: impl Fn(usize) -> f32, n: usize, r: usize, mut put: impl FnMut(usize, f32)) {
        let mut sum = vec![0f64; n + 1];
        for i in 0..n {
            sum[i + 1] = sum[i] + get(i) as f64;
        }
        for x in 0..n {
            let (a, b) = (x.saturating_sub(r), (x + r + 1).min(n));
            put(x, ((sum[b] - sum[a]) / (b - a) as f64) as f32);
        }
    }
    let mut across = vec![0f32; src.len()];
    for y in 0..h {
        line(|x| src[y * w + x], w, r, |x, v| across[y * w + x] = v);
    }
    let mut out = vec![0f32; src.len()];
    for x in 0..w {
        line(|y| across[y * w + x], h, r, |y, v| out[y * w + x] = v);
    }
    out
}

export_plugin!(Film);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_and_halation_glows_red_around_a_light() {
        for d in Film.presets() {
            let req = Film
                .build_request(&d.id, &Params::default(), &ImageFacts::default())
                .unwrap();
            assert!(
                req.prompt.contains("Keep the exact composition"),
                "{}",
                d.id
            );
            assert_ne!(req.recipe, Recipe::default(), "{}", d.id);
        }
        let (w, h) = (160, 120);
        let mut data = vec![0.05f32; w * h * 3];
        for y in 55..65 {
            for x in 75..85 {
                data[(y * w + x) * 3..][..3].copy_from_slice(&[1.0, 1.0, 1.0]);
            }
        }
        let mut img = Image {
            width: w,
            height: h,
            data: &mut data,
        };
        assert!(Film
            .process_pixels(
                "cinestill-800t",
                &Params::default(),
                &ImageFacts::default(),
                &mut img
            )
            .unwrap());
        let near = &data[(60 * w + 90) * 3..][..3];
        let far = &data[(5 * w + 5) * 3..][..3];
        assert!(
            near[0] > far[0] + 0.01 && near[0] > near[2],
            "no red glow: {near:?} vs {far:?}"
        );
    }

    /// The halation as it was written first, one thread and one pixel at a time: the
    /// reference the banded, threaded one is held to.
    /// Adds a red-orange glow around highlights: a blurred highlight mask, computed at 1/8
    /// resolution (the glow is soft anyway) and added back with bilinear upsampling.
    fn halation_reference(image: &mut Image<'_>, amount: f32) {
        let (w, h) = (image.width, image.height);
        let f = 8usize;
        let (lw, lh) = (w.div_ceil(f), h.div_ceil(f));
        let mut mask = vec![0f32; lw * lh];
        let mut count = vec![0f32; lw * lh];
        for y in 0..h {
            for x in 0..w {
                let p = &image.data[(y * w + x) * 3..][..3];
                let l = 0.2627 * p[0] + 0.6780 * p[1] + 0.0593 * p[2];
                let t = ((l - 0.7) / 0.3).clamp(0.0, 1.0);
                let i = (y / f) * lw + x / f;
                mask[i] += t * t;
                count[i] += 1.0;
            }
        }
        for (m, c) in mask.iter_mut().zip(&count) {
            *m /= c.max(1.0);
        }
        // Three box blurs ≈ a Gaussian; radius about 1% of the long edge.
        let radius = ((w.max(h) as f32 * 0.01) / f as f32).ceil().max(1.0) as usize;
        for _ in 0..3 {
            mask = box_blur_reference(&mask, lw, lh, radius);
        }
        for y in 0..h {
            let fy = ((y as f32 + 0.5) / f as f32 - 0.5).clamp(0.0, (lh - 1) as f32);
            let (y0, ty) = (fy as usize, fy.fract());
            let y1 = (y0 + 1).min(lh - 1);
            for x in 0..w {
                let fx = ((x as f32 + 0.5) / f as f32 - 0.5).clamp(0.0, (lw - 1) as f32);
                let (x0, tx) = (fx as usize, fx.fract());
                let x1 = (x0 + 1).min(lw - 1);
                let top = mask[y0 * lw + x0] * (1.0 - tx) + mask[y0 * lw + x1] * tx;
                let bot = mask[y1 * lw + x0] * (1.0 - tx) + mask[y1 * lw + x1] * tx;
                let g = amount * (top * (1.0 - ty) + bot * ty);
                let p = &mut image.data[(y * w + x) * 3..][..3];
                p[0] += g;
                p[1] += 0.3 * g;
                p[2] += 0.08 * g;
            }
        }
    }

    fn box_blur_reference(src: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
        let pass =
            |src: &[f32], w: usize, h: usize, stride_x: usize, stride_y: usize| -> Vec<f32> {
                // Blur along x of a (w × h) view with the given strides.
                let mut out = vec![0f32; src.len()];
                for y in 0..h {
                    for x in 0..w {
                        let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
                        let mut s = 0.0;
                        for k in a..b {
                            s += src[y * stride_y + k * stride_x];
                        }
                        out[y * stride_y + x * stride_x] = s / (b - a) as f32;
                    }
                }
                out
            };
        let horizontal = pass(src, w, h, 1, w);
        pass(&horizontal, h, w, w, 1)
    }

    /// The threaded halation gives the reference's picture (within float rounding of the
    /// reordered interpolation) on a 1000 × 667 scene with lights, texture and rows and
    /// columns that do not fill the last 8 × 8 cells.
    #[test]
    fn threaded_halation_matches_the_one_pixel_at_a_time_reference() {
        let (w, h) = (1001, 667);
        let mut data: Vec<f32> = (0..w * h * 3)
            .map(|i| {
                let (x, y) = ((i / 3) % w, (i / 3) / w);
                let hash = ((x * 73_856_093) ^ (y * 19_349_663)) % 1000;
                0.05 + 0.4 * x as f32 / w as f32 + 0.1 * hash as f32 / 1000.0
            })
            .collect();
        for (cx, cy) in [(100usize, 100usize), (500, 333), (990, 660)] {
            for y in cy.saturating_sub(6)..(cy + 6).min(h) {
                for x in cx.saturating_sub(6)..(cx + 6).min(w) {
                    data[(y * w + x) * 3..][..3].copy_from_slice(&[1.2, 1.1, 1.0]);
                }
            }
        }
        let mut want = data.clone();
        halation_reference(
            &mut Image {
                width: w,
                height: h,
                data: &mut want,
            },
            0.35,
        );
        halation(
            &mut Image {
                width: w,
                height: h,
                data: &mut data,
            },
            0.35,
        );
        let worst = data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "differs by up to {worst}");
    }
}
