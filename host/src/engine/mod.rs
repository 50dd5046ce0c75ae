//! Stage 6 — Engines: turn the base (or its preview) into the edited picture.
//!
//! Two kinds sit behind one trait:
//! * `local`, the offline engine. Its recipe is resolution-independent (statistics come
//!   from the preview, radii are fractions of the picture), so it runs directly on the
//!   full-resolution base, exactly, and blends in the same pass (no second 24 MP buffer).
//! * AI engines (`remote`): the preview goes out, an edited preview comes back (through the
//!   edit cache), and the pipeline's transfer stage carries it to full resolution.

pub mod commands;
mod contract;
pub mod filters;
pub mod local;
pub mod remote;

pub use contract::{stay_on_cpu, Edited, Engine, JobInfo, OffCpu};

use std::sync::Arc;

use luminary_plugin_api::{EngineRequest, PresetDescriptor};

use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use remote::Engines;

/// Every engine name, offline first.
pub const ENGINE_NAMES: [&str; 6] = ["local", "gemini", "openai", "fal", "replicate", "comfyui"];

/// An AI engine as a pipeline engine.
pub struct RemoteEngine<'a> {
    provider: Arc<dyn luminary_engines::Provider>,
    engines: &'a Engines,
    /// The model this job's edits run on (the preset's own, or the engine's).
    model: String,
}

impl Engine for RemoteEngine<'_> {
    fn name(&self) -> &str {
        self.provider.name()
    }

    fn model(&self) -> String {
        self.model.clone()
    }

    fn run(
        &self,
        _req: &EngineRequest,
        job: &JobInfo<'_>,
        base: RgbF32,
        preview: &RgbF32,
        _intensity: f32,
        cancel: &Cancel,
    ) -> Result<Edited, JobError> {
        let (sent, seen) = remote::outgoing_preview(preview);
        let mut answer = None;
        (job.off_cpu)(&mut || {
            answer = Some(self.engines.answer(
                &*self.provider,
                &self.model,
                &sent,
                (preview.width, preview.height),
                &job.edit,
                cancel,
                job.status,
            ))
        });
        let answer = answer.expect("OffCpu runs the wait")?;
        Ok(Edited::Answer { base, seen, answer })
    }
}

/// Finds an engine by name. An AI engine without a key is found too: its answer may be
/// cached; otherwise the edit fails with `engine_auth` naming the variable, before any
/// network call.
pub fn engine_named<'a>(
    name: &str,
    engines: &'a Engines,
) -> Result<Box<dyn Engine + 'a>, JobError> {
    match name {
        "local" => Ok(Box::new(local::LocalEngine)),
        n if luminary_engines::NAMES.contains(&n) => {
            // A missing key is reported by the edit itself, after the cache was asked:
            // answers already paid for stay usable without the key.
            let provider = engines.provider(n)?;
            let model = provider.model().to_string();
            Ok(Box::new(RemoteEngine {
                provider,
                engines,
                model,
            }))
        }
        other => Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "unknown engine '{other}'; known engines: {}",
                ENGINE_NAMES.join(", ")
            ),
        )),
    }
}

/// The engine `name` as it runs `preset`: on the model the photographer's
/// `[engines.<name>.preset_models]` names for it, else the one its plugin prefers on that
/// engine, else the engine's own. A preset that only an AI engine can do is refused on the
/// offline engine, before any photo is decoded.
pub fn engine_for<'a>(
    name: &str,
    preset: &PresetDescriptor,
    engines: &'a Engines,
) -> Result<Box<dyn Engine + 'a>, JobError> {
    if name == "local" && preset.ai_only {
        let hint = match &preset.engine_hint {
            Some(h) => format!("--engine {h} (or another AI engine)"),
            None => "--engine gemini (or openai, fal, replicate, comfyui)".to_string(),
        };
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "'{}' ({}) needs an AI engine: it adds content the offline engine cannot make; add {hint}, with its key set",
                preset.id, preset.name
            ),
        ));
    }
    if name == "local" || !luminary_engines::NAMES.contains(&name) {
        return engine_named(name, engines);
    }
    let provider = engines.provider(name)?;
    let model = provider
        .preset_model(&preset.id)
        .or(preset.models.get(name).map(String::as_str))
        .unwrap_or(provider.model())
        .to_string();
    Ok(Box::new(RemoteEngine {
        provider,
        engines,
        model,
    }))
}
