//! `luminary presets --sheet OUT.jpg PHOTO`: every preset on one photo, labelled, in a
//! grid — so photographers can look instead of read.
//!
//! Runs in the CLI process with its own plugin runners. Thumbnails go through exactly the
//! offline engine a job uses (the recipe is resolution-independent), at each preset's
//! default intensity.

use std::path::Path;

use anyhow::Context;
use rayon::prelude::*;
use serde_json::Map;

use crate::config::{Config, Format};
use crate::engine::local::Plan;
use crate::error::Cancel;
use crate::image::RgbF32;
use crate::ingest;
use crate::metadata;
use crate::paths::Paths;
use crate::pipeline::{encode, preview, render};
use crate::plugins::{resolve_params, search_path, Registry};

/// Long edge of each thumbnail, pixels.
const THUMB: usize = 480;
/// Label strip height: 8 px glyphs scaled ×2, with margins.
const LABEL_H: usize = 28;
const GAP: usize = 8;

/// Draws `text` in white with the 8×8 public-domain font at `scale`.
fn draw_text(img: &mut RgbF32, x0: usize, y0: usize, text: &str, scale: usize) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if row & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = x0 + (i * 8 + gx) * scale + sx;
                        let y = y0 + gy * scale + sy;
                        if x < img.width && y < img.height {
                            img.data[(y * img.width + x) * 3..][..3].fill(0.9);
                        }
                    }
                }
            }
        }
    }
}

fn blit(dst: &mut RgbF32, src: &RgbF32, x0: usize, y0: usize) {
    for y in 0..src.height {
        let d = ((y0 + y) * dst.width + x0) * 3;
        dst.data[d..d + src.width * 3]
            .copy_from_slice(&src.data[y * src.width * 3..(y + 1) * src.width * 3]);
    }
}

/// Renders the sheet and returns the file written.
pub fn run(paths: &Paths, out: &Path, photo: &Path) -> anyhow::Result<std::path::PathBuf> {
    let config = Config::load(&paths.config_file)?;
    let registry = Registry::discover(
        &search_path(&paths.data_dir, &config.daemon.plugin_dirs),
        &crate::plugins::runner::RunnerLimits::from_config(&config.plugins),
    );
    let photo = std::path::absolute(photo)?;
    let ingested = ingest::ingest(&photo, &config.limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut base = ingested.image;
    render::render_base(&mut base, ingested.rendering);
    let thumb = preview::downscale(&base, THUMB);
    drop(base);
    let facts = preview::facts(&thumb, thumb.width, thumb.height, ingested.is_raw);
    let cancel = Cancel::default();

    let mut tiles: Vec<(String, RgbF32)> = vec![("Original".into(), thumb.clone())];
    // A preset only an AI engine can do has nothing to show offline.
    let mut presets: Vec<_> = registry
        .presets()
        .filter(|p| !p.descriptor.ai_only)
        .collect();
    presets.sort_by(|a, b| (&a.plugin, &a.descriptor.id).cmp(&(&b.plugin, &b.descriptor.id)));
    for p in presets {
        let d = &p.descriptor;
        let label = d.name.clone();
        let (_, plugin) = registry.preset(&d.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let params = resolve_params(d, &Map::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let tile = (|| -> Result<RgbF32, crate::error::JobError> {
            let req = plugin.build_request(&d.id, &params, &facts)?;
            let mut img = thumb.clone();
            let intensity = d.default_intensity as f32;
            // A pixel function runs as in a job; if the plugin had nothing to do, the recipe.
            let edited = d.pixel_function
                && crate::pipeline::steps::pixel_function(
                    plugin, &d.id, &params, &facts, &req, &thumb, &mut img, intensity, &cancel,
                )?
                .is_some();
            if !edited {
                Plan::resolve(&req.recipe, &thumb).apply_blended(&mut img, intensity, &cancel)?;
            }
            Ok(img)
        })();
        match tile {
            Ok(img) => tiles.push((label, img)),
            Err(e) => eprintln!("{}: skipped ({})", d.id, e.message),
        }
    }

    let cols = (tiles.len() as f64).sqrt().ceil() as usize;
    let rows = tiles.len().div_ceil(cols);
    let (tw, th) = (thumb.width, thumb.height);
    let (cw, ch) = (tw + GAP, th + LABEL_H + GAP);
    let mut sheet = RgbF32::new(
        GAP + cols * cw,
        GAP + rows * ch,
        vec![0.012; (GAP + cols * cw) * (GAP + rows * ch) * 3],
    );
    for (i, (label, img)) in tiles.iter().enumerate() {
        let (x, y) = (GAP + (i % cols) * cw, GAP + (i / cols) * ch);
        blit(&mut sheet, img, x, y);
        let max_chars = tw / 16;
        let text: String = label.chars().take(max_chars).collect();
        draw_text(&mut sheet, x + 4, y + th + 6, &text, 2);
    }
    sheet
        .data
        .par_chunks_mut(3)
        .for_each(crate::display::compress_to_display);

    let format = match out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Format::Png,
        Some("tif" | "tiff") => Format::Tiff,
        _ => Format::Jpeg,
    };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => ".".into(),
    };
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the sheet needs a file name")?;
    let opts = encode::EncodeOptions {
        format,
        space: config.output.color_space,
        jpeg_quality: 92,
    };
    let provenance = metadata::Provenance {
        preset: "contact-sheet".into(),
        plugin: String::new(),
        intensity: 1.0,
        engine: "local".into(),
        model: String::new(),
        source_name: photo
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        look: None,
        prompt: None,
    };
    let meta = encode::OutputMeta {
        exif: vec![],
        xmp: metadata::xmp_packet(&provenance),
    };
    encode::write_output(
        &sheet,
        &opts,
        &meta,
        &dir,
        &crate::pipeline::names::keep_stem(stem),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}
