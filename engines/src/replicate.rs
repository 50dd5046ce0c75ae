//! Replicate predictions: create with `Prefer: wait` (which may still answer with a running
//! prediction), poll `urls.get` until terminal, download the output at once (it is deleted after
//! an hour). `Cancel-After` is set to the total timeout as a cost guard: if the daemon dies, the
//! prediction still stops.

use std::time::Duration;

use serde_json::{json, Value};

use crate::check::{data_uri, download, prompt_with_avoid};
use crate::config::Spec;
use crate::engine::{Backend, Common, Raw};
use crate::error::clip;
use crate::http::{Job, Orphan, Reply};
use crate::retry::{get_step, retry_after, retrying, submit_failure, Retryable, Step};
use crate::{EditInput, EngineError, Health};

pub(crate) struct Replicate;

const CANCEL_WAIT: Duration = Duration::from_millis(800);

fn price(model: &str) -> f64 {
    if let Some(p) = crate::utility_price(model) {
        p
    } else if model.contains("kontext-max") {
        0.08
    } else if model.contains("kontext-dev") {
        0.025
    } else if model.contains("qwen-image") {
        0.03
    } else {
        0.04
    }
}

/// The model's input object: FLUX Kontext takes `input_image`, Qwen edit models `image` (the
/// "plus" variant as an array). Negative prompts only exist as text here.
fn model_input(model: &str, input: &EditInput<'_>) -> Value {
    let uri = data_uri(input);
    match input.task {
        // Background removal models take the image alone (and answer an RGBA cut-out or a
        // mask, which Luminary reads either way).
        crate::Task::Matte => return json!({ "image": uri }),
        crate::Task::Upscale(scale) => {
            return json!({ "image": uri, "scale": scale, "face_enhance": false })
        }
        crate::Task::Edit => {}
    }
    let mut v = json!({
        "prompt": prompt_with_avoid(input),
        "aspect_ratio": "match_input_image",
        "output_format": "png",
    });
    if model.contains("qwen-image-edit-plus") {
        v["image"] = json!([uri]);
    } else if model.contains("qwen") {
        v["image"] = json!(uri);
    } else {
        v["input_image"] = json!(uri);
    }
    v
}

/// The fields of a prediction object this client uses.
struct Prediction {
    id: Option<String>,
    status: String,
    get_url: Option<String>,
    cancel_url: Option<String>,
    output: Value,
    error: Option<String>,
}

fn parse_prediction(v: &Value) -> Prediction {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    Prediction {
        id: s(v.get("id")),
        status: s(v.get("status")).unwrap_or_default(),
        get_url: s(v.get("urls").and_then(|u| u.get("get"))),
        cancel_url: s(v.get("urls").and_then(|u| u.get("cancel"))),
        output: v.get("output").cloned().unwrap_or(Value::Null),
        error: v.get("error").and_then(|e| {
            if e.is_null() {
                None
            } else {
                Some(
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string()),
                )
            }
        }),
    }
}

impl Backend for Replicate {
    fn spec(&self) -> Spec {
        Spec {
            name: "replicate",
            key_var: Some("REPLICATE_API_TOKEN"),
            base_url: "https://api.replicate.com",
            base_suffixes: &["/v1"],
            model: "black-forest-labs/flux-kontext-pro",
            backoff_base: Duration::from_millis(500),
            poll: Duration::from_millis(500),
            price,
        }
    }

    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError> {
        let model = c.model(input);
        let (url, body) = match model.split_once(':') {
            Some((_, version)) => (
                c.url("/v1/predictions"),
                json!({"version": version, "input": model_input(model, input)}),
            ),
            None => (
                c.url(&format!("/v1/models/{model}/predictions")),
                json!({"input": model_input(model, input)}),
            ),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| job.config(format!("cannot encode the request: {e}")))?;
        // Block server-side up to 60 s, but end before our own request timeout would.
        let wait = (c.s.request_timeout.as_secs_f64() - 5.0).clamp(1.0, 60.0) as u64;
        let cancel_after = c.s.total_timeout.as_secs_f64().ceil().max(1.0) as u64;
        job.progress("submitting to replicate");
        let pred = retrying(job, true, || {
            let req = c
                .http
                .client
                .post(&url)
                .bearer_auth(c.key())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Prefer", format!("wait={wait}"))
                .header("Cancel-After", format!("{cancel_after}s"))
                .body(body.clone());
            match c.http.send(job, req, Some(cancel_orphan(c))) {
                Err(e) => submit_failure(job, e),
                Ok(reply) => classify_create(c, job, reply),
            }
        })?;
        let mut pred = pred;
        let result = follow(c, job, &mut pred);
        if let (Err(_), false, Some(cancel)) =
            (&result, is_terminal(&pred.status), &pred.cancel_url)
        {
            // Stops (and stops billing) a prediction we no longer wait for.
            let ok = c
                .http
                .fire(c.http.client.post(cancel).bearer_auth(c.key()), CANCEL_WAIT);
            tracing::info!(
                engine = "replicate",
                acknowledged = ok,
                "asked replicate to cancel the prediction"
            );
        }
        result.map(|bytes| Raw {
            bytes,
            request_id: pred.id.clone(),
        })
    }

    fn health(&self, c: &Common) -> Health {
        let name = c.s.model.split(':').next().unwrap_or_default();
        let mut req = c.http.client.get(c.url(&format!("/v1/models/{name}")));
        if let Some(k) = &c.s.key {
            req = req.bearer_auth(k);
        }
        c.health_from(c.http.probe(req), |_| {
            format!("ok: model {name} is available")
        })
    }
}

fn cancel_orphan(c: &Common) -> Orphan {
    let client = c.http.client.clone();
    let key = c.key().to_string();
    Box::new(move |reply: Reply| {
        let pred = reply.json().map(|v| parse_prediction(&v));
        if let (
            true,
            Some(Prediction {
                cancel_url: Some(url),
                ..
            }),
        ) = (reply.ok(), pred)
        {
            let _ = client
                .post(url)
                .bearer_auth(&key)
                .timeout(Duration::from_secs(10))
                .send();
        }
    })
}

/// Replicate errors are problem-style JSON: `{title, detail, status}`.
fn describe(reply: &Reply) -> String {
    match reply.json() {
        Some(v) => {
            let title = v.get("title").and_then(Value::as_str).unwrap_or("");
            let detail = v.get("detail").and_then(Value::as_str).unwrap_or("");
            let text = [title, detail]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(": ");
            if text.is_empty() {
                reply.text()
            } else {
                clip(&text, 300)
            }
        }
        None => reply.text(),
    }
}

fn classify_create(c: &Common, job: &Job<'_>, reply: Reply) -> Step<Prediction> {
    let body = reply.json();
    if reply.ok() {
        let Some(v) = body else {
            return Step::Fail(job.bad_reply(format!(
                "malformed JSON in the create reply: {}",
                reply.text()
            )));
        };
        let p = parse_prediction(&v);
        if p.get_url.is_none() && !is_terminal(&p.status) {
            return Step::Fail(job.bad_reply("the prediction has no urls.get to poll"));
        }
        return Step::Done(p);
    }
    let has_id = body.as_ref().and_then(|v| v.get("id")).is_some();
    let what = format!("HTTP {}: {}", reply.status, describe(&reply));
    match reply.status {
        401 | 403 => Step::Fail(c.auth_error(what)),
        402 => Step::Fail(job.config(format!(
            "{what}; add credit at replicate.com/account/billing"
        ))),
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
        502 | 503 if !has_id => Step::Retry(Retryable {
            why: format!("HTTP {}", reply.status),
            after: retry_after(&reply.headers),
            give_up: job.unavailable(what),
        }),
        s if s >= 500 => Step::Fail(job.unavailable(what)),
        _ => Step::Fail(job.config(what)),
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled" | "aborted")
}

fn follow(c: &Common, job: &Job<'_>, p: &mut Prediction) -> Result<Vec<u8>, EngineError> {
    let mut stage: &'static str;
    loop {
        match p.status.as_str() {
            "succeeded" => break,
            "failed" => {
                let err = p.error.clone().unwrap_or_else(|| "no error given".into());
                return Err(
                    if err.contains("E005")
                        || err.contains("flagged as sensitive")
                        || err.contains("NSFW")
                    {
                        EngineError::Refused {
                            engine: job.engine.into(),
                            reason: clip(&err, 300),
                        }
                    } else {
                        job.unavailable(format!("the prediction failed: {}", clip(&err, 300)))
                    },
                );
            }
            "canceled" | "aborted" => {
                return Err(job.unavailable(format!(
                "the prediction was {} on Replicate's side (Cancel-After deadline or the web UI)",
                p.status
            )))
            }
            "starting" => {
                stage = "queue";
                job.progress("queued");
            }
            "processing" => {
                stage = "running";
                job.progress("running");
            }
            other => {
                return Err(
                    job.bad_reply(format!("unknown prediction status \"{}\"", clip(other, 40)))
                )
            }
        }
        let Some(get_url) = p.get_url.clone() else {
            return Err(job.bad_reply("the prediction has no urls.get to poll"));
        };
        job.sleep(c.s.poll)
            .map_err(|why| job.interrupted(why, stage))?;
        let reply = retrying(job, false, || {
            let r = c
                .http
                .send(job, c.http.client.get(&get_url).bearer_auth(c.key()), None);
            get_step(job, r, stage, &[408, 429, 500, 502, 503, 504])
        })?;
        if matches!(reply.status, 401 | 403) {
            return Err(c.auth_error(format!("HTTP {} polling the prediction", reply.status)));
        }
        if !reply.ok() {
            return Err(job.unavailable(format!(
                "polling the prediction: HTTP {}: {}",
                reply.status,
                describe(&reply)
            )));
        }
        let v = reply.json().ok_or_else(|| {
            job.bad_reply(format!(
                "malformed JSON polling the prediction: {}",
                reply.text()
            ))
        })?;
        let next = parse_prediction(&v);
        *p = Prediction {
            cancel_url: next.cancel_url.or(p.cancel_url.take()),
            get_url: next.get_url.or(p.get_url.take()),
            ..next
        };
    }
    // `output` is a URL string for some models and an array of URLs for others.
    let first = match &p.output {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(|x| x.as_str().map(str::to_string)),
        _ => None,
    };
    let url = first.ok_or_else(|| {
        job.bad_reply(format!(
            "the prediction succeeded without an output URL (output: {})",
            clip(&p.output.to_string(), 100)
        ))
    })?;
    download(&c.http, job, &url)
}
