//! Stage 6 — Engines: turn the base (or its preview) into the edited picture.
//!
//! Only the offline engine exists so far. It needs no transfer stage: its recipe is
//! resolution-independent (statistics come from the preview, radii are fractions of the
//! picture), so it runs directly on the full-resolution base and is exact. Because it is
//! free and deterministic it also blends in the same pass (no second 24 MP buffer); AI
//! engines will instead hand back an edited preview, and the pipeline's transfer and blend
//! stages take it from there without calling them again.

pub mod filters;
pub mod local;

use luminary_plugin_api::EngineRequest;

use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;

/// What an engine gives back.
pub enum Edited {
    /// The base with the edit already applied and blended at the requested intensity.
    Blended(RgbF32),
}

/// An AI engine. Implementations must be cancellable through `cancel` and must never log
/// keys.
pub trait Engine: Send + Sync {
    /// Name used on the command line and in results (`local`, `gemini`, …).
    fn name(&self) -> &str;
    /// Model identifier reported in results and provenance.
    fn model(&self) -> String;
    /// Runs the request. `base` is the full-resolution original, `preview` its downscale,
    /// `intensity` the blend the user asked for.
    fn run(
        &self,
        req: &EngineRequest,
        base: RgbF32,
        preview: &RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<Edited, JobError>;
}

/// Finds an engine by name.
pub fn engine_named(name: &str) -> Result<Box<dyn Engine>, JobError> {
    match name {
        "local" => Ok(Box::new(local::LocalEngine)),
        "gemini" | "openai" | "fal" | "replicate" | "comfyui" => Err(JobError::new(
            ErrorCode::EngineUnavailable,
            format!("engine '{name}' is not available in this build yet; use --engine local"),
        )),
        other => Err(JobError::new(
            ErrorCode::BadRequest,
            format!("unknown engine '{other}'; known engines: local, gemini, openai, fal, replicate, comfyui"),
        )),
    }
}
