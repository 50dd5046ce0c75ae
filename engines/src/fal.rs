//! fal.ai queue API: submit, follow the status URL the server returned, fetch the result, then
//! download the image at once (fal keeps results for an hour at most).
//!
//! The status/result/cancel URLs lack the model's subpath (`fal-ai/flux-pro/kontext` polls
//! `fal-ai/flux-pro/requests/{id}/status`), so they are always taken from the submit reply,
//! never rebuilt.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

use crate::check::{data_uri, download, prompt_with_avoid};
use crate::config::Spec;
use crate::engine::{Backend, Common, Raw};
use crate::error::clip;
use crate::http::{with_query, Job, Orphan, Reply};
use crate::retry::{get_step, retry_after, retrying, submit_failure, Retryable, Step};
use crate::{EditInput, EngineError, Health};

pub(crate) struct Fal;

/// How long a cancellation waits for fal to acknowledge the remote cancel.
const CANCEL_WAIT: Duration = Duration::from_millis(800);

fn price(model: &str) -> f64 {
    if let Some(p) = crate::utility_price(model) {
        p
    } else if model.contains("kontext/max") {
        0.08
    } else if model.contains("nano-banana-pro") {
        0.15
    } else if model.contains("nano-banana") {
        0.039
    } else if model.contains("flux-kontext/dev") {
        0.025
    } else if model.contains("qwen-image") {
        0.03
    } else {
        0.04
    }
}

/// The submit body. Models differ in how they take the image: multi-image models want
/// `image_urls`, the others `image_url`; only Qwen has a negative prompt field.
fn request_body(model: &str, input: &EditInput<'_>) -> Value {
    match input.task {
        crate::Task::Matte => {
            // No instruction. BiRefNet's own mask (not its cut-out, whose colours it may
            // have "refined") is what Luminary refines at full resolution.
            let mut body = json!({"image_url": data_uri(input), "output_format": "png"});
            if model.contains("birefnet") {
                body["output_mask"] = json!(true);
                body["refine_foreground"] = json!(false);
                body["operating_resolution"] = json!("1024x1024");
            }
            return body;
        }
        crate::Task::Upscale(scale) => {
            // The factor, PNG out; for ESRGAN the matching Real-ESRGAN weights and no face
            // model (it repaints faces).
            let mut body =
                json!({"image_url": data_uri(input), "scale": scale, "output_format": "png"});
            if model.contains("esrgan") {
                body["model"] = json!(if scale == 2 {
                    "RealESRGAN_x2plus"
                } else {
                    "RealESRGAN_x4plus"
                });
                body["face"] = json!(false);
            }
            return body;
        }
        crate::Task::Edit => {}
    }
    let qwen = model.contains("qwen-image");
    let multi = model.contains("nano-banana")
        || model.ends_with("/multi")
        || model.contains("qwen-image-2");
    let mut body = json!({
        "prompt": if qwen { input.prompt.to_string() } else { prompt_with_avoid(input) },
        "num_images": 1,
        "output_format": "png",
    });
    let uri = data_uri(input);
    if multi {
        body["image_urls"] = json!([uri]);
    } else {
        body["image_url"] = json!(uri);
    }
    if qwen && !input.negative_prompt.trim().is_empty() {
        body["negative_prompt"] = json!(input.negative_prompt.trim());
    }
    body
}

/// The URLs the submit reply hands out.
struct Queued {
    request_id: Option<String>,
    status_url: String,
    response_url: String,
    cancel_url: String,
}

fn auth(key: &str) -> String {
    format!("Key {key}")
}

impl Backend for Fal {
    fn spec(&self) -> Spec {
        Spec {
            name: "fal",
            key_var: Some("FAL_KEY"),
            base_url: "https://queue.fal.run",
            base_suffixes: &[],
            model: "fal-ai/flux-pro/kontext",
            backoff_base: Duration::from_secs(1),
            poll: Duration::from_millis(500),
            price,
        }
    }

    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError> {
        let model = c.model(input);
        let url = c.url(&format!("/{}", model.trim_matches('/')));
        let body = serde_json::to_vec(&request_body(model, input))
            .map_err(|e| job.config(format!("cannot encode the request: {e}")))?;
        job.progress("submitting to fal");
        let queued = retrying(job, true, || {
            let req = c
                .http
                .client
                .post(&url)
                .header(AUTHORIZATION, auth(c.key()))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            match c.http.send(job, req, Some(cancel_orphan(c))) {
                Err(e) => submit_failure(job, e),
                Ok(reply) => classify_submit(c, job, reply),
            }
        })?;
        tracing::debug!(
            engine = "fal",
            request_id = queued.request_id.as_deref().unwrap_or(""),
            "submitted"
        );
        let mut completed = false;
        let result = follow(c, job, &queued, &mut completed);
        if result.is_err() && !completed {
            // Queued jobs are dropped and running ones told to stop, so they stop costing.
            let ok = c.http.fire(
                c.http
                    .client
                    .put(&queued.cancel_url)
                    .header(AUTHORIZATION, auth(c.key())),
                CANCEL_WAIT,
            );
            tracing::info!(
                engine = "fal",
                acknowledged = ok,
                "asked fal to cancel the request"
            );
        }
        result.map(|bytes| Raw {
            bytes,
            request_id: queued.request_id,
        })
    }

    fn health(&self, c: &Common) -> Health {
        // fal has no free key check; the status of a request id that cannot exist answers 401/403
        // for a bad key and 404 otherwise, and costs nothing.
        let app: Vec<&str> = c.s.model.trim_matches('/').splitn(3, '/').take(2).collect();
        let url = c.url(&format!(
            "/{}/requests/00000000-0000-0000-0000-000000000000/status",
            app.join("/")
        ));
        let mut req = c.http.client.get(url);
        if let Some(k) = &c.s.key {
            req = req.header(AUTHORIZATION, auth(k));
        }
        let r = c.http.probe(req).map(|mut reply| {
            if reply.status == 404 {
                reply.status = 200;
            }
            reply
        });
        c.health_from(r, |_| format!("ok: queue reachable for {}", c.s.model))
    }
}

/// If the caller gave up before the submit answered, cancel the job it created.
fn cancel_orphan(c: &Common) -> Orphan {
    let client = c.http.client.clone();
    let key = c.key().to_string();
    Box::new(move |reply: Reply| {
        let cancel = reply.json().and_then(|v| {
            v.get("cancel_url")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if let (true, Some(url)) = (reply.ok(), cancel) {
            let _ = client
                .put(url)
                .header(AUTHORIZATION, auth(&key))
                .timeout(Duration::from_secs(10))
                .send();
        }
    })
}

fn classify_submit(c: &Common, job: &Job<'_>, reply: Reply) -> Step<Queued> {
    let body = reply.json();
    let request_id = reply
        .header("x-fal-request-id")
        .map(str::to_string)
        .or_else(|| {
            body.as_ref()
                .and_then(|v| v.get("request_id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    if reply.ok() {
        let Some(v) = body else {
            return Step::Fail(job.bad_reply(format!(
                "malformed JSON in the submit reply: {}",
                reply.text()
            )));
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        return match (s("status_url"), s("response_url"), s("cancel_url")) {
            (Some(status_url), Some(response_url), Some(cancel_url)) => Step::Done(Queued {
                request_id,
                status_url,
                response_url,
                cancel_url,
            }),
            _ => Step::Fail(
                job.bad_reply("the submit reply lacks status_url/response_url/cancel_url"),
            ),
        };
    }
    let detail = body
        .as_ref()
        .map(describe_detail)
        .unwrap_or_else(|| reply.text());
    let what = format!("HTTP {}: {detail}", reply.status);
    match reply.status {
        401 | 403 => Step::Fail(c.auth_error(what)),
        429 => {
            let after = retry_after(&reply.headers);
            let give_up = EngineError::RateLimited {
                engine: job.engine.into(),
                retry_after_s: after.map(|d| d.as_secs_f64()),
            };
            Step::Retry(Retryable {
                why: "HTTP 429".into(),
                after,
                give_up,
            })
        }
        // Ingress errors without a request id never reached the queue; with one, the job may exist.
        502 | 503 if request_id.is_none() => Step::Retry(Retryable {
            why: format!("HTTP {}", reply.status),
            after: retry_after(&reply.headers),
            give_up: job.unavailable(what),
        }),
        422 if is_refusal(body.as_ref()) => Step::Fail(EngineError::Refused {
            engine: job.engine.into(),
            reason: detail,
        }),
        s if s >= 500 => Step::Fail(job.unavailable(what)),
        _ => Step::Fail(job.config(what)),
    }
}

/// Polls the status URL until COMPLETED, then fetches the result and the image.
fn follow(
    c: &Common,
    job: &Job<'_>,
    q: &Queued,
    completed: &mut bool,
) -> Result<Vec<u8>, EngineError> {
    let mut stage: &'static str = "queue";
    let status_url = with_query(&q.status_url, "logs=0");
    loop {
        job.sleep(c.s.poll)
            .map_err(|why| job.interrupted(why, stage))?;
        let reply = retrying(job, false, || {
            let r = c.http.send(
                job,
                c.http
                    .client
                    .get(&status_url)
                    .header(AUTHORIZATION, auth(c.key())),
                None,
            );
            get_step(job, r, stage, &[408, 429, 500, 502, 503, 504])
        })?;
        if matches!(reply.status, 401 | 403) {
            return Err(c.auth_error(format!("HTTP {} on the status URL", reply.status)));
        }
        if !(reply.status == 200 || reply.status == 202) {
            return Err(job.unavailable(format!(
                "status URL answered HTTP {}: {}",
                reply.status,
                reply.text()
            )));
        }
        let v = reply.json().ok_or_else(|| {
            job.bad_reply(format!(
                "malformed JSON from the status URL: {}",
                reply.text()
            ))
        })?;
        match v.get("status").and_then(Value::as_str).unwrap_or("") {
            "IN_QUEUE" => {
                let pos = v.get("queue_position").and_then(Value::as_u64);
                job.progress(&match pos {
                    Some(p) => format!("queued (position {p})"),
                    None => "queued".into(),
                });
            }
            "IN_PROGRESS" => {
                stage = "running";
                job.progress("running");
            }
            "COMPLETED" => {
                *completed = true;
                break;
            }
            other => {
                return Err(job.bad_reply(format!("unknown job status \"{}\"", clip(other, 40))))
            }
        }
    }

    let reply = retrying(job, false, || {
        let r = c.http.send(
            job,
            c.http
                .client
                .get(&q.response_url)
                .header(AUTHORIZATION, auth(c.key())),
            None,
        );
        get_step(job, r, "result", &[408, 429, 502, 503, 504])
    })?;
    let body = reply.json();
    if !reply.ok() {
        let detail = body
            .as_ref()
            .map(describe_detail)
            .unwrap_or_else(|| reply.text());
        return Err(match reply.status {
            401 | 403 => c.auth_error(format!("HTTP {} on the result URL", reply.status)),
            422 if is_refusal(body.as_ref()) => EngineError::Refused {
                engine: job.engine.into(),
                reason: detail,
            },
            s if s >= 500 => job.unavailable(format!("the model failed: HTTP {s}: {detail}")),
            s => job.config(format!(
                "the model rejected the request: HTTP {s}: {detail}"
            )),
        });
    }
    let v = body
        .ok_or_else(|| job.bad_reply(format!("malformed JSON in the result: {}", reply.text())))?;
    if v.get("has_nsfw_concepts")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_bool() == Some(true)))
    {
        return Err(EngineError::Refused {
            engine: job.engine.into(),
            reason: "the output was flagged by fal's content checker (has_nsfw_concepts)".into(),
        });
    }
    // A segmentation model's mask first (`output_mask`), else the picture.
    let url = v
        .get("mask_image")
        .filter(|m| m.get("url").is_some_and(Value::is_string))
        .or_else(|| {
            v.get("images")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
        })
        .or_else(|| v.get("image"))
        .and_then(|img| img.get("url"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            let text = v
                .get("description")
                .and_then(Value::as_str)
                .map(|t| format!(": \"{}\"", clip(t, 150)))
                .unwrap_or_default();
            job.bad_reply(format!("no image in the result{text}"))
        })?;
    download(&c.http, job, url)
}

/// fal errors carry `detail` as a list of `{loc, msg, type}` or as a plain string.
fn describe_detail(v: &Value) -> String {
    match v.get("detail") {
        Some(Value::String(s)) => clip(s, 300),
        Some(Value::Array(items)) => clip(
            &items
                .iter()
                .map(|i| {
                    let msg = i.get("msg").and_then(Value::as_str).unwrap_or("");
                    let ty = i.get("type").and_then(Value::as_str).unwrap_or("");
                    if ty.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{msg} ({ty})")
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            300,
        ),
        _ => clip(&v.to_string(), 300),
    }
}

fn is_refusal(v: Option<&Value>) -> bool {
    let Some(Value::Array(items)) = v.and_then(|v| v.get("detail")) else {
        return false;
    };
    items.iter().any(|i| {
        i.get("type").and_then(Value::as_str) == Some("content_policy_violation")
            || i.get("msg")
                .and_then(Value::as_str)
                .is_some_and(|m| m.contains("content checker"))
    })
}
