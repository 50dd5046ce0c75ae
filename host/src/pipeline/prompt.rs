//! Free-text edits ("remove the power lines", "make it a snowy morning"): the user's words
//! as an ad-hoc preset, with the guards every first-party preset carries appended, so the
//! engine changes what is asked and keeps the photograph.
//!
//! The ad-hoc preset is `prompt`, kind look with the transfer's change detection (what the
//! engine repaints becomes content, the rest keeps the camera's pixels — the "auto" kind),
//! and the text is its one parameter: so the edit cache keys on the exact text, the ledger
//! and the estimate see it like any parameter, and the output's provenance records it.

use std::sync::OnceLock;

use luminary_plugin_api::prompts::KEEP_REST;
use luminary_plugin_api::{EngineRequest, PresetDescriptor, PresetKind};
use serde_json::{Map, Value};

use crate::error::{ErrorCode, JobError};

/// The ad-hoc preset's id.
pub const ID: &str = "prompt";

/// What the engine is told besides the user's words.
pub const GUARD: &str = "Change only what this instruction asks for.";

/// What generative engines tend to do and must not (the first-party list without "new
/// objects" and "removed objects", which a free-text edit may ask for).
const NEGATIVE: &str = "cropping, reframing, changed faces, plastic skin, over-smoothing, \
halos, oversharpening, text, watermark";

/// The ad-hoc preset's descriptor.
pub fn descriptor() -> &'static PresetDescriptor {
    static D: OnceLock<PresetDescriptor> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = PresetDescriptor::look(
            ID,
            "Free-text edit",
            "Your own instruction to an AI engine (--prompt); the rest of the photograph is kept.",
        );
        d.default_intensity = 1.0;
        d.params_schema = serde_json::json!({
            "type": "object",
            "properties": {"prompt": {"type": "string", "title": "Prompt",
                                      "description": "What to change, in your words"}},
            "required": ["prompt"]
        });
        d.engine_hint = Some("gemini".into());
        d.kind = PresetKind::Look;
        d
    })
}

/// The longest instruction each engine takes, in characters. OpenAI documents 32 000 for
/// its image models (PROVIDERS.md). Gemini 2.5 Flash Image reads 32 768 input tokens, of
/// which the picture takes about 1 300: 30 000 characters stay well inside. FLUX Kontext
/// and Qwen models (on fal and Replicate) read their prompt through a 512-token text
/// encoder and drop the rest without a word: 2 000 characters is about what fits. ComfyUI
/// runs whatever workflow the user built: 10 000.
pub fn max_chars(engine: &str) -> usize {
    match engine {
        "openai" => 32_000,
        "gemini" => 30_000,
        "fal" | "replicate" => 2_000,
        _ => 10_000,
    }
}

/// The user's words from the request's parameters, trimmed; an empty prompt is refused.
pub fn text_of(params: &Map<String, Value>) -> Result<String, JobError> {
    let text = params
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if text.is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "the prompt is empty: say what to change, e.g. --prompt \"remove the power lines\"",
        ));
    }
    Ok(text.to_string())
}

/// The engine request for `text` on `engine`, or why it cannot be sent.
pub fn request(text: &str, engine: &str) -> Result<EngineRequest, JobError> {
    if engine == "local" {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "a free-text edit needs an AI engine: add --engine gemini (or openai, fal, replicate, comfyui)",
        ));
    }
    let n = text.chars().count();
    let max = max_chars(engine);
    if n > max {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!("the prompt is {n} characters; {engine} takes at most {max}: shorten it"),
        ));
    }
    Ok(EngineRequest {
        prompt: format!("{text}\n\n{GUARD} {KEEP_REST}"),
        negative_prompt: NEGATIVE.into(),
        engine_hint: Some("gemini".into()),
        recipe: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_are_appended_and_bad_prompts_are_refused_by_name() {
        let r = request("Remove the power lines", "gemini").unwrap();
        assert!(r.prompt.starts_with("Remove the power lines\n"));
        assert!(r.prompt.contains(GUARD) && r.prompt.contains(KEEP_REST));
        let mut p = Map::new();
        p.insert("prompt".into(), Value::String("   ".into()));
        assert!(text_of(&p)
            .unwrap_err()
            .message
            .contains("the prompt is empty"));
        let long = "a".repeat(2_001);
        let e = request(&long, "replicate").unwrap_err();
        assert!(
            e.message.contains("2001 characters") && e.message.contains("at most 2000"),
            "{}",
            e.message
        );
        assert!(request(&long, "openai").is_ok());
        assert!(request("x", "local")
            .unwrap_err()
            .message
            .contains("needs an AI engine"));
    }
}
