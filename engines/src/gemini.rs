//! Google Gemini image editing ("Nano Banana"): one synchronous `generateContent` call.
//!
//! Refusals arrive as HTTP 200 (a `promptFeedback.blockReason`, or a candidate whose
//! `finishReason` is a safety reason), and a model may "answer" with text instead of drawing;
//! both must be told apart from a success by reading the body, not the status.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::check::{b64, closest_ratio, decode_b64, prompt_with_avoid};
use crate::config::Spec;
use crate::engine::{Backend, Common, Raw};
use crate::error::clip;
use crate::http::{Job, Reply};
use crate::retry::{gemini_retry_delay, retry_after, retrying, sync_send_failure, Retryable, Step};
use crate::{EditInput, EngineError, Health};

pub(crate) struct Gemini;

/// `imageConfig.aspectRatio` values every image model accepts (3.1 adds extremes we don't need).
const RATIOS: [(u32, u32); 10] = [
    (1, 1),
    (2, 3),
    (3, 2),
    (3, 4),
    (4, 3),
    (4, 5),
    (5, 4),
    (9, 16),
    (16, 9),
    (21, 9),
];

/// Finish reasons that mean "the safety system stopped it" (vs. failures like NO_IMAGE).
const REFUSAL_REASONS: [&str; 8] = [
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// Statuses the official SDK retries.
const RETRYABLE: [u16; 6] = [408, 429, 500, 502, 503, 504];

fn price(model: &str) -> f64 {
    // Image-output token prices × tokens per 1K image (PROVIDERS.md, pricing).
    if model.contains("3-pro-image") {
        0.134
    } else if model.contains("3.1-flash") {
        0.067
    } else {
        0.039
    }
}

/// Gemini answers camelCase but the proto-JSON rules allow snake_case too; accept both.
fn field<'v>(v: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn model_path(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

impl Backend for Gemini {
    fn spec(&self) -> Spec {
        Spec {
            name: "gemini",
            key_var: Some("GEMINI_API_KEY"),
            base_url: "https://generativelanguage.googleapis.com",
            base_suffixes: &["/v1beta"],
            model: "gemini-2.5-flash-image",
            backoff_base: Duration::from_secs(1),
            poll: Duration::from_millis(500),
            price,
        }
    }

    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError> {
        let url = c.url(&format!(
            "/v1beta/models/{}:generateContent",
            model_path(c.model(input))
        ));
        let (rw, rh) = RATIOS[closest_ratio(input.width, input.height, &RATIOS)];
        let body = json!({
            "contents": [{
                "role": "user",
                "parts": [
                    {"text": prompt_with_avoid(input)},
                    {"inline_data": {"mime_type": input.mime, "data": b64(input.image)}}
                ]
            }],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "imageConfig": {"aspectRatio": format!("{rw}:{rh}")}
            }
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| job.config(format!("cannot encode the request: {e}")))?;
        job.progress("sending to gemini");
        retrying(job, true, || {
            let req = c
                .http
                .client
                .post(&url)
                .header("x-goog-api-key", c.key())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            match c.http.send(job, req, None) {
                Err(e) => sync_send_failure(job, e),
                Ok(reply) => classify(c, job, reply),
            }
        })
    }

    fn health(&self, c: &Common) -> Health {
        let mut req = c
            .http
            .client
            .get(c.url(&format!("/v1beta/models/{}", model_path(&c.s.model))));
        if let Some(k) = &c.s.key {
            req = req.header("x-goog-api-key", k);
        }
        c.health_from(c.http.probe(req), |_| {
            format!("ok: model {} is available", c.s.model)
        })
    }
}

fn classify(c: &Common, job: &Job<'_>, reply: Reply) -> Step<Raw> {
    if reply.status == 200 {
        return parse_success(job, &reply);
    }
    let body = reply.json().unwrap_or(Value::Null);
    let err = body.get("error");
    let status = err
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| clip(m, 300))
        .unwrap_or_else(|| reply.text());
    let key_invalid = err
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let what = format!("HTTP {} {status}: {message}", reply.status);
    if matches!(reply.status, 401 | 403) || key_invalid {
        return Step::Fail(c.auth_error(what));
    }
    if RETRYABLE.contains(&reply.status) {
        let after = gemini_retry_delay(&body).or_else(|| retry_after(&reply.headers));
        let give_up = if reply.status == 429 {
            EngineError::RateLimited {
                engine: job.engine.into(),
                retry_after_s: after.map(|d| d.as_secs_f64()),
            }
        } else {
            job.unavailable(what)
        };
        return Step::Retry(Retryable {
            why: format!("HTTP {}", reply.status),
            after,
            give_up,
        });
    }
    Step::Fail(job.config(what))
}

fn parse_success(job: &Job<'_>, reply: &Reply) -> Step<Raw> {
    let v: Value = match serde_json::from_slice(&reply.body) {
        Ok(v) => v,
        Err(e) => {
            return Step::Fail(job.bad_reply(format!(
                "malformed JSON ({e}): {}",
                clip(&String::from_utf8_lossy(&reply.body), 80)
            )))
        }
    };
    let request_id = field(&v, "responseId", "response_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let refused = |reason: String| {
        Step::Fail(EngineError::Refused {
            engine: job.engine.into(),
            reason,
        })
    };

    if let Some(fb) = field(&v, "promptFeedback", "prompt_feedback") {
        if let Some(reason) = field(fb, "blockReason", "block_reason").and_then(Value::as_str) {
            if reason != "BLOCKED_REASON_UNSPECIFIED" {
                let msg = field(fb, "blockReasonMessage", "block_reason_message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return refused(format!(
                    "prompt blocked ({reason}){}",
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", clip(msg, 200))
                    }
                ));
            }
        }
    }

    // The last non-thought image wins: Gemini 3 Pro may send interim "thought" images first.
    let mut image: Option<&str> = None;
    let mut texts: Vec<&str> = Vec::new();
    let mut finish: Option<(&str, &str)> = None;
    for cand in v
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(reason) = field(cand, "finishReason", "finish_reason").and_then(Value::as_str) {
            let msg = field(cand, "finishMessage", "finish_message")
                .and_then(Value::as_str)
                .unwrap_or("");
            finish = Some((reason, msg));
        }
        let parts = cand
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(data) = field(part, "inlineData", "inline_data")
                .and_then(|d| d.get("data"))
                .and_then(Value::as_str)
            {
                image = Some(data);
            } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                texts.push(t);
            }
        }
    }
    if let Some(data) = image {
        return match decode_b64(data) {
            Some(bytes) => Step::Done(Raw { bytes, request_id }),
            None => Step::Fail(job.bad_reply("the image data is not valid base64")),
        };
    }
    if let Some((reason, msg)) = finish {
        if REFUSAL_REASONS.contains(&reason) {
            return refused(format!(
                "output blocked ({reason}){}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {}", clip(msg, 200))
                }
            ));
        }
    }
    let reason = finish.map(|f| f.0).unwrap_or("none");
    if !texts.is_empty() {
        return Step::Fail(job.bad_reply(format!(
            "the model answered with text instead of an image (finishReason {reason}): \"{}\"",
            clip(&texts.join(" "), 200)
        )));
    }
    Step::Fail(job.bad_reply(format!("no image in the reply (finishReason {reason})")))
}
