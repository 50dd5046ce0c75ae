//! `[engines.<name>]` configuration and its resolution into checked settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One `[engines.<name>]` table of config.toml. Every field is optional; unknown keys are
/// rejected so that a typo (`timeout = 30`) is reported instead of silently ignored.
#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Default: the provider's public URL (ComfyUI: `http://127.0.0.1:8188`). A trailing `/v1`
    /// (OpenAI, Replicate) or `/v1beta` (Gemini) is tolerated, since SDKs spell it that way.
    pub base_url: Option<String>,
    /// Default per provider; see the crate README.
    pub model: Option<String>,
    /// Key in the file; the environment variable wins when set.
    pub api_key: Option<String>,
    /// Seconds to establish a connection. Default 10.
    pub connect_timeout_s: Option<f64>,
    /// Seconds for one HTTP call. Default 120: generous, because a sync call that times out
    /// after it was sent is not retried (it may already be billed).
    pub request_timeout_s: Option<f64>,
    /// Seconds for the whole edit including queueing, polling and retries, counted from when the
    /// edit gets its concurrency slot. Default 300.
    pub total_timeout_s: Option<f64>,
    /// Edits in flight at once for this engine. Default 2.
    pub concurrency: Option<usize>,
    /// USD per image. Default from the provider's list price for the model (see README).
    pub price_per_image: Option<f64>,
    /// Sends of one call, counting the first. Default 4.
    pub max_attempts: Option<u32>,
    /// ComfyUI: an API-format workflow JSON; the built-in Flux Kontext workflow otherwise.
    pub workflow: Option<PathBuf>,
    /// A model per preset id (`[engines.replicate.preset_models]`, `virtual-staging =
    /// "black-forest-labs/flux-kontext-max"`), over the one the preset's plugin prefers and
    /// the engine's `model`.
    pub preset_models: BTreeMap<String, String>,
    /// Test knobs; not part of config.toml.
    #[doc(hidden)]
    #[serde(skip)]
    pub tuning: Tuning,
}

/// Knobs that only tests need (short backoffs and polls, a quickly re-closing circuit).
#[doc(hidden)]
#[derive(Clone, Default, Debug)]
pub struct Tuning {
    /// Base of the exponential backoff, instead of the provider's SDK default.
    pub backoff_base_ms: Option<u64>,
    /// Interval between status polls of queue providers.
    pub poll_ms: Option<u64>,
    /// Consecutive transient failures that open the circuit (default 5).
    pub circuit_threshold: Option<u32>,
    /// How long an open circuit fails fast (default 30 s).
    pub circuit_open_s: Option<f64>,
    /// Ignore the key environment variables, so a developer's real key never reaches a mock.
    pub ignore_env: bool,
}

impl fmt::Debug for ProviderConfig {
    // Hand-written so that the key can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field(
                "api_key",
                &if self.api_key.is_some() {
                    "<set>"
                } else {
                    "<unset>"
                },
            )
            .field("connect_timeout_s", &self.connect_timeout_s)
            .field("request_timeout_s", &self.request_timeout_s)
            .field("total_timeout_s", &self.total_timeout_s)
            .field("concurrency", &self.concurrency)
            .field("price_per_image", &self.price_per_image)
            .field("max_attempts", &self.max_attempts)
            .field("workflow", &self.workflow)
            .field("preset_models", &self.preset_models)
            .finish_non_exhaustive()
    }
}

/// What a provider needs to know about itself to resolve a config.
pub(crate) struct Spec {
    pub name: &'static str,
    pub key_var: Option<&'static str>,
    pub base_url: &'static str,
    /// Path suffixes users copy from SDK docs that our request paths already contain.
    pub base_suffixes: &'static [&'static str],
    pub model: &'static str,
    /// First backoff step when the server gives no hint; the provider SDK's own default.
    pub backoff_base: Duration,
    pub poll: Duration,
    pub price: fn(&str) -> f64,
}

/// A resolved, validated configuration.
#[derive(Clone)]
pub(crate) struct Settings {
    pub base_url: String,
    pub model: String,
    pub key: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub total_timeout: Duration,
    pub concurrency: usize,
    pub price: f64,
    /// The provider's list price of any model, for a preset's own model.
    pub list_price: fn(&str) -> f64,
    pub preset_models: BTreeMap<String, String>,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub poll: Duration,
    pub circuit_threshold: u32,
    pub circuit_open: Duration,
}

impl Settings {
    pub fn resolve(spec: &Spec, cfg: &ProviderConfig) -> Result<Settings, EngineError> {
        let bad = |detail: String| EngineError::Config {
            engine: spec.name.to_string(),
            detail,
        };
        let secs = |field: &str, v: Option<f64>, default: f64| -> Result<Duration, EngineError> {
            let v = v.unwrap_or(default);
            if !(v.is_finite() && v > 0.0 && v < 1e7) {
                return Err(bad(format!(
                    "[engines.{}] {field} must be a positive number of seconds, got {v}",
                    spec.name
                )));
            }
            Ok(Duration::from_secs_f64(v))
        };

        let mut base = cfg
            .base_url
            .clone()
            .unwrap_or_else(|| spec.base_url.to_string());
        base = base.trim().trim_end_matches('/').to_string();
        for suffix in spec.base_suffixes {
            if let Some(stripped) = base.strip_suffix(suffix) {
                base = stripped.to_string();
            }
        }
        match reqwest::Url::parse(&base) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
            _ => {
                return Err(bad(format!(
                    "[engines.{}] base_url \"{base}\" is not an http(s) URL",
                    spec.name
                )))
            }
        }

        let model = cfg
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| spec.model.to_string());
        let model = model.trim().to_string();

        let env_key = match (spec.key_var, cfg.tuning.ignore_env) {
            (Some(var), false) => std::env::var(var).ok(),
            _ => None,
        };
        let key = env_key
            .filter(|k| !k.trim().is_empty())
            .or_else(|| cfg.api_key.clone().filter(|k| !k.trim().is_empty()))
            .map(|k| k.trim().to_string());

        let concurrency = cfg.concurrency.unwrap_or(2);
        if concurrency == 0 {
            return Err(bad(format!(
                "[engines.{}] concurrency must be at least 1",
                spec.name
            )));
        }
        let max_attempts = cfg.max_attempts.unwrap_or(4);
        if max_attempts == 0 {
            return Err(bad(format!(
                "[engines.{}] max_attempts must be at least 1",
                spec.name
            )));
        }
        let price = cfg.price_per_image.unwrap_or_else(|| (spec.price)(&model));
        if !(price.is_finite() && price >= 0.0) {
            return Err(bad(format!(
                "[engines.{}] price_per_image must be zero or more, got {price}",
                spec.name
            )));
        }
        let mut preset_models = BTreeMap::new();
        for (preset, m) in &cfg.preset_models {
            if m.trim().is_empty() {
                return Err(bad(format!(
                    "[engines.{}.preset_models] {preset} names no model",
                    spec.name
                )));
            }
            preset_models.insert(preset.clone(), m.trim().to_string());
        }
        let t = &cfg.tuning;
        Ok(Settings {
            base_url: base,
            model,
            key,
            connect_timeout: secs("connect_timeout_s", cfg.connect_timeout_s, 10.0)?,
            request_timeout: secs("request_timeout_s", cfg.request_timeout_s, 120.0)?,
            total_timeout: secs("total_timeout_s", cfg.total_timeout_s, 300.0)?,
            concurrency,
            price,
            list_price: spec.price,
            preset_models,
            max_attempts,
            backoff_base: t
                .backoff_base_ms
                .map(Duration::from_millis)
                .unwrap_or(spec.backoff_base),
            backoff_cap: Duration::from_secs(60),
            poll: t.poll_ms.map(Duration::from_millis).unwrap_or(spec.poll),
            circuit_threshold: t.circuit_threshold.unwrap_or(5).max(1),
            circuit_open: Duration::from_secs_f64(
                t.circuit_open_s
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .unwrap_or(30.0),
            ),
        })
    }
}
