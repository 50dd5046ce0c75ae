//! What a job is asked and what it answers: the `enhance` request, where its output goes,
//! the result, and the progress callback. Below every kind of job (`run_job`, live
//! previews, looks, estimates) and the protocol that carries them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::color::OutputSpace;
use crate::config::Format;

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
    /// Output width.
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

/// Reports progress as `(stage, overall fraction 0..1)`.
pub type Progress<'a> = &'a (dyn Fn(&str, f32) + Sync);
