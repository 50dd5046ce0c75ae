//! The part every provider shares: key check, circuit breaker, concurrency slot, deadline,
//! reply check and redaction around the provider-specific wire protocol ([`Backend`]).

use crate::check::check_image;
use crate::config::{ProviderConfig, Settings, Spec};
use crate::error::redact;
use crate::guard::{Breaker, Limiter};
use crate::http::{Job, Transport};
use crate::{Control, EditInput, EditOutput, EngineError, Health, Provider};

/// What a backend hands back before the common checks.
pub(crate) struct Raw {
    pub bytes: Vec<u8>,
    pub request_id: Option<String>,
}

/// One provider's wire protocol.
pub(crate) trait Backend: Send + Sync + 'static {
    fn spec(&self) -> Spec;
    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError>;
    fn health(&self, c: &Common) -> Health;
}

/// State shared by all edits of one engine.
pub(crate) struct Common {
    pub name: &'static str,
    pub key_var: Option<&'static str>,
    pub s: Settings,
    pub http: Transport,
    limiter: Limiter,
    breaker: Breaker,
}

impl Common {
    /// The key; backends call this only after [`Engine::edit`] checked that it exists.
    pub fn key(&self) -> &str {
        self.s.key.as_deref().unwrap_or("")
    }

    /// The model this edit runs on: its own (a preset's) or the engine's.
    pub fn model<'a>(&'a self, input: &EditInput<'a>) -> &'a str {
        input.model.unwrap_or(&self.s.model)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base_url)
    }

    pub fn auth_error(&self, detail: impl Into<String>) -> EngineError {
        match self.key_var {
            Some(var) => EngineError::Auth {
                engine: self.name.to_string(),
                var,
                detail: detail.into(),
            },
            None => EngineError::Config {
                engine: self.name.to_string(),
                detail: format!(
                    "the server refused access ({}); Luminary sends no credentials to it",
                    detail.into()
                ),
            },
        }
    }

    /// Removes the key from any text that will leave this crate.
    pub fn scrub(&self, text: &str) -> String {
        match &self.s.key {
            Some(k) => redact(text, k),
            None => text.to_string(),
        }
    }

    /// Builds a [`Health`] from a probe reply; `ok_detail` describes a 2xx answer.
    pub fn health_from(
        &self,
        r: Result<crate::http::Reply, String>,
        ok_detail: impl FnOnce(&crate::http::Reply) -> String,
    ) -> Health {
        let key_present = self.key_var.map(|_| self.s.key.is_some());
        let mut h = match r {
            Err(e) => Health {
                key_present,
                reachable: false,
                detail: format!("{} unreachable: {e}", self.s.base_url),
            },
            Ok(reply) => {
                let detail = if reply.ok() {
                    ok_detail(&reply)
                } else if matches!(reply.status, 401 | 403)
                    || (reply.status == 400 && reply.text().contains("API_KEY_INVALID"))
                {
                    match self.key_var {
                        Some(var) if self.s.key.is_some() => {
                            format!("key rejected (HTTP {}); check {var}", reply.status)
                        }
                        Some(var) => format!(
                            "reachable, but no key: set {var} or [engines.{}] api_key",
                            self.name
                        ),
                        None => format!("access refused (HTTP {})", reply.status),
                    }
                } else {
                    format!("reachable, but HTTP {}: {}", reply.status, reply.text())
                };
                Health {
                    key_present,
                    reachable: true,
                    detail,
                }
            }
        };
        if let Some(open) = self.breaker.open_for() {
            h.detail.push_str(&format!(
                "; circuit open for {:.0} more s after repeated failures",
                open.as_secs_f64().ceil()
            ));
        }
        h.detail = self.scrub(&h.detail);
        h
    }
}

pub(crate) struct Engine<B: Backend> {
    c: Common,
    backend: B,
}

impl<B: Backend> Engine<B> {
    pub fn new(backend: B, cfg: &ProviderConfig) -> Result<Engine<B>, EngineError> {
        let spec = backend.spec();
        let s = Settings::resolve(&spec, cfg)?;
        let http = Transport::new(&s, spec.name)?;
        let c = Common {
            name: spec.name,
            key_var: spec.key_var,
            limiter: Limiter::new(s.concurrency),
            breaker: Breaker::new(s.circuit_threshold, s.circuit_open),
            http,
            s,
        };
        Ok(Engine { c, backend })
    }

    fn edit_inner(
        &self,
        input: &EditInput<'_>,
        ctl: &Control<'_>,
    ) -> Result<EditOutput, EngineError> {
        let c = &self.c;
        if let (Some(_), None) = (c.key_var, &c.s.key) {
            return Err(c.auth_error("no key configured"));
        }
        if input.image.is_empty() || input.width == 0 || input.height == 0 {
            return Err(EngineError::Config {
                engine: c.name.into(),
                detail: "the input image is empty".into(),
            });
        }
        if (ctl.cancelled)() {
            return Err(EngineError::Cancelled);
        }
        let circuit_open =
            |(failures, wait): (u32, std::time::Duration)| EngineError::Unavailable {
                engine: c.name.into(),
                detail: format!(
                    "circuit open after {failures} consecutive failures, retrying after {:.0} s",
                    wait.as_secs_f64().ceil()
                ),
            };
        c.breaker.check().map_err(circuit_open)?;
        let _slot = c.limiter.acquire(ctl, || {
            (ctl.progress)(&format!("waiting for a free {} slot", c.name))
        })?;
        c.breaker.check().map_err(circuit_open)?;

        let job = Job::new(c.name, ctl, &c.s);
        let result = self.backend.run(c, &job, input).and_then(|raw| {
            let checked = check_image(c.name, &raw.bytes, input)?;
            Ok(EditOutput {
                bytes: raw.bytes,
                mime: checked.mime,
                width: checked.width,
                height: checked.height,
                request_id: raw.request_id,
                attempts: job.attempts.get().max(1),
            })
        });
        let opened = c.breaker.record(result.as_ref().map(|_| ()));
        if opened {
            tracing::warn!(engine = c.name, "circuit opened after repeated failures");
        }
        result
    }
}

impl<B: Backend> Provider for Engine<B> {
    fn name(&self) -> &str {
        self.c.name
    }

    fn model(&self) -> &str {
        &self.c.s.model
    }

    fn price_per_image(&self) -> f64 {
        self.c.s.price
    }

    fn price_for(&self, model: &str) -> f64 {
        if model == self.c.s.model {
            self.c.s.price
        } else {
            (self.c.s.list_price)(model)
        }
    }

    fn preset_model(&self, preset: &str) -> Option<&str> {
        self.c.s.preset_models.get(preset).map(String::as_str)
    }

    fn key_var(&self) -> Option<&'static str> {
        self.c.key_var
    }

    fn has_key(&self) -> bool {
        self.c.key_var.is_none() || self.c.s.key.is_some()
    }

    fn edit(&self, input: &EditInput<'_>, ctl: &Control<'_>) -> Result<EditOutput, EngineError> {
        let started = std::time::Instant::now();
        let model = self.c.model(input);
        let result = self
            .edit_inner(input, ctl)
            .map_err(|e| e.redacted(self.c.s.key.as_deref()));
        match &result {
            Ok(out) => tracing::info!(
                engine = self.c.name,
                model = %model,
                attempts = out.attempts,
                secs = started.elapsed().as_secs_f64(),
                request_id = out.request_id.as_deref().unwrap_or(""),
                "edit done"
            ),
            Err(e) => tracing::warn!(
                engine = self.c.name,
                model = %model,
                secs = started.elapsed().as_secs_f64(),
                maybe_billed = e.maybe_billed(),
                "edit failed: {e}"
            ),
        }
        result
    }

    fn health(&self) -> Health {
        let mut h = self.backend.health(&self.c);
        h.detail = self.c.scrub(&h.detail);
        h
    }
}
