//! The steps every kind of job shares (`run_job`, live previews, looks, estimates): where
//! the output goes, which preset and engine, the engine request, a preset's pixel
//! function, the result file. Below the jobs, which only sequence them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};

use super::request::EnhanceRequest;
use super::{blend, encode, names, prompt};
use crate::color::OutputSpace;
use crate::config::{Config, Format};
use crate::engine::remote::Engines;
use crate::error::{Cancel, ErrorCode, JobError};
use crate::metadata;
use crate::plugins::Registry;
use crate::transfer::Mode;

pub(crate) fn output_location(
    req: &EnhanceRequest,
    preset: &str,
    config: &Config,
) -> Result<(PathBuf, String, Format), JobError> {
    let bad = |m: String| JobError::new(ErrorCode::BadRequest, m);
    let ext_format = |p: &Path| -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "tif" | "tiff" => Some(Format::Tiff),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            "png" => Some(Format::Png),
            _ => None,
        }
    };
    if let Some(path) = &req.output.path {
        let format = match (req.output.format, ext_format(path)) {
            (Some(f), Some(e)) if f != e => {
                return Err(bad(format!(
                    "{}: the extension does not match --format {}",
                    path.display(),
                    f.extension()
                )))
            }
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => config.output.format,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Honoured as given; only what the file system cannot hold is replaced.
        let stem = path
            .file_stem()
            .map(|s| names::keep_stem(&s.to_string_lossy()))
            .ok_or_else(|| bad(format!("{}: not a file name", path.display())))?;
        return Ok((dir, stem, format));
    }
    let dir = match &req.output.dir {
        Some(d) => d.clone(),
        None => req
            .source
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| ".".into()),
    };
    let stem = req
        .source
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or("photo".into());
    let stem = format!(
        "{}-luminary-{}",
        names::keep_stem(&stem),
        names::component(preset)
    );
    Ok((dir, stem, req.output.format.unwrap_or(config.output.format)))
}

/// The offline engine for a preset with its own pixel function: the recipe runs from the
/// base into shared memory (the plugin's kept buffer, see `plugins::runner`), the plugin's
/// runner edits that memory, and the result is blended back into `base`. `Ok(None)` when
/// the plugin says it had nothing to do after all (the caller then runs the recipe alone).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pixel_function(
    plugin: &crate::plugins::runner::PluginHandle,
    preset: &str,
    params: &Map<String, Value>,
    facts: &luminary_plugin_api::ImageFacts,
    request: &luminary_plugin_api::EngineRequest,
    preview: &crate::image::RgbF32,
    base: &mut crate::image::RgbF32,
    intensity: f32,
    cancel: &Cancel,
) -> Result<Option<()>, JobError> {
    let mut shm = plugin.pixel_buffer(base.data.len()).map_err(|e| {
        // No file system with room for the picture: the photo is too large here.
        let code = match e.kind() {
            std::io::ErrorKind::StorageFull => ErrorCode::TooLarge,
            _ => ErrorCode::Internal,
        };
        JobError::new(
            code,
            format!("cannot allocate shared memory for the plugin: {e}"),
        )
    })?;
    let plan = crate::engine::local::Plan::resolve(&request.recipe, preview);
    let (w, h) = (base.width, base.height);
    let t = Instant::now();
    let recipe = plan.apply_into(w, h, &base.data, shm.as_mut_slice(), 1.0, cancel);
    let recipe_ms = t.elapsed();
    let edited =
        recipe.and_then(|()| plugin.process_pixels(preset, params, facts, &shm, w, h, cancel));
    let plugin_ms = t.elapsed() - recipe_ms;
    let edited = match edited {
        Ok(true) => {
            blend::blend_plugin_edit(&mut base.data, shm.as_slice(), intensity);
            tracing::debug!(
                "pixel function: recipe {recipe_ms:?}, plugin {plugin_ms:?}, blend {:?}",
                t.elapsed() - recipe_ms - plugin_ms
            );
            Ok(Some(()))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    };
    plugin.keep_pixel_buffer(shm);
    edited
}

/// The engine a job runs on: the request's; else the preset's (from its built request, or
/// declared in its descriptor) when that engine is set up; else the configured default.
pub(crate) fn choose_engine(
    asked: Option<&str>,
    built: &luminary_plugin_api::EngineRequest,
    descriptor: &luminary_plugin_api::PresetDescriptor,
    engines: &Engines,
    config: &Config,
) -> String {
    let hint = built
        .engine_hint
        .as_ref()
        .or(descriptor.engine_hint.as_ref());
    match (asked, hint) {
        (Some(n), _) => n.to_string(),
        (None, Some(hint)) if engines.is_set_up(hint) => hint.clone(),
        _ => config.engine.default.clone(),
    }
}

/// How an AI engine's answer is carried over: a look preset's as a colour transform, a
/// content preset's with the engine's new content.
pub(crate) fn transfer_mode(descriptor: &luminary_plugin_api::PresetDescriptor) -> Mode {
    match descriptor.kind {
        // A cut-out's answer is a matte (`cutout`), never transferred; as a picture it
        // would be content.
        luminary_plugin_api::PresetKind::Content
        | luminary_plugin_api::PresetKind::Cutout
        | luminary_plugin_api::PresetKind::Upscale => Mode::Content,
        luminary_plugin_api::PresetKind::Look => Mode::Look,
    }
}

/// Milliseconds per step of a job whose steps are not the enhance stages (previews,
/// looks): each `lap` closes the step begun at the previous one.
pub(crate) struct Laps {
    last: Instant,
    /// Milliseconds per step.
    pub timings: BTreeMap<String, u64>,
}

impl Laps {
    pub(crate) fn start() -> Laps {
        Laps {
            last: Instant::now(),
            timings: BTreeMap::new(),
        }
    }

    pub(crate) fn lap(&mut self, name: &str) {
        self.timings
            .insert(name.to_string(), self.last.elapsed().as_millis() as u64);
        self.last = Instant::now();
    }
}

/// Refuses an output folder that does not exist (checked before anything is decoded).
pub(crate) fn check_output_dir(dir: &Path) -> Result<(), JobError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(JobError::file(
            ErrorCode::OutputFailed,
            dir,
            "the output folder does not exist",
        ))
    }
}

/// A preset's descriptor and the plugin that provides it; for a free-text edit
/// (`prompt`), the built-in ad-hoc preset and no plugin, unless a plugin took the id.
pub(crate) fn find_preset<'a>(
    registry: &'a Registry,
    id: &str,
) -> Result<
    (
        &'a luminary_plugin_api::PresetDescriptor,
        Option<&'a std::sync::Arc<crate::plugins::runner::PluginHandle>>,
    ),
    JobError,
> {
    match registry.preset(id) {
        Ok((p, plugin)) => Ok((&p.descriptor, Some(plugin))),
        Err(_) if id == prompt::ID => Ok((prompt::descriptor(), None)),
        Err(e) => Err(e),
    }
}

/// The engine request of a preset for a photo (`facts`), and the engine it runs on: the
/// plugin builds it, or for the ad-hoc free-text preset (no plugin), `prompt` does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn engine_request(
    descriptor: &luminary_plugin_api::PresetDescriptor,
    plugin: Option<&std::sync::Arc<crate::plugins::runner::PluginHandle>>,
    params: &Map<String, Value>,
    facts: &luminary_plugin_api::ImageFacts,
    asked: Option<&str>,
    engines: &Engines,
    config: &Config,
) -> Result<(luminary_plugin_api::EngineRequest, String), JobError> {
    match plugin {
        Some(plugin) => {
            let built = plugin.build_request(&descriptor.id, params, facts)?;
            let name = choose_engine(asked, &built, descriptor, engines, config);
            Ok((built, name))
        }
        None => {
            let text = prompt::text_of(params)?;
            let hinted = luminary_plugin_api::EngineRequest::new("", Default::default());
            let name = choose_engine(asked, &hinted, descriptor, engines, config);
            Ok((prompt::request(&text, &name)?, name))
        }
    }
}

/// The source's file name, for provenance (not its folder: outputs travel).
pub(crate) fn source_name(source: &Path) -> String {
    source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stage 9 for every kind of job: the output file with the source's EXIF and the
/// provenance in XMP, published under `dir/stem.<ext>` (or a free `-N` variant).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_result(
    out: &crate::image::RgbF32,
    alpha: Option<&[f32]>,
    source_meta: &metadata::SourceMeta,
    provenance: &metadata::Provenance,
    (format, space): (Format, OutputSpace),
    config: &Config,
    dir: &Path,
    stem: &str,
) -> Result<PathBuf, JobError> {
    let meta = encode::OutputMeta {
        exif: metadata::output_fields(source_meta, out.width as u32, out.height as u32),
        xmp: metadata::xmp_packet(provenance),
    };
    let opts = encode::EncodeOptions {
        format,
        space,
        jpeg_quality: config.output.jpeg_quality,
    };
    encode::write_output_with_alpha(out, alpha, &opts, &meta, dir, stem)
}
