//! One job, stage by stage (DESIGN.md "One job"): request → ingest → render → preview →
//! preset → engine → transfer → blend → encode → result.
//!
//! Everything a request can get wrong (preset, parameters, intensity, engine, output
//! folder) is checked before the first pixel is decoded, so a typo costs nothing.

pub mod blend;
pub mod cutout;
pub mod encode;
pub mod estimate;
pub mod jpeg;
pub mod live;
pub mod looks;
pub mod names;
mod png_bands;
pub mod preview;
pub mod prompt;
pub mod publish;
pub mod render;
mod tiff_strips;
pub mod upscale;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::color::OutputSpace;
use crate::config::{Config, Format};
use crate::engine::remote::{EditJob, Engines};
use crate::engine::{engine_for, Edited, JobInfo, OffCpu};
use crate::error::{check, Cancel, ErrorCode, JobError};
use crate::ingest;
use crate::metadata;
use crate::plugins::{resolve_params, Registry};
use crate::transfer::{Mode, Transfer};

/// What a client asks for (the `enhance` request's body).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct EnhanceRequest {
    /// The photo: a path on this machine.
    pub source: PathBuf,
    /// Preset id (may be left out with `look`: the look's own preset).
    #[serde(default)]
    pub preset: String,
    /// A learned look (`.look` file) to apply instead of running the preset's engine: no
    /// engine is called at all.
    #[serde(default)]
    pub look: Option<PathBuf>,
    /// 0..1; the preset's default when absent.
    #[serde(default)]
    pub intensity: Option<f64>,
    /// Preset parameters (validated against its schema).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Engine name; the preset's hint or the configured default when absent.
    #[serde(default)]
    pub engine: Option<String>,
    /// Output options.
    #[serde(default)]
    pub output: OutputRequest,
}

/// Where and how to write the result.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    /// File format; from `path`'s extension or the config when absent.
    #[serde(default)]
    pub format: Option<Format>,
    /// Colour space; the config's when absent.
    #[serde(default)]
    pub color_space: Option<OutputSpace>,
    /// Exact output file (a free `-N` variant is used if it exists).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Output folder (default: the source's folder).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// What a finished job reports (the `done` event's body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnhanceResult {
    /// The source path.
    pub input: PathBuf,
    /// The file written.
    pub output: PathBuf,
    /// Preset id.
    pub preset: String,
    /// Plugin id that provided the preset.
    pub plugin: String,
    /// Intensity used.
    pub intensity: f64,
    /// Engine used.
    pub engine: String,
    /// Engine model.
    pub model: String,
    /// Whether the engine's answer came from the cache.
    pub cached: bool,
    /// Estimated cost of the engine call in US dollars (0 offline or cached).
    pub cost: f64,
    /// Output width and height.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Milliseconds per stage, and `total`.
    pub timings_ms: BTreeMap<String, u64>,
    /// What the user should know about how the result was made (e.g. an engine's picture
    /// that could not be lined up with the photo with confidence); absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Stage names and their share of the whole job, for progress fractions.
const STAGES: [(&str, f32); 8] = [
    ("ingest", 0.35),
    ("render", 0.04),
    ("preview", 0.03),
    ("preset", 0.01),
    ("engine", 0.30),
    ("transfer", 0.04),
    ("blend", 0.0),
    ("encode", 0.23),
];

/// Reports progress as `(stage, overall fraction 0..1)`.
pub type Progress<'a> = &'a (dyn Fn(&str, f32) + Sync);

struct Timer<'a> {
    timings: BTreeMap<String, u64>,
    progress: Progress<'a>,
    started: Instant,
    stage_start: Instant,
    done_share: f32,
}

impl<'a> Timer<'a> {
    fn new(progress: Progress<'a>) -> Self {
        let now = Instant::now();
        Timer {
            timings: BTreeMap::new(),
            progress,
            started: now,
            stage_start: now,
            done_share: 0.0,
        }
    }

    fn start(&mut self, stage: &str) {
        self.stage_start = Instant::now();
        (self.progress)(stage, self.done_share.min(1.0));
    }

    fn finish(&mut self, stage: &str) {
        self.timings
            .insert(stage.into(), self.stage_start.elapsed().as_millis() as u64);
        self.done_share += STAGES
            .iter()
            .find(|(s, _)| *s == stage)
            .map_or(0.0, |(_, w)| *w);
    }
}

fn output_location(
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
        JobError::new(
            ErrorCode::Internal,
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
fn choose_engine(
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
fn transfer_mode(descriptor: &luminary_plugin_api::PresetDescriptor) -> Mode {
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
fn source_name(source: &Path) -> String {
    source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stage 9 for every kind of job: the output file with the source's EXIF and the
/// provenance in XMP, published under `dir/stem.<ext>` (or a free `-N` variant).
#[allow(clippy::too_many_arguments)]
fn write_result(
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

/// Runs one enhance job to the end. Never writes to the source; on any error, including
/// cancellation, nothing is left in the output folder. An AI engine's wait runs through
/// `off_cpu` (the daemon lends the job's CPU slot for it).
pub fn run_job(
    req: &EnhanceRequest,
    config: &Config,
    registry: &Registry,
    engines: &Engines,
    progress: Progress<'_>,
    off_cpu: OffCpu<'_>,
    cancel: &Cancel,
) -> Result<EnhanceResult, JobError> {
    // Everything cheap first.
    if req.source.as_os_str().is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "no source photo given",
        ));
    }
    if let Some(look) = &req.look {
        return looks::run_look_job(req, look, config, progress, cancel);
    }
    let (descriptor, plugin) = find_preset(registry, &req.preset)?;
    let ad_hoc = plugin.is_none();
    let plugin_id = plugin.map(|p| p.info.id.clone()).unwrap_or_default();
    let intensity =
        blend::validate_intensity(req.intensity.unwrap_or(descriptor.default_intensity))?;
    let params = resolve_params(descriptor, &req.params)?;
    // The ad-hoc request needs no photo: its engine and length are checked before a decode.
    if ad_hoc {
        let facts = luminary_plugin_api::ImageFacts::default();
        engine_request(
            descriptor,
            None,
            &params,
            &facts,
            req.engine.as_deref(),
            engines,
            config,
        )?;
    }
    // An engine named by the request is checked (and its key looked for) now, and so is
    // the one an AI-only preset would run on; otherwise the preset's hint decides once the
    // request is built, if that engine is set up.
    if req.engine.is_some() || descriptor.ai_only {
        let hinted = luminary_plugin_api::EngineRequest::new("", Default::default());
        let name = choose_engine(req.engine.as_deref(), &hinted, descriptor, engines, config);
        engine_for(&name, descriptor, engines)?;
    }
    let (dir, stem, format) = output_location(req, &descriptor.id, config)?;
    check_output_dir(&dir)?;
    let is_cutout = descriptor.kind == luminary_plugin_api::PresetKind::Cutout;
    if is_cutout && format == Format::Jpeg {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            encode::NO_ALPHA_IN_JPEG,
        ));
    }
    let is_upscale = descriptor.kind == luminary_plugin_api::PresetKind::Upscale;
    if is_upscale && format == Format::Jpeg {
        return Err(JobError::new(ErrorCode::BadRequest, upscale::NO_JPEG));
    }
    let space = req.output.color_space.unwrap_or(config.output.color_space);

    let mut t = Timer::new(progress);
    t.start("ingest");
    let ingested = ingest::ingest_cancellable(&req.source, &config.limits, cancel)?;
    t.finish("ingest");
    check(cancel)?;

    // The preview is averaged from each row as it is rendered (one pass over the picture),
    // so its time is render's; "preview" is the facts measured on it.
    t.start("render");
    let mut base = ingested.image;
    let preview = render::render_base_and_downscale(
        &mut base,
        ingested.rendering,
        config.engine.preview_size as usize,
    );
    t.finish("render");
    check(cancel)?;

    t.start("preview");
    let mut facts = preview::facts(&preview, base.width, base.height, ingested.is_raw);
    facts.make = ingested.meta.text(exif::Tag::Make);
    facts.model = ingested.meta.text(exif::Tag::Model);
    t.finish("preview");

    t.start("preset");
    let (engine_req, engine_name) = engine_request(
        descriptor,
        plugin,
        &params,
        &facts,
        req.engine.as_deref(),
        engines,
        config,
    )?;
    let engine = engine_for(&engine_name, descriptor, engines)?;
    t.finish("preset");
    check(cancel)?;

    if is_upscale {
        drop(preview);
        t.start("engine");
        let f = upscale::factor(&params)?;
        let provider = engines.provider(engine.name())?;
        let model = engine.model();
        let edit_params = cutout::engine_params(descriptor, &params);
        let call = upscale::TileCall {
            provider: &*provider,
            model: &model,
            engines,
            job: EditJob {
                preset: &descriptor.id,
                preset_version: descriptor.version,
                params: &edit_params,
                prompt: &engine_req.prompt,
                negative_prompt: &engine_req.negative_prompt,
                task: luminary_engines::Task::Upscale(f),
                photo: None,
            },
        };
        let provenance = metadata::Provenance {
            preset: descriptor.id.clone(),
            plugin: plugin_id.clone(),
            intensity: 1.0,
            engine: engine.name().to_string(),
            model: model.clone(),
            source_name: source_name(&req.source),
            look: None,
            prompt: None,
        };
        let (ow, oh) = (base.width * f as usize, base.height * f as usize);
        let meta = encode::OutputMeta {
            exif: metadata::output_fields(&ingested.meta, ow as u32, oh as u32),
            xmp: metadata::xmp_packet(&provenance),
        };
        let done = upscale::run(
            &base,
            f,
            &call,
            (format, space),
            &meta,
            &dir,
            &stem,
            progress,
            cancel,
        )?;
        t.finish("engine");
        progress("done", 1.0);
        tracing::info!(
            "upscaled {}×: {} tiles, {} from the cache, ${:.3}",
            f,
            done.tiles.0,
            done.tiles.1,
            done.cost
        );
        let mut timings = t.timings;
        timings.insert("total".into(), t.started.elapsed().as_millis() as u64);
        return Ok(EnhanceResult {
            input: req.source.clone(),
            output: done.path,
            preset: descriptor.id.clone(),
            plugin: plugin_id,
            intensity: 1.0,
            engine: engine.name().to_string(),
            model,
            cached: done.tiles.1 == done.tiles.0,
            cost: done.cost,
            width: done.width as u32,
            height: done.height as u32,
            timings_ms: timings,
            notes: Vec::new(),
        });
    }

    t.start("engine");
    let mut pixel_output = None;
    if let Some(plugin) = plugin.filter(|_| engine.name() == "local" && descriptor.pixel_function) {
        pixel_output = pixel_function(
            plugin,
            &descriptor.id,
            &params,
            &facts,
            &engine_req,
            &preview,
            &mut base,
            intensity as f32,
            cancel,
        )?;
    }
    let engine_share = STAGES.iter().take(4).map(|(_, w)| w).sum::<f32>();
    let status = |msg: &str| progress(&format!("engine · {msg}"), engine_share);
    let info = JobInfo {
        edit: EditJob {
            preset: &descriptor.id,
            preset_version: descriptor.version,
            params: &cutout::engine_params(descriptor, &params),
            prompt: &engine_req.prompt,
            negative_prompt: &engine_req.negative_prompt,
            task: cutout::task_of(descriptor),
            photo: live::SourceId::of(&req.source)
                .ok()
                .map(|id| id.ident(config.engine.preview_size)),
        },
        status: &status,
        off_cpu,
    };
    let edited = match pixel_output {
        Some(()) => Edited::Blended(base),
        None => engine.run(&engine_req, &info, base, &preview, intensity as f32, cancel)?,
    };
    t.finish("engine");
    check(cancel)?;

    // The offline engine answers at full resolution and has blended already; an AI
    // engine's preview-sized answer is carried to full resolution here, blended in the
    // same pass (so `blend` reads 0 ms: there is no separate pass).
    t.start("transfer");
    let mut alpha = None;
    let mut notes = Vec::new();
    let (out, cached, cost) = match edited {
        Edited::Blended(out) => (out, false, 0.0),
        // A cut-out: the photo untouched, the matte refined on it as its alpha.
        Edited::Answer { base, answer, .. } if is_cutout => {
            let refine = params.get("refine_edges").and_then(Value::as_bool) != Some(false);
            alpha = Some(cutout::alpha(
                &base,
                &answer,
                engine.name(),
                refine,
                intensity as f32,
            )?);
            (base, answer.cached, answer.cost)
        }
        Edited::Answer {
            mut base,
            seen,
            answer,
        } => {
            let mode = transfer_mode(descriptor);
            let transfer = Transfer::fit_answer(&seen, &answer.image, mode, answer.lossy);
            tracing::debug!("transfer fit: {:?}", transfer.report);
            if let Some(note) = &transfer.report.note {
                tracing::warn!("{}: {note}", req.source.display());
                notes.push(note.clone());
            }
            t.timings.insert(
                "register".into(),
                transfer.report.register_ms.round() as u64,
            );
            transfer.apply_blend(&mut base, intensity as f32, cancel)?;
            (base, answer.cached, answer.cost)
        }
    };
    t.finish("transfer");
    t.start("blend");
    t.finish("blend");

    t.start("encode");
    let (w, h) = (out.width as u32, out.height as u32);
    let provenance = metadata::Provenance {
        preset: descriptor.id.clone(),
        plugin: plugin_id.clone(),
        intensity: intensity as f32,
        engine: engine.name().to_string(),
        model: engine.model(),
        source_name: source_name(&req.source),
        look: None,
        prompt: ad_hoc.then(|| prompt::text_of(&params).unwrap_or_default()),
    };
    let output = write_result(
        &out,
        alpha.as_deref(),
        &ingested.meta,
        &provenance,
        (format, space),
        config,
        &dir,
        &stem,
    )?;
    t.finish("encode");
    progress("done", 1.0);
    // The next photo of a batch (mostly the same size) develops into it.
    crate::memory::reuse_later(out.data);

    let mut timings = t.timings;
    timings.insert("total".into(), t.started.elapsed().as_millis() as u64);
    Ok(EnhanceResult {
        input: req.source.clone(),
        output,
        preset: descriptor.id.clone(),
        plugin: plugin_id,
        intensity,
        engine: engine.name().to_string(),
        model: engine.model(),
        cached,
        cost,
        width: w,
        height: h,
        timings_ms: timings,
        notes,
    })
}
