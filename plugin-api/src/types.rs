//! Plain data that crosses the plugin boundary as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Recipe;

/// Who the plugin is. Shown by `luminary plugins`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PluginInfo {
    /// Reverse-DNS id, e.g. `com.example.filmlook`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Free-form plugin version (not the ABI version).
    pub version: String,
    /// One sentence about the plugin.
    #[serde(default)]
    pub description: String,
    /// Author or vendor.
    #[serde(default)]
    pub author: String,
}

impl PluginInfo {
    /// A description with the three required facts.
    pub fn new(id: &str, name: &str, version: &str) -> Self {
        PluginInfo {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            description: String::new(),
            author: String::new(),
        }
    }
}

/// What a preset changes, which decides how an engine's edit reaches full resolution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PresetKind {
    /// Tone, colour and light: the edit is a local colour transform of the original.
    Look,
    /// Objects added, removed or reshaped: the engine's pixels are taken where they changed.
    Content,
    /// The engine answers a matte (the subject's coverage: an alpha channel, or a grey
    /// mask); the result is the original photo with that matte, refined at full
    /// resolution, as its alpha channel (since 0.1.3).
    Cutout,
    /// Super-resolution: the engine answers the picture it was sent at a larger size. The
    /// full-resolution photo is sent, in tiles (parameter `scale`: `"2x"` or `"4x"`), and
    /// the result is the photo that much larger (since 0.1.3).
    Upscale,
}

/// One preset as the bridges show it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PresetDescriptor {
    /// Short id used on the command line and in output names: lowercase, digits, `-`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// What it does, one or two sentences.
    pub description: String,
    /// Look or content.
    pub kind: PresetKind,
    /// Intensity the bridges' sliders start at.
    pub default_intensity: f64,
    /// JSON Schema (an object schema) of the preset's parameters.
    #[serde(default = "empty_schema")]
    pub params_schema: Value,
    /// Bumped when the preset's output changes, so cached edits are not reused.
    #[serde(default = "one")]
    pub version: u32,
    /// Free tags for grouping in UIs (e.g. `film`, `portrait`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether the offline engine should call [`Plugin::process_pixels`](crate::Plugin)
    /// for this preset (since 0.1.1; otherwise only the recipe runs).
    #[serde(default)]
    pub pixel_function: bool,
    /// The engine the preset works best with (e.g. `gemini` for a content preset), used
    /// when the photographer names none and that engine is set up (since 0.1.2). Declared
    /// here, not only in the built request, so the host knows it without running plugin
    /// code — to tell what a batch will cost before any photo is decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_hint: Option<String>,
    /// The model the preset works best with, per engine (`"replicate"` →
    /// `"qwen/qwen-image-edit"`), used when the photographer's configuration names none for
    /// this preset (since 0.1.3). Other engines run their configured model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
    /// The preset only makes sense on an AI engine (it adds or removes content the offline
    /// recipe cannot make), so the offline engine refuses it with a clear error instead of
    /// returning an unchanged photo (since 0.1.3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ai_only: bool,
}

fn empty_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}
fn one() -> u32 {
    1
}

impl PresetDescriptor {
    /// A look preset with no parameters and default intensity 0.8.
    pub fn look(id: &str, name: &str, description: &str) -> Self {
        PresetDescriptor {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            kind: PresetKind::Look,
            default_intensity: 0.8,
            params_schema: empty_schema(),
            version: 1,
            tags: Vec::new(),
            pixel_function: false,
            engine_hint: None,
            models: BTreeMap::new(),
            ai_only: false,
        }
    }

    /// Declares the model the preset works best with on `engine` (see `models`).
    pub fn prefers_model(mut self, engine: &str, model: &str) -> Self {
        self.models.insert(engine.into(), model.into());
        self
    }

    /// Declares that the preset needs an AI engine (see `ai_only`).
    pub fn ai_only(mut self) -> Self {
        self.ai_only = true;
        self
    }

    /// Declares the engine the preset works best with (see `engine_hint`).
    pub fn prefers_engine(mut self, engine: &str) -> Self {
        self.engine_hint = Some(engine.into());
        self
    }

    /// Declares that the preset has a pixel function (see `Plugin::process_pixels`).
    pub fn with_pixel_function(mut self) -> Self {
        self.pixel_function = true;
        self
    }

    /// Sets the default intensity.
    pub fn intensity(mut self, v: f64) -> Self {
        self.default_intensity = v;
        self
    }

    /// Sets the parameter schema (a JSON Schema object).
    pub fn params(mut self, schema: Value) -> Self {
        self.params_schema = schema;
        self
    }

    /// Sets the tags.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }
}

/// Facts about the photo being enhanced, measured by the host on the preview.
///
/// Luminances are display-referred linear (0 black, 1 white).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ImageFacts {
    /// Full-resolution width after orientation.
    pub width: u32,
    /// Full-resolution height after orientation.
    pub height: u32,
    /// Whether the source was a camera RAW.
    pub is_raw: bool,
    /// Camera make, if known.
    pub make: Option<String>,
    /// Camera model, if known.
    pub model: Option<String>,
    /// Mean luminance.
    pub mean_luminance: f32,
    /// 1st, 50th and 99th percentile of luminance.
    pub luminance_percentiles: [f32; 3],
    /// Mean chroma relative to luminance (0 for grey images).
    pub mean_saturation: f32,
}

/// What a preset asks of an engine: words for AI engines, a recipe for the offline one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EngineRequest {
    /// Instruction for generative engines.
    pub prompt: String,
    /// What generative engines must avoid.
    #[serde(default)]
    pub negative_prompt: String,
    /// Engine the preset prefers when the user names none (e.g. `gemini`).
    #[serde(default)]
    pub engine_hint: Option<String>,
    /// What the built-in offline engine does.
    #[serde(default)]
    pub recipe: Recipe,
}

impl EngineRequest {
    /// A request with a prompt and a local recipe.
    pub fn new(prompt: &str, recipe: Recipe) -> Self {
        EngineRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            engine_hint: None,
            recipe,
        }
    }
}
