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
mod request;
pub(crate) mod steps;
mod tiff_strips;
pub mod upscale;

use std::collections::BTreeMap;
use std::time::Instant;

pub use request::{EnhanceRequest, EnhanceResult, OutputRequest, Progress};
use serde_json::Value;
use steps::{
    check_output_dir, choose_engine, engine_request, find_preset, output_location, pixel_function,
    source_name, transfer_mode, write_result,
};

use crate::config::{Config, Format};
use crate::engine::remote::{EditJob, Engines};
use crate::engine::{engine_for, Edited, JobInfo, OffCpu};
use crate::error::{check, Cancel, ErrorCode, JobError};
use crate::ingest;
use crate::metadata;
use crate::plugins::{resolve_params, Registry};
use crate::transfer::Transfer;

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
