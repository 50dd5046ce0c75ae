//! A shoot's look as jobs: learning it from reference photos (one engine call each,
//! through the edit cache and the ledger like any enhance), and applying it to any number
//! of photos with no engine at all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::request::{EnhanceRequest, EnhanceResult, Progress};
use super::steps::{
    check_output_dir, choose_engine, output_location, source_name, write_result, Laps,
};
use super::{blend, live, preview, render};
use crate::config::Config;
use crate::engine::remote::{EditJob, Engines};
use crate::engine::{engine_for, Edited, JobInfo};
use crate::error::{check, Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::ingest;
use crate::look::{self, Look, LookInfo, Reference};
use crate::metadata;
use crate::plugins::{resolve_params, Registry};

/// Applies the look file `look_path` to `req.source`: ingest, render, the look blended at
/// the intensity asked (the look preset's default when absent), encode. No engine, no
/// plugin, no network.
pub fn run_look_job(
    req: &EnhanceRequest,
    look_path: &Path,
    config: &Config,
    progress: Progress<'_>,
    cancel: &Cancel,
) -> Result<EnhanceResult, JobError> {
    if let Some(engine) = &req.engine {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "--look applies a learned look with no engine; leave out --engine (got '{engine}')"
            ),
        ));
    }
    if !req.params.is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "a look's parameters were fixed when it was learned; leave out --param",
        ));
    }
    let started = Instant::now();
    let look = look::file::read(look_path)?;
    if !req.preset.is_empty() && req.preset != look.info.preset {
        return Err(JobError::file(
            ErrorCode::BadRequest,
            look_path,
            format!(
                "this look was learned with preset '{}', not '{}'; leave out --preset",
                look.info.preset, req.preset
            ),
        ));
    }
    let intensity = blend::validate_intensity(req.intensity.unwrap_or(1.0))?;
    let look_name = look_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "look".into());
    let (dir, stem, format) = output_location(req, &look_name, config)?;
    check_output_dir(&dir)?;
    let space = req.output.color_space.unwrap_or(config.output.color_space);
    let mut laps = Laps::start();
    laps.lap("look");

    progress("ingest", 0.0);
    let ingested = ingest::ingest_cancellable(&req.source, &config.limits, cancel)?;
    laps.lap("ingest");
    check(cancel)?;
    progress("render", 0.4);
    let mut base = ingested.image;
    render::render_base(&mut base, ingested.rendering);
    laps.lap("render");
    progress("look", 0.45);
    look.apply_blend(&mut base, intensity as f32, cancel)?;
    laps.lap("apply");
    progress("encode", 0.6);
    let provenance = metadata::Provenance {
        preset: look.info.preset.clone(),
        plugin: String::new(),
        intensity: intensity as f32,
        engine: "look".into(),
        model: look.info.model.clone(),
        source_name: source_name(&req.source),
        look: Some(describe(&look, look_path)),
        prompt: None,
    };
    let output = write_result(
        &base,
        None,
        &ingested.meta,
        &provenance,
        (format, space),
        config,
        &dir,
        &stem,
    )?;
    laps.lap("encode");
    let mut timings = laps.timings;
    timings.insert("total".into(), started.elapsed().as_millis() as u64);
    progress("done", 1.0);
    Ok(EnhanceResult {
        input: req.source.clone(),
        output,
        preset: look.info.preset.clone(),
        plugin: String::new(),
        intensity,
        engine: "look".into(),
        model: look.info.model.clone(),
        cached: false,
        cost: 0.0,
        width: base.width as u32,
        height: base.height as u32,
        timings_ms: timings,
        notes: Vec::new(),
    })
}

/// "shoot.look: warm-film on gemini (gemini-2.5-flash-image) from IMG_1.dng, IMG_7.dng".
fn describe(look: &Look, path: &Path) -> String {
    let refs: Vec<&str> = look
        .info
        .references
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    format!(
        "{}: {} on {} ({}) from {}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        look.info.preset,
        look.info.engine,
        look.info.model,
        refs.join(", ")
    )
}

/// The `learn_look` request: learn a look from reference photos.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct LearnRequest {
    /// The reference photos (one engine call each, unless cached).
    pub sources: Vec<PathBuf>,
    /// Preset id: a look preset.
    pub preset: String,
    /// Preset parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Engine; the preset's hint or the configured default when absent.
    #[serde(default)]
    pub engine: Option<String>,
    /// The `.look` file to write (a free `-N` variant if it exists).
    pub out: PathBuf,
}

/// What learning reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LearnResult {
    /// The file written.
    pub output: PathBuf,
    /// Preset id.
    pub preset: String,
    /// Engine.
    pub engine: String,
    /// Model.
    pub model: String,
    /// The reference photos.
    pub references: Vec<PathBuf>,
    /// Engine calls made (not answered from the cache).
    pub engine_calls: usize,
    /// Answers that came from the cache.
    pub cached: usize,
    /// What the calls cost, US dollars.
    pub cost: f64,
    /// Share of the LUT the references covered.
    pub coverage: f32,
    /// Milliseconds: `engine` (all references), `learn` (registration and fit), `total`.
    pub timings_ms: std::collections::BTreeMap<String, u64>,
}

/// Learns a look: each reference through ingest, render, preview and the engine (exactly
/// as `enhance` would, so its answer is the cache's and the ledger's like any other),
/// then one fit over all of them, then the file.
pub fn run_learn(
    req: &LearnRequest,
    config: &Config,
    registry: &Registry,
    engines: &Engines,
    progress: Progress<'_>,
    off_cpu: crate::engine::OffCpu<'_>,
    cancel: &Cancel,
) -> Result<LearnResult, JobError> {
    let started = Instant::now();
    if req.sources.is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "a look needs at least one reference photo",
        ));
    }
    let (preset, plugin) = registry.preset(&req.preset)?;
    if preset.descriptor.kind != luminary_plugin_api::PresetKind::Look {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "'{}' is a {} preset (it {}); a look carries colour and tone only — learn it \
                 from a look preset",
                preset.descriptor.id,
                if preset.descriptor.kind == luminary_plugin_api::PresetKind::Cutout {
                    "cut-out"
                } else {
                    "content"
                },
                if preset.descriptor.kind == luminary_plugin_api::PresetKind::Cutout {
                    "removes the background"
                } else {
                    "adds or changes objects"
                }
            ),
        ));
    }
    let params = resolve_params(&preset.descriptor, &req.params)?;
    if let Some(name) = &req.engine {
        engine_for(name, &preset.descriptor, engines)?;
    }
    let out_dir = match req.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_output_dir(&out_dir)?;
    let n = req.sources.len() as f32;
    let mut pairs: Vec<(RgbF32, RgbF32)> = Vec::new();
    let mut references = Vec::new();
    let (mut calls, mut cached, mut cost) = (0usize, 0usize, 0f64);
    let mut used: Option<(String, String)> = None;
    let t_engine = Instant::now();
    for (k, source) in req.sources.iter().enumerate() {
        let at = |f: f32| (k as f32 + f) / n * 0.9;
        let name = source_name(source);
        progress(&format!("{name} · ingest"), at(0.0));
        let ingested = ingest::ingest_cancellable(source, &config.limits, cancel)?;
        check(cancel)?;
        let mut base = ingested.image;
        let shown = render::render_base_and_downscale(
            &mut base,
            ingested.rendering,
            config.engine.preview_size as usize,
        );
        let mut facts = preview::facts(&shown, base.width, base.height, ingested.is_raw);
        facts.make = ingested.meta.text(exif::Tag::Make);
        facts.model = ingested.meta.text(exif::Tag::Model);
        drop(base);
        let engine_req = plugin.build_request(&preset.descriptor.id, &params, &facts)?;
        let engine_name = choose_engine(
            req.engine.as_deref(),
            &engine_req,
            &preset.descriptor,
            engines,
            config,
        );
        let engine = engine_for(&engine_name, &preset.descriptor, engines)?;
        if engine.name() == "local" && preset.descriptor.pixel_function {
            return Err(JobError::new(
                ErrorCode::BadRequest,
                format!(
                    "'{}' runs its own pixel code on the offline engine, which a look cannot \
                     hold; learn it with an AI engine, or choose another preset",
                    preset.descriptor.id
                ),
            ));
        }
        progress(&format!("{name} · engine"), at(0.3));
        let status = |msg: &str| progress(&format!("{name} · engine · {msg}"), at(0.3));
        let info = JobInfo {
            edit: EditJob {
                preset: &preset.descriptor.id,
                preset_version: preset.descriptor.version,
                params: &params,
                prompt: &engine_req.prompt,
                negative_prompt: &engine_req.negative_prompt,
                task: Default::default(),
                photo: live::SourceId::of(source)
                    .ok()
                    .map(|id| id.ident(config.engine.preview_size)),
            },
            status: &status,
            off_cpu,
        };
        let (seen, answer, key) =
            match engine.run(&engine_req, &info, shown.clone(), &shown, 1.0, cancel)? {
                Edited::Blended(edited) => (shown, edited, None),
                Edited::Answer { seen, answer, .. } => {
                    if answer.cached {
                        cached += 1;
                    } else {
                        calls += 1;
                    }
                    cost += answer.cost;
                    (seen, answer.image, Some(answer.key))
                }
            };
        check(cancel)?;
        pairs.push((seen, answer));
        let sha256 = look::file::file_sha256(source)
            .map_err(|e| JobError::file(ErrorCode::NotFound, source, e))?;
        references.push(Reference {
            name,
            sha256,
            cache_key: key,
        });
        used = Some((engine.name().to_string(), engine.model()));
    }
    let engine_ms = t_engine.elapsed().as_millis() as u64;
    progress("learn", 0.9);
    let t_learn = Instant::now();
    let refs: Vec<(&RgbF32, &RgbF32)> = pairs.iter().map(|(s, a)| (s, a)).collect();
    let fitted = look::fit::learn_from_answers(&refs);
    let learn_ms = t_learn.elapsed().as_millis() as u64;
    let (engine, model) = used.expect("at least one reference");
    let look = Look {
        info: LookInfo {
            preset: preset.descriptor.id.clone(),
            preset_version: preset.descriptor.version,
            params,
            engine: engine.clone(),
            model: model.clone(),
            references,
            coverage: fitted.coverage,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        global: fitted.global,
        lut: fitted.lut,
    };
    let output = look::file::write(&look, &req.out)?;
    progress("done", 1.0);
    let mut timings = std::collections::BTreeMap::new();
    timings.insert("engine".into(), engine_ms);
    timings.insert("learn".into(), learn_ms);
    timings.insert("total".into(), started.elapsed().as_millis() as u64);
    Ok(LearnResult {
        output,
        preset: preset.descriptor.id.clone(),
        engine,
        model,
        references: req.sources.clone(),
        engine_calls: calls,
        cached,
        cost,
        coverage: fitted.coverage,
        timings_ms: timings,
    })
}
