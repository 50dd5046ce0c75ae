//! AI edit providers for Luminary: one blocking client per engine (Gemini, OpenAI, fal, Replicate,
//! ComfyUI) behind the [`Provider`] trait.
//!
//! The daemon keeps one `Arc<dyn Provider>` per engine for its whole life, so everything that must
//! be shared between concurrent edits lives inside the provider object: the HTTP connection pool,
//! the per-engine concurrency limit and the circuit breaker.
//!
//! Design choices worth knowing before changing anything:
//! - **Blocking, with helper threads.** The daemon is thread-based; each HTTP call runs on a helper
//!   thread so that the caller can notice cancellation within ~50 ms and walk away from a call
//!   that is still in flight (the helper finishes or times out on its own).
//! - **A billable request is never re-sent blindly.** Sync calls (Gemini, OpenAI) are not retried
//!   once the request has left and the reply did not come; queue submits (fal, Replicate) are
//!   retried only when the provider clearly did not accept them. See [`EngineError::maybe_billed`].
//! - **Secrets stay inside.** Every error and health message is passed through a redactor that
//!   removes the key, and [`ProviderConfig`]'s `Debug` prints `<set>`/`<unset>`.
//! - **Replies are checked before they are trusted**: decoded, non-empty, aspect ratio within 15 %
//!   of the input's.
#![deny(missing_docs)]

mod check;
mod comfyui;
mod config;
mod engine;
mod error;
mod fal;
mod gemini;
mod guard;
mod http;
mod openai;
mod replicate;
mod retry;

#[cfg(feature = "mock")]
pub mod mock;

use std::sync::Arc;

pub use config::{ProviderConfig, Tuning};
pub use error::EngineError;

/// The engine names the daemon accepts in `[engines.<name>]`, in the order the docs list them.
pub const NAMES: [&str; 5] = ["gemini", "openai", "fal", "replicate", "comfyui"];

/// What an edit asks of the model. The request's shape follows from it (the host knows it
/// from the preset's kind), not from guessing at the model's name, so any segmentation or
/// super-resolution model a photographer configures gets the right request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Task {
    /// An edit by instruction: the picture back, changed.
    #[default]
    Edit,
    /// Background removal: a matte back (an RGBA cut-out or a grey mask); no instruction.
    Matte,
    /// Super-resolution: the picture back this many times larger; no instruction.
    Upscale(u32),
}

/// The list price of the well-known segmentation and super-resolution models (both billed by
/// compute time: estimates per call), else `None`.
pub(crate) fn utility_price(model: &str) -> Option<f64> {
    let m = model.to_ascii_lowercase();
    let any = |keys: &[&str]| keys.iter().any(|k| m.contains(k));
    if any(&["birefnet", "rembg", "remove-bg", "background", "rmbg"]) {
        Some(0.005)
    } else if any(&["esrgan", "swinir", "upscal"]) {
        Some(0.002)
    } else {
        None
    }
}

/// One edit request. Borrowed so that a retry never copies the image more than the wire needs.
pub struct EditInput<'a> {
    /// The preview, already encoded and stripped of metadata (providers see exactly these bytes).
    pub image: &'a [u8],
    /// `"image/png"` or `"image/jpeg"`.
    pub mime: &'a str,
    /// Pixel width of `image`, used to pick output sizes and to check the reply's aspect ratio.
    pub width: u32,
    /// Pixel height of `image`.
    pub height: u32,
    /// The preset's instruction.
    pub prompt: &'a str,
    /// May be empty; providers without a negative field get it appended as "Avoid: …".
    pub negative_prompt: &'a str,
    /// A model other than the engine's configured one, for this edit only: a preset's own
    /// model (`[engines.<name>.preset_models]`, or the one its plugin declares). The
    /// engine's connection pool, concurrency limit and circuit breaker stay shared.
    /// ComfyUI runs its workflow whatever this says.
    pub model: Option<&'a str>,
    /// What is asked: an edit, a matte or an upscale.
    pub task: Task,
}

/// A checked edit result.
pub struct EditOutput {
    /// Encoded image exactly as the provider sent it.
    pub bytes: Vec<u8>,
    /// Mime type read from the decoded bytes, not from what the provider claimed.
    pub mime: String,
    /// Decoded width (generative engines choose their own output size).
    pub width: u32,
    /// Decoded height.
    pub height: u32,
    /// The provider's id for the request, for the cost ledger and support tickets.
    pub request_id: Option<String>,
    /// How many times the billable call was sent (1 when no retry was needed).
    pub attempts: u32,
}

impl std::fmt::Debug for EditOutput {
    // The bytes would flood any log or assertion message; their length says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EditOutput")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("mime", &self.mime)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("request_id", &self.request_id)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// Cancellation and progress, provided by the host's job.
pub struct Control<'a> {
    /// Polled at least every 100 ms while waiting; `true` makes the edit stop and return
    /// [`EngineError::Cancelled`] (after asking queue providers to cancel the remote job).
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
    /// Short human status: "queued (position 3)", "running", "retrying in 2.0 s after HTTP 503".
    pub progress: &'a (dyn Fn(&str) + Sync),
}

/// What [`Provider::health`] found, without spending money.
#[derive(Debug, Clone)]
pub struct Health {
    /// `None` for engines that take no key (ComfyUI).
    pub key_present: Option<bool>,
    /// The server answered HTTP at all.
    pub reachable: bool,
    /// One line for `luminary doctor`; never contains the key.
    pub detail: String,
}

/// One AI engine. Implementations are shared between threads for the daemon's life.
pub trait Provider: Send + Sync {
    /// `"gemini"`, `"openai"`, `"fal"`, `"replicate"` or `"comfyui"`.
    fn name(&self) -> &str;
    /// The model id actually used (configured or default).
    fn model(&self) -> &str;
    /// USD per edited image, for budgets and the ledger.
    fn price_per_image(&self) -> f64;
    /// USD per image on `model`: the configured `price_per_image` for the configured model,
    /// the provider's list price for any other.
    fn price_for(&self, model: &str) -> f64;
    /// The model `[engines.<name>.preset_models]` names for `preset`, if any.
    fn preset_model(&self, preset: &str) -> Option<&str>;
    /// The environment variable that holds the key; `None` for ComfyUI.
    fn key_var(&self) -> Option<&'static str>;
    /// Whether a key was found (environment or config); always `true` for ComfyUI.
    fn has_key(&self) -> bool;
    /// Runs one edit: blocking, cancellable through `ctl`, limited by the engine's concurrency.
    fn edit(&self, input: &EditInput<'_>, ctl: &Control<'_>) -> Result<EditOutput, EngineError>;
    /// Key present? Server reachable? Without spending money (a models/metadata GET, ComfyUI
    /// `/system_stats`…).
    fn health(&self) -> Health;
}

/// Builds a provider; the key comes from the environment variable first, then `cfg.api_key`.
///
/// Fails with [`EngineError::Config`] for an unknown name or an invalid setting (bad `base_url`,
/// non-positive timeout, unreadable ComfyUI workflow). A missing key is *not* an error here: the
/// daemon may run without cloud keys, and `edit` reports [`EngineError::Auth`] before any network
/// call.
pub fn provider(name: &str, cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, EngineError> {
    match name {
        "gemini" => Ok(Arc::new(engine::Engine::new(gemini::Gemini, cfg)?)),
        "openai" => Ok(Arc::new(engine::Engine::new(openai::OpenAi, cfg)?)),
        "fal" => Ok(Arc::new(engine::Engine::new(fal::Fal, cfg)?)),
        "replicate" => Ok(Arc::new(engine::Engine::new(replicate::Replicate, cfg)?)),
        "comfyui" => Ok(Arc::new(engine::Engine::new(
            comfyui::ComfyUi::load(cfg)?,
            cfg,
        )?)),
        other => Err(EngineError::Config {
            engine: other.to_string(),
            detail: format!(
                "unknown engine \"{other}\"; known engines: {}",
                NAMES.join(", ")
            ),
        }),
    }
}
