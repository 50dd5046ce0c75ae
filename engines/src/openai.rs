//! OpenAI image edits: one synchronous multipart POST to `/v1/images/edits`, image back as
//! base64. Safety refusals are HTTP 400 `moderation_blocked`; retries follow the official SDK
//! (408/409/429/5xx, `retry-after-ms`/`Retry-After`, `x-should-retry`), minus re-sending a
//! request that already left.

use std::time::Duration;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use crate::check::{decode_b64, download, extension, prompt_with_avoid};
use crate::config::Spec;
use crate::engine::{Backend, Common, Raw};
use crate::error::clip;
use crate::http::{Job, Reply};
use crate::retry::{retry_after, retrying, sync_send_failure, Retryable, Step};
use crate::{EditInput, EngineError, Health};

pub(crate) struct OpenAi;

/// The SDK refuses to wait longer than this for a `Retry-After` and gives up instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

fn price(model: &str) -> f64 {
    // Quality is left on "auto", which may pick high: quote the high 1536-class price, an upper
    // bound, so budgets are not overrun.
    if model.contains("mini") {
        0.052
    } else if model.starts_with("gpt-image-1.5") {
        0.20
    } else if model.starts_with("dall-e-2") {
        0.02
    } else {
        0.25
    }
}

/// The `size` field: the supported size closest to the input's aspect ratio. gpt-image-2 takes
/// any multiple of 16 between 1:3 and 3:1, so it gets the input's own ratio at a 1536 long edge.
pub(crate) fn size_for(model: &str, w: u32, h: u32) -> String {
    if model.starts_with("dall-e-2") {
        return "1024x1024".into();
    }
    if model.starts_with("gpt-image-2") {
        let ratio = (w.max(1) as f64 / h.max(1) as f64).clamp(1.0 / 3.0, 3.0);
        let round16 = |x: f64| ((x / 16.0).round() as u32 * 16).max(16);
        return if ratio >= 1.0 {
            format!("1536x{}", round16(1536.0 / ratio))
        } else {
            format!("{}x1536", round16(1536.0 * ratio))
        };
    }
    let sizes = [(1024, 1024), (1536, 1024), (1024, 1536)];
    let (sw, sh) = sizes[crate::check::closest_ratio(w, h, &sizes)];
    format!("{sw}x{sh}")
}

impl Backend for OpenAi {
    fn spec(&self) -> Spec {
        Spec {
            name: "openai",
            key_var: Some("OPENAI_API_KEY"),
            base_url: "https://api.openai.com",
            base_suffixes: &["/v1"],
            model: "gpt-image-1",
            backoff_base: Duration::from_millis(500),
            poll: Duration::from_millis(500),
            price,
        }
    }

    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError> {
        let url = c.url("/v1/images/edits");
        let model = c.model(input).to_string();
        let gpt_image = model.starts_with("gpt-image") || model.starts_with("chatgpt-image");
        let prompt = prompt_with_avoid(input);
        let size = size_for(&model, input.width, input.height);
        let file_name = format!("photo.{}", extension(input.mime));
        job.progress("sending to openai");
        let raw = retrying(job, true, || {
            // The multipart body is a stream that is consumed by sending, so build it per attempt.
            let part = match Part::bytes(input.image.to_vec())
                .file_name(file_name.clone())
                .mime_str(input.mime)
            {
                Ok(p) => p,
                Err(e) => {
                    return Step::Fail(
                        job.config(format!("bad input mime \"{}\": {e}", input.mime)),
                    )
                }
            };
            let mut form = Form::new()
                .text("model", model.clone())
                .text("prompt", prompt.clone())
                .part("image", part)
                .text("size", size.clone())
                .text("n", "1");
            if gpt_image {
                form = form.text("output_format", "png");
            }
            // Keeps faces and fine detail (gpt-image-1 and 1.5+; mini rejects it).
            if model.starts_with("gpt-image") && !model.contains("mini") {
                form = form.text("input_fidelity", "high");
            }
            let req = c
                .http
                .client
                .post(&url)
                .bearer_auth(c.key())
                .multipart(form);
            match c.http.send(job, req, None) {
                Err(e) => sync_send_failure(job, e),
                Ok(reply) => classify(c, job, reply),
            }
        })?;
        match raw {
            Output::Bytes(raw) => Ok(raw),
            Output::Url(u, request_id) => Ok(Raw {
                bytes: download(&c.http, job, &u)?,
                request_id,
            }),
        }
    }

    fn health(&self, c: &Common) -> Health {
        let mut req = c
            .http
            .client
            .get(c.url(&format!("/v1/models/{}", c.s.model)));
        if let Some(k) = &c.s.key {
            req = req.bearer_auth(k);
        }
        c.health_from(c.http.probe(req), |_| {
            format!("ok: model {} is available", c.s.model)
        })
    }
}

enum Output {
    Bytes(Raw),
    /// dall-e-2 answers with a URL unless asked otherwise.
    Url(String, Option<String>),
}

fn classify(c: &Common, job: &Job<'_>, reply: Reply) -> Step<Output> {
    let request_id = reply.header("x-request-id").map(str::to_string);
    if reply.ok() {
        let v: Value = match serde_json::from_slice(&reply.body) {
            Ok(v) => v,
            Err(e) => {
                return Step::Fail(job.bad_reply(format!(
                    "malformed JSON ({e}): {}",
                    clip(&String::from_utf8_lossy(&reply.body), 80)
                )))
            }
        };
        let first = v
            .get("data")
            .and_then(Value::as_array)
            .and_then(|d| d.first());
        if let Some(b64) = first
            .and_then(|d| d.get("b64_json"))
            .and_then(Value::as_str)
        {
            return match decode_b64(b64) {
                Some(bytes) => Step::Done(Output::Bytes(Raw { bytes, request_id })),
                None => Step::Fail(job.bad_reply("b64_json is not valid base64")),
            };
        }
        if let Some(url) = first.and_then(|d| d.get("url")).and_then(Value::as_str) {
            return Step::Done(Output::Url(url.to_string(), request_id));
        }
        return Step::Fail(job.bad_reply("no image in the reply (data[0].b64_json missing)"));
    }

    let body = reply.json().unwrap_or(Value::Null);
    let err = body.get("error");
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let etype = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| clip(m, 300))
        .unwrap_or_else(|| reply.text());
    let rid = request_id
        .as_deref()
        .map(|r| format!(" (request {r})"))
        .unwrap_or_default();

    if matches!(reply.status, 401 | 403) {
        // OpenAI's 401 message quotes part of the key; report only the code.
        let code = if code.is_empty() { etype } else { code };
        return Step::Fail(c.auth_error(format!("HTTP {} {code}", reply.status)));
    }
    if code == "moderation_blocked" || (reply.status == 400 && message.contains("safety system")) {
        return Step::Fail(EngineError::Refused {
            engine: job.engine.into(),
            reason: message,
        });
    }
    if code == "insufficient_quota" {
        return Step::Fail(job.config(format!("the OpenAI account has no quota left (insufficient_quota){rid}; check billing at platform.openai.com")));
    }
    let should_retry = match reply.header("x-should-retry") {
        Some("true") => true,
        Some("false") => false,
        _ => matches!(reply.status, 408 | 409 | 429) || reply.status >= 500,
    };
    let what = format!("HTTP {} {code}: {message}{rid}", reply.status);
    if !should_retry {
        return Step::Fail(if reply.status == 429 {
            EngineError::RateLimited {
                engine: job.engine.into(),
                retry_after_s: retry_after(&reply.headers).map(|d| d.as_secs_f64()),
            }
        } else if reply.status >= 500 {
            job.unavailable(what)
        } else {
            job.config(what)
        });
    }
    let after = retry_after(&reply.headers);
    let give_up = if reply.status == 429 {
        EngineError::RateLimited {
            engine: job.engine.into(),
            retry_after_s: after.map(|d| d.as_secs_f64()),
        }
    } else {
        job.unavailable(what)
    };
    if after.is_some_and(|a| a > MAX_RETRY_AFTER) {
        return Step::Fail(give_up);
    }
    Step::Retry(Retryable {
        why: format!("HTTP {}", reply.status),
        after,
        give_up,
    })
}

#[cfg(test)]
mod tests {
    use super::size_for;

    #[test]
    fn sizes_follow_the_aspect() {
        assert_eq!(size_for("gpt-image-1", 1024, 683), "1536x1024");
        assert_eq!(size_for("gpt-image-1", 683, 1024), "1024x1536");
        assert_eq!(size_for("gpt-image-1", 1000, 1100), "1024x1024");
        assert_eq!(size_for("gpt-image-2", 1024, 683), "1536x1024");
        assert_eq!(size_for("gpt-image-2", 1920, 1080), "1536x864");
        assert_eq!(size_for("dall-e-2", 1920, 1080), "1024x1024");
    }
}
