//! Answers as generative image models give them, for the fidelity benchmark.
//!
//! The clean rows of the fidelity table hand the transfer the exact edit of the preview.
//! Real image models answer on their own canvas, move and rescale the content a little,
//! re-draw texture and noise everywhere, and often send a JPEG. This module makes such an
//! answer from the exact one, one degradation at a time or all together, so the table can
//! say what each costs and the registration and fit can be held to targets on them.
//!
//! What each degradation does (the parameters are the constants below; PROVIDERS.md has
//! the sources for the canvases):
//!
//! - **Canvas**: the model answers on the size of its own that is closest to the photo's
//!   aspect ratio (Gemini 2.5 Flash Image's table of ten; gpt-image-1's three; FLUX.1
//!   Kontext's seventeen preferred ~1 MP sizes, which fal, Replicate and ComfyUI's
//!   `FluxKontextImageScale` all use). The content covers the canvas — scaled by the larger
//!   of the two ratios and centre-cropped — as Kontext's own resize does; where the canvas
//!   has another aspect, a stretch (what the transfer's resize assumes) is then wrong by
//!   the difference, up to 12 % on gpt-image-1 for a 4:3 photo.
//! - **Geometry**: the content scaled non-uniformly and moved, both up to about 1 % of the
//!   picture, and zoomed by a further 1 % (a crop of half a percent at each edge).
//! - **Texture**: the model's picture is softer (a Gaussian blur), carries fresh noise of
//!   its own, and a different, coarser grain in flat areas (sky, walls, skin), where models
//!   most visibly invent texture.
//! - **JPEG**: 4:2:0 at a quality from 75 to 95, each 2×2 block's chroma averaged as
//!   libjpeg and its descendants do.
//!
//! All of it is deterministic (a fixed-seed hash, not a random generator), so the table
//! and the tests give the same figures on every run.

use rayon::prelude::*;

use super::blur::gaussian;
use crate::image::RgbF32;

/// One provider's answer canvases and what Luminary asks it for.
#[derive(Clone, Copy, Debug)]
pub struct Provider {
    /// Table label.
    pub name: &'static str,
    /// Width × height of every canvas the model answers on.
    pub canvases: &'static [(usize, usize)],
}

/// Gemini 2.5 Flash Image: one canvas per `imageConfig.aspectRatio`, about 1 MP each (the
/// Gemini API's image-generation page, "Gemini 2.5 Flash Image" table). Luminary asks for
/// the ratio closest to the photo's.
pub const GEMINI: Provider = Provider {
    name: "Gemini",
    canvases: &[
        (1024, 1024),
        (832, 1248),
        (1248, 832),
        (864, 1184),
        (1184, 864),
        (896, 1152),
        (1152, 896),
        (768, 1344),
        (1344, 768),
        (1536, 672),
    ],
};

/// gpt-image-1: the three `size` values; Luminary asks for the closest to the photo's
/// aspect ratio.
pub const OPENAI: Provider = Provider {
    name: "OpenAI",
    canvases: &[(1024, 1024), (1536, 1024), (1024, 1536)],
};

/// FLUX.1 Kontext (fal, Replicate, ComfyUI): `PREFERED_KONTEXT_RESOLUTIONS` of
/// black-forest-labs/flux `src/flux/util.py`, which ComfyUI's `FluxKontextImageScale` uses.
pub const KONTEXT: Provider = Provider {
    name: "FLUX Kontext",
    canvases: &[
        (672, 1568),
        (688, 1504),
        (720, 1456),
        (752, 1392),
        (800, 1328),
        (832, 1248),
        (880, 1184),
        (944, 1104),
        (1024, 1024),
        (1104, 944),
        (1184, 880),
        (1248, 832),
        (1328, 800),
        (1392, 752),
        (1456, 720),
        (1504, 688),
        (1568, 672),
    ],
};

/// Every provider profile, in table order.
pub const PROVIDERS: [Provider; 3] = [GEMINI, OPENAI, KONTEXT];

impl Provider {
    /// The canvas the model answers a `w`×`h` picture on: the closest aspect ratio.
    pub fn canvas(&self, w: usize, h: usize) -> (usize, usize) {
        let want = (w as f64 / h as f64).ln();
        *self
            .canvases
            .iter()
            .min_by(|a, b| {
                let d = |c: &&(usize, usize)| ((c.0 as f64 / c.1 as f64).ln() - want).abs();
                d(a).total_cmp(&d(b))
            })
            .expect("a provider has canvases")
    }
}

/// How the content moves on the canvas: about the picture's centre, scaled by `sx`, `sy`
/// and moved by `tx`, `ty` (fractions of the width and height), then zoomed by
/// `1 + crop` (the edges cut off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    /// Horizontal scale.
    pub sx: f32,
    /// Vertical scale.
    pub sy: f32,
    /// Horizontal shift, a fraction of the width.
    pub tx: f32,
    /// Vertical shift, a fraction of the height.
    pub ty: f32,
    /// Extra zoom: `crop / 2` of each edge leaves the picture.
    pub crop: f32,
}

/// The geometry of the benchmark: 0.9 % wider and 0.6 % shorter, moved 0.8 % right and
/// 0.9 % up, and 1 % cropped away.
pub const MOVED: Geometry = Geometry {
    sx: 1.009,
    sy: 0.994,
    tx: 0.008,
    ty: -0.009,
    crop: 0.01,
};

/// Re-synthesised texture, in the canvas's pixels and 8-bit levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Texture {
    /// Gaussian σ of the softening, in canvas pixels.
    pub soften: f32,
    /// Standard deviation of the fresh per-pixel noise (mostly luma), in 8-bit levels.
    pub noise: f32,
    /// Standard deviation of the grain added where the picture is flat, in 8-bit levels;
    /// the grain is about two canvas pixels across.
    pub grain: f32,
}

/// The benchmark's texture: a σ = 0.8 px softening, noise of 1.5 levels, grain of 3 levels
/// in flat areas.
pub const RESYNTHESISED: Texture = Texture {
    soften: 0.8,
    noise: 1.5,
    grain: 3.0,
};

/// What happens to an exact answer on its way back; `None` leaves that part out.
#[derive(Clone, Copy, Debug, Default)]
pub struct Degradation {
    /// The provider whose canvas the answer comes on.
    pub canvas: Option<Provider>,
    /// How the content moves.
    pub geometry: Option<Geometry>,
    /// Texture re-synthesis.
    pub texture: Option<Texture>,
    /// The JPEG the answer comes as; `None` is a PNG.
    pub jpeg: Option<Jpeg>,
}

/// A JPEG answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jpeg {
    /// Quality, 1–100.
    pub quality: u8,
    /// How much of the chroma the encoder keeps.
    pub chroma: Chroma,
}

/// A JPEG's chroma resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    /// 4:2:0, half in each direction: the default of libjpeg, PIL and most servers.
    Half,
    /// 4:4:4, full resolution: what ImageMagick writes at quality 90 and above, and PIL
    /// when asked for `subsampling=0`.
    Full,
}

impl Jpeg {
    /// A 4:2:0 JPEG of `quality`.
    pub const fn q(quality: u8) -> Jpeg {
        Jpeg {
            quality,
            chroma: Chroma::Half,
        }
    }
}

impl Degradation {
    /// Everything at once, on `provider`'s canvas, as a JPEG of `quality`.
    pub fn all(provider: Provider, quality: u8) -> Degradation {
        Degradation {
            canvas: Some(provider),
            geometry: Some(MOVED),
            texture: Some(RESYNTHESISED),
            jpeg: Some(Jpeg::q(quality)),
        }
    }

    /// Table label.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.canvas {
            parts.push(format!("{} canvas", p.name));
        }
        if self.geometry.is_some() {
            parts.push("moved".into());
        }
        if self.texture.is_some() {
            parts.push("texture".into());
        }
        if let Some(j) = self.jpeg {
            parts.push(match j.chroma {
                Chroma::Half => format!("JPEG{}", j.quality),
                Chroma::Full => format!("JPEG{} 4:4:4", j.quality),
            });
        }
        if parts.is_empty() {
            "clean PNG".into()
        } else {
            parts.join(" + ")
        }
    }
}

/// Makes the model's answer from the exact edit of the preview (`edited`, sRGB-encoded
/// 0..1): on its canvas, moved, re-textured, 8-bit and through its format. The result is
/// sRGB-encoded 0..1 at the canvas size.
pub fn answer(edited: &RgbF32, d: &Degradation) -> RgbF32 {
    let (pw, ph) = (edited.width, edited.height);
    let (cw, ch) = d.canvas.map_or((pw, ph), |p| p.canvas(pw, ph));
    let mut img = if (cw, ch) == (pw, ph) && d.geometry.is_none() {
        edited.clone()
    } else {
        place(edited, cw, ch, d.geometry)
    };
    if let Some(t) = d.texture {
        retexture(&mut img, t);
    }
    let rgb8: Vec<u8> = img
        .data
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let rgb8 = match d.jpeg {
        Some(j) => jpeg_round_trip(cw, ch, rgb8, j),
        None => rgb8,
    };
    RgbF32::new(cw, ch, rgb8.iter().map(|&b| b as f32 / 255.0).collect())
}

/// Renders `img` onto a `cw`×`ch` canvas: covering it (scaled by the larger ratio,
/// centred), then moved by `geometry`. Catmull-Rom sampling, as a model's decoder draws
/// sharp pixels rather than bilinear mush.
fn place(img: &RgbF32, cw: usize, ch: usize, geometry: Option<Geometry>) -> RgbF32 {
    let (pw, ph) = (img.width as f32, img.height as f32);
    let k = (cw as f32 / pw).max(ch as f32 / ph);
    let (ox, oy) = ((pw * k - cw as f32) / 2.0, (ph * k - ch as f32) / 2.0);
    let g = geometry.unwrap_or(Geometry {
        sx: 1.0,
        sy: 1.0,
        tx: 0.0,
        ty: 0.0,
        crop: 0.0,
    });
    let (cx, cy) = (pw / 2.0, ph / 2.0);
    // Canvas pixel centre → the picture's continuous coordinates (pixel centres at +0.5).
    let to_picture = |u: usize, v: usize| -> (f32, f32) {
        let (x1, y1) = ((u as f32 + 0.5 + ox) / k, (v as f32 + 0.5 + oy) / k);
        let z = 1.0 + g.crop;
        (
            cx + (x1 - cx - g.tx * pw) / (g.sx * z),
            cy + (y1 - cy - g.ty * ph) / (g.sy * z),
        )
    };
    let mut out = vec![0f32; cw * ch * 3];
    out.par_chunks_mut(cw * 3).enumerate().for_each(|(v, row)| {
        for u in 0..cw {
            let (x, y) = to_picture(u, v);
            row[u * 3..u * 3 + 3].copy_from_slice(&catmull_rom(img, x - 0.5, y - 0.5));
        }
    });
    RgbF32::new(cw, ch, out)
}

/// Catmull-Rom sample of `img` at pixel coordinates `(x, y)` (pixel centres at integers),
/// edges clamped.
fn catmull_rom(img: &RgbF32, x: f32, y: f32) -> [f32; 3] {
    let weights = |t: f32| -> [f32; 4] {
        let (t2, t3) = (t * t, t * t * t);
        [
            0.5 * (-t3 + 2.0 * t2 - t),
            0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
            0.5 * (-3.0 * t3 + 4.0 * t2 + t),
            0.5 * (t3 - t2),
        ]
    };
    let (w, h) = (img.width as isize, img.height as isize);
    let (x0, y0) = (x.floor(), y.floor());
    let (wx, wy) = (weights(x - x0), weights(y - y0));
    let mut acc = [0f32; 3];
    for (j, wyj) in wy.iter().enumerate() {
        let yy = (y0 as isize + j as isize - 1).clamp(0, h - 1) as usize;
        for (i, wxi) in wx.iter().enumerate() {
            let xx = (x0 as isize + i as isize - 1).clamp(0, w - 1) as usize;
            let p = &img.data[(yy * img.width + xx) * 3..][..3];
            let k = wxi * wyj;
            acc[0] += k * p[0];
            acc[1] += k * p[1];
            acc[2] += k * p[2];
        }
    }
    acc
}

/// A fixed-seed standard normal per `(index, stream)`: splitmix64 into Box–Muller. The
/// benchmark must give the same figures on every run and every machine.
fn normal(i: u64, stream: u64) -> f32 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = mix(i.wrapping_mul(2).wrapping_add(stream << 40));
    let b = mix(a ^ 0xD1B5_4A32_D192_ED03);
    let u1 = ((a >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Softens, adds fresh noise, and grain where the picture is flat.
fn retexture(img: &mut RgbF32, t: Texture) {
    let (w, h) = (img.width, img.height);
    gaussian(&mut img.data, w, h, 3, t.soften);
    let luma: Vec<f32> = img
        .data
        .par_chunks_exact(3)
        .map(|p| 0.2126 * p[0] + 0.7152 * p[1] + 0.0722 * p[2])
        .collect();
    // Grain: white noise blurred to about two pixels, brought back to unit deviation
    // (a σ = 1 blur keeps 1 / (2√π) of it).
    let mut grain = RgbF32::new(
        w,
        h,
        (0..w * h)
            .into_par_iter()
            .flat_map_iter(|i| {
                let n = normal(i as u64, 7);
                [n, n, n]
            })
            .collect(),
    );
    gaussian(&mut grain.data, w, h, 3, 1.0);
    let gain = 2.0 * std::f32::consts::PI.sqrt();
    // Flatness: 1 where the local gradient is below a level or two, 0 on edges and texture.
    let flat: Vec<f32> = (0..w * h)
        .into_par_iter()
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let gx = luma[y * w + (x + 1).min(w - 1)] - luma[y * w + x.saturating_sub(1)];
            let gy = luma[(y + 1).min(h - 1) * w + x] - luma[y.saturating_sub(1) * w + x];
            let g = (gx * gx + gy * gy).sqrt() * 255.0 / 2.0;
            (-(g / 2.0).powi(2)).exp()
        })
        .collect();
    img.data
        .par_chunks_exact_mut(3)
        .enumerate()
        .for_each(|(i, p)| {
            let n = normal(i as u64, 1) * t.noise;
            let chroma = [normal(i as u64, 2), normal(i as u64, 3)];
            let g = grain.data[i * 3] * gain * t.grain * flat[i];
            let add = [
                n + g + 0.3 * t.noise * chroma[0],
                n + g,
                n + g + 0.3 * t.noise * chroma[1],
            ];
            for c in 0..3 {
                p[c] += add[c] / 255.0;
            }
        });
}

/// 8-bit sRGB through `jpeg` and back.
///
/// For 4:2:0 the chroma is averaged over each 2×2 block before encoding, as libjpeg (and so PIL,
/// libjpeg-turbo and mozjpeg, which providers' servers use) downsample it; jpeg-encoder
/// alone would keep each block's top-left pixel, a harsher, aliased 4:2:0 than any
/// provider sends. Handed YCbCr whose chroma is constant per block, its decimation keeps
/// exactly the block's average.
pub fn jpeg_round_trip(w: usize, h: usize, rgb8: Vec<u8>, jpeg: Jpeg) -> Vec<u8> {
    let encoded = match jpeg.chroma {
        Chroma::Half => encode_420(w, h, &rgb8, jpeg.quality),
        Chroma::Full => {
            let mut buf = Vec::new();
            let mut enc = jpeg_encoder::Encoder::new(&mut buf, jpeg.quality);
            enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
            enc.encode(&rgb8, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
                .expect("encoding to memory");
            buf
        }
    };
    image::load_from_memory(&encoded)
        .expect("own JPEG decodes")
        .into_rgb8()
        .into_raw()
}

/// A 4:2:0 JPEG of `rgb8`, its chroma averaged per 2×2 block as libjpeg does.
fn encode_420(w: usize, h: usize, rgb8: &[u8], quality: u8) -> Vec<u8> {
    let ycc: Vec<[f32; 3]> = rgb8
        .par_chunks_exact(3)
        .map(|p| {
            let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
            [
                0.299 * r + 0.587 * g + 0.114 * b,
                -0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0,
                0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0,
            ]
        })
        .collect();
    let mut planes = vec![0u8; w * h * 3];
    planes
        .par_chunks_mut(w * 3)
        .enumerate()
        .for_each(|(y, row)| {
            let ys = [y & !1, ((y & !1) + 1).min(h - 1)];
            for x in 0..w {
                let xs = [x & !1, ((x & !1) + 1).min(w - 1)];
                let mut c = [0f32; 2];
                for &yy in &ys {
                    for &xx in &xs {
                        let p = ycc[yy * w + xx];
                        c[0] += p[1];
                        c[1] += p[2];
                    }
                }
                let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                row[x * 3] = q(ycc[y * w + x][0]);
                row[x * 3 + 1] = q(c[0] / 4.0);
                row[x * 3 + 2] = q(c[1] / 4.0);
            }
        });
    let mut buf = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut buf, quality);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(&planes, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
        .expect("encoding to memory");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_answers_on_its_closest_canvas() {
        // A 3:2 photo's preview, and a 4:3 one.
        assert_eq!(GEMINI.canvas(1024, 683), (1248, 832));
        assert_eq!(GEMINI.canvas(1024, 768), (1184, 864));
        assert_eq!(OPENAI.canvas(1024, 768), (1536, 1024));
        assert_eq!(OPENAI.canvas(768, 1024), (1024, 1536));
        assert_eq!(KONTEXT.canvas(1024, 768), (1184, 880));
        assert_eq!(KONTEXT.canvas(1024, 1024), (1024, 1024));
    }

    #[test]
    fn the_noise_is_standard_and_fixed() {
        let n: Vec<f32> = (0..200_000).map(|i| normal(i, 1)).collect();
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        let var = n.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n.len() as f32;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert_eq!(normal(12345, 1), normal(12345, 1));
        assert_ne!(normal(12345, 1), normal(12345, 2));
    }

    /// One-pixel columns alternating red and green: colour detail finer than 4:2:0 keeps.
    fn red_green_columns(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                if (i % w).is_multiple_of(2) {
                    [200, 40, 40]
                } else {
                    [40, 200, 40]
                }
            })
            .collect()
    }

    /// Providers' encoders (libjpeg and its descendants) average each 2×2 block's chroma;
    /// an encoder that keeps one pixel of four paints fine colour detail with that pixel's
    /// hue. Columns alternating red and green must come back with their mean hue, not red.
    #[test]
    fn the_jpeg_averages_each_blocks_chroma_as_providers_encoders_do() {
        let (w, h) = (64, 48);
        let rgb8 = red_green_columns(w, h);
        let back = jpeg_round_trip(w, h, rgb8, Jpeg::q(95));
        let red_minus_green = back
            .chunks_exact(3)
            .map(|p| p[0] as f64 - p[1] as f64)
            .sum::<f64>()
            / (w * h) as f64;
        // Keeping the red pixel's chroma gives about +120.
        assert!(red_minus_green.abs() < 6.0, "{red_minus_green}");
    }

    /// A 4:4:4 JPEG keeps each pixel's own colour: the same columns come back red and
    /// green, not their mean.
    #[test]
    fn a_full_chroma_jpeg_keeps_fine_colour() {
        let (w, h) = (64, 48);
        let rgb8 = red_green_columns(w, h);
        let full = Jpeg {
            quality: 95,
            chroma: Chroma::Full,
        };
        let back = jpeg_round_trip(w, h, rgb8, full);
        for (i, p) in back.chunks_exact(3).enumerate() {
            let d = p[0] as i32 - p[1] as i32;
            let want = if (i % w) % 2 == 0 { 160 } else { -160 };
            assert!((d - want).abs() < 30, "pixel {i}: {p:?}");
        }
    }

    #[test]
    fn a_placed_picture_keeps_its_content_where_the_geometry_says() {
        // A bright square on grey; moved right by 2 % of the width on the same canvas.
        let (w, h) = (200, 150);
        let mut data = vec![0.3f32; w * h * 3];
        for y in 60..90 {
            for x in 80..120 {
                data[(y * w + x) * 3..][..3].fill(0.9);
            }
        }
        let img = RgbF32::new(w, h, data);
        let g = Geometry {
            sx: 1.0,
            sy: 1.0,
            tx: 0.02,
            ty: 0.0,
            crop: 0.0,
        };
        let out = place(&img, w, h, Some(g));
        let at = |x: usize, y: usize| out.data[(y * w + x) * 3];
        // The square's left edge moved from 80 to 84.
        assert!(
            at(83, 75) < 0.35 && at(85, 75) > 0.85,
            "{} {}",
            at(83, 75),
            at(85, 75)
        );
        // On a wider canvas it is stretched to cover and cropped top and bottom.
        let wide = place(&img, 240, 150, None);
        assert_eq!((wide.width, wide.height), (240, 150));
        let centre = wide.data[(75 * 240 + 120) * 3];
        assert!((centre - 0.9).abs() < 1e-3);
    }
}
