//! A cut-out job's last stage before encoding: the engine's answer read as a matte, refined
//! on the full-resolution photo (or only upscaled, when the photographer turns refinement
//! off), at the job's intensity.

use crate::engine::remote::Answer;
use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;
use crate::matte::{self, Matte, Refine};

/// Parameters Luminary applies itself, after the engine: they are not part of the edit's
/// identity, so changing them reuses the paid answer.
const OWN_PARAMS: [&str; 1] = ["refine_edges"];

/// `params` as the engine's edit sees them (for the edit cache's key and the estimate).
pub fn engine_params(
    descriptor: &luminary_plugin_api::PresetDescriptor,
    params: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut p = params.clone();
    if descriptor.kind == luminary_plugin_api::PresetKind::Cutout {
        for k in OWN_PARAMS {
            p.remove(k);
        }
    }
    p
}

/// What the model is asked for a preset of this kind that runs through the one-answer path
/// (an upscale asks per tile, with its factor).
pub fn task_of(descriptor: &luminary_plugin_api::PresetDescriptor) -> luminary_engines::Task {
    match descriptor.kind {
        luminary_plugin_api::PresetKind::Cutout => luminary_engines::Task::Matte,
        _ => luminary_engines::Task::Edit,
    }
}

/// The alpha channel of `photo` from the engine's answer.
pub fn alpha(
    photo: &RgbF32,
    answer: &Answer,
    engine: &str,
    refine: bool,
    intensity: f32,
) -> Result<Vec<f32>, JobError> {
    let matte = Matte::from_answer(&answer.bytes).map_err(|e| {
        JobError::new(
            ErrorCode::EngineUnavailable,
            format!("{engine}: {e} (is the configured model a background remover?)"),
        )
    })?;
    let mut alpha = if refine {
        matte::refine(photo, &matte, Refine::default())
    } else {
        matte.upsample(photo.width, photo.height)
    };
    matte::at_intensity(&mut alpha, intensity);
    Ok(alpha)
}
