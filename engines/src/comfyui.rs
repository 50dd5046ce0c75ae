//! Local ComfyUI: upload the preview, queue a workflow with the preview and the prompt
//! substituted in, poll the history until the prompt finishes, fetch the image via `/view`.
//!
//! # Workflows and placeholders
//!
//! `[engines.comfyui] workflow` names an API-format workflow ("Save (API Format)" in ComfyUI):
//! a map `node_id → {class_type, inputs}`. Before queueing, Luminary
//! - sets `inputs.image` of every `LoadImage` node to the uploaded file's name, and replaces
//!   `{{image}}` in any string input with it;
//! - replaces `{{prompt}}` in any string input (typically a `CLIPTextEncode` node's `text`) with
//!   the preset's prompt — the workflow must contain it;
//! - replaces `{{negative_prompt}}` with the negative prompt if the workflow has that
//!   placeholder; otherwise the negative prompt is appended to the prompt as "Avoid: …".
//!
//! The built-in default (used without `workflow`) is ComfyUI's FLUX.1 Kontext [dev] edit graph:
//! `UNETLoader` (`flux1-dev-kontext_fp8_scaled.safetensors`) + `DualCLIPLoader` (`clip_l`,
//! `t5xxl_fp8_e4m3fn_scaled`, type `flux`) + `VAELoader` (`ae.safetensors`); `LoadImage` →
//! `FluxKontextImageScale` → `VAEEncode`; `CLIPTextEncode("{{prompt}}")` → `ReferenceLatent` →
//! `FluxGuidance(2.5)`; `ConditioningZeroOut` as negative; `KSampler` (euler/simple, 20 steps,
//! cfg 1, denoise 1, seed 0) → `VAEDecode` → `SaveImage("luminary")`. The model files must be
//! installed in ComfyUI's model folders. Kontext picks its own output size near the input's
//! aspect ratio, which the reply check allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::check::{extension, prompt_with_avoid};
use crate::config::{ProviderConfig, Spec};
use crate::engine::{Backend, Common, Raw};
use crate::error::clip;
use crate::http::{Job, Reply};
use crate::retry::{get_step, retrying, submit_failure, Step};
use crate::{EditInput, EngineError, Health};

/// The built-in workflow; see the module documentation.
pub(crate) const DEFAULT_WORKFLOW: &str = include_str!("comfyui_workflow.json");

const CANCEL_WAIT: Duration = Duration::from_millis(800);

pub(crate) struct ComfyUi {
    workflow: Value,
    /// Whether the workflow handles the negative prompt itself.
    has_negative: bool,
    client_id: String,
}

fn cfg_error(detail: String) -> EngineError {
    EngineError::Config {
        engine: "comfyui".into(),
        detail,
    }
}

impl ComfyUi {
    /// Reads and checks the workflow once, so a broken file is reported at startup.
    pub fn load(cfg: &ProviderConfig) -> Result<ComfyUi, EngineError> {
        let (text, source) = match &cfg.workflow {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| {
                    cfg_error(format!("cannot read the workflow {}: {e}", path.display()))
                })?,
                path.display().to_string(),
            ),
            None => (
                DEFAULT_WORKFLOW.to_string(),
                "the built-in workflow".to_string(),
            ),
        };
        let workflow = parse_workflow(&text).map_err(|e| cfg_error(format!("{source}: {e}")))?;
        let has_negative = text.contains("{{negative_prompt}}");
        static N: AtomicU64 = AtomicU64::new(0);
        let client_id = format!(
            "luminary-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Ok(ComfyUi {
            workflow,
            has_negative,
            client_id,
        })
    }
}

/// Checks that `text` is an API-format workflow with somewhere to put the image and the prompt.
pub(crate) fn parse_workflow(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    // Some tools wrap the graph as {"prompt": {...}}, the body of POST /prompt.
    let v = match v.get("prompt") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => v,
    };
    let Some(nodes) = v.as_object() else {
        return Err("expected a JSON object of nodes".into());
    };
    if v.get("nodes").is_some_and(Value::is_array) && v.get("links").is_some() {
        return Err("this is a UI-format workflow; export it with \"Save (API Format)\"".into());
    }
    if nodes.values().any(|n| n.get("class_type").is_none()) {
        return Err("every node needs a class_type (is this an API-format workflow?)".into());
    }
    if !text.contains("{{prompt}}") {
        return Err("no string input contains the {{prompt}} placeholder".into());
    }
    let loads_image = nodes
        .values()
        .any(|n| n.get("class_type").and_then(Value::as_str) == Some("LoadImage"));
    if !loads_image && !text.contains("{{image}}") {
        return Err("no LoadImage node and no {{image}} placeholder for the photo".into());
    }
    Ok(v)
}

/// The workflow with the uploaded image and the prompts put in; see the module documentation.
pub(crate) fn substitute(workflow: &Value, image: &str, prompt: &str, negative: &str) -> Value {
    fn walk(v: &mut Value, image: &str, prompt: &str, negative: &str) {
        match v {
            Value::String(s) if s.contains("{{") => {
                *s = s
                    .replace("{{image}}", image)
                    .replace("{{prompt}}", prompt)
                    .replace("{{negative_prompt}}", negative);
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, image, prompt, negative)),
            Value::Object(o) => o
                .values_mut()
                .for_each(|x| walk(x, image, prompt, negative)),
            _ => {}
        }
    }
    let mut wf = workflow.clone();
    if let Some(nodes) = wf.as_object_mut() {
        for node in nodes.values_mut() {
            if node.get("class_type").and_then(Value::as_str) == Some("LoadImage") {
                if let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut) {
                    inputs.insert("image".into(), json!(image));
                }
            }
            if let Some(inputs) = node.get_mut("inputs") {
                walk(inputs, image, prompt, negative);
            }
        }
    }
    wf
}

impl Backend for ComfyUi {
    fn spec(&self) -> Spec {
        Spec {
            name: "comfyui",
            key_var: None,
            base_url: "http://127.0.0.1:8188",
            base_suffixes: &[],
            model: "workflow",
            backoff_base: Duration::from_millis(500),
            poll: Duration::from_millis(250),
            price: |_| 0.0,
        }
    }

    fn run(&self, c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<Raw, EngineError> {
        job.progress("uploading to comfyui");
        let name = upload(c, job, input)?;
        let (prompt, negative) = if self.has_negative {
            (input.prompt.to_string(), input.negative_prompt.to_string())
        } else {
            (prompt_with_avoid(input), String::new())
        };
        let wf = substitute(&self.workflow, &name, &prompt, &negative);
        let body = serde_json::to_vec(&json!({"prompt": wf, "client_id": self.client_id}))
            .map_err(|e| job.config(format!("cannot encode the prompt: {e}")))?;
        let prompt_id = retrying(job, true, || {
            let req = c
                .http
                .client
                .post(c.url("/prompt"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            match c.http.send(job, req, None) {
                // Only a prompt that certainly did not arrive is re-sent: a second copy would
                // run the GPU twice.
                Err(e) => submit_failure(job, e),
                Ok(reply) => classify_prompt(c, job, reply),
            }
        })?;
        let mut finished = false;
        let result = follow(c, job, &prompt_id, &mut finished);
        if result.is_err() && !finished {
            cancel(c, &prompt_id);
        }
        result.map(|bytes| Raw {
            bytes,
            request_id: Some(prompt_id),
        })
    }

    fn health(&self, c: &Common) -> Health {
        c.health_from(
            c.http.probe(c.http.client.get(c.url("/system_stats"))),
            |reply| {
                let v = reply.json().unwrap_or(Value::Null);
                let version = v
                    .pointer("/system/comfyui_version")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown version");
                let device = v
                    .pointer("/devices/0/name")
                    .and_then(Value::as_str)
                    .unwrap_or("no device reported");
                format!("ok: ComfyUI {version} on {}", clip(device, 80))
            },
        )
    }
}

fn upload(c: &Common, job: &Job<'_>, input: &EditInput<'_>) -> Result<String, EngineError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let file_name = format!(
        "luminary-{}-{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        extension(input.mime)
    );
    let reply = retrying(job, false, || {
        let part = match Part::bytes(input.image.to_vec())
            .file_name(file_name.clone())
            .mime_str(input.mime)
        {
            Ok(p) => p,
            Err(e) => {
                return Step::Fail(job.config(format!("bad input mime \"{}\": {e}", input.mime)))
            }
        };
        // `overwrite` makes a re-sent upload idempotent, so transport errors may be retried.
        let form = Form::new()
            .part("image", part)
            .text("type", "input")
            .text("overwrite", "true");
        let r = c.http.send(
            job,
            c.http.client.post(c.url("/upload/image")).multipart(form),
            None,
        );
        get_step(job, r, "upload", &[500, 502, 503, 504])
    })?;
    if !reply.ok() {
        return Err(job.config(format!(
            "uploading the image failed: HTTP {}: {}",
            reply.status,
            reply.text()
        )));
    }
    let v = reply.json().ok_or_else(|| {
        job.bad_reply(format!(
            "malformed JSON from /upload/image: {}",
            reply.text()
        ))
    })?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| job.bad_reply("/upload/image did not return a name"))?;
    // LoadImage addresses files in subfolders as "subfolder/name".
    Ok(match v.get("subfolder").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => format!("{sub}/{name}"),
        _ => name.to_string(),
    })
}

fn classify_prompt(c: &Common, job: &Job<'_>, reply: Reply) -> Step<String> {
    let body = reply.json();
    if reply.ok() {
        return match (
            &body,
            body.as_ref()
                .and_then(|v| v.get("prompt_id"))
                .and_then(Value::as_str),
        ) {
            (_, Some(id)) => Step::Done(id.to_string()),
            (None, _) => Step::Fail(job.bad_reply(format!(
                "malformed JSON in the /prompt reply: {}",
                reply.text()
            ))),
            (Some(_), None) => Step::Fail(job.bad_reply(format!(
                "no prompt_id in the /prompt reply: {}",
                reply.text()
            ))),
        };
    }
    if reply.status == 400 {
        let v = body.unwrap_or(Value::Null);
        let err = v.get("error");
        let message = err
            .and_then(|e| {
                e.get("message")
                    .and_then(Value::as_str)
                    .or_else(|| e.as_str())
            })
            .unwrap_or("invalid workflow");
        let mut details: Vec<String> = Vec::new();
        if let Some(d) = err
            .and_then(|e| e.get("details"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            details.push(d.to_string());
        }
        for (node, ne) in v
            .get("node_errors")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let class = ne.get("class_type").and_then(Value::as_str).unwrap_or("?");
            for e in ne
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                let det = e.get("details").and_then(Value::as_str).unwrap_or("");
                details.push(format!("node {node} ({class}): {msg} {det}"));
            }
        }
        return Step::Fail(job.config(clip(
            &format!(
                "the workflow was rejected: {message}; {}",
                details.join("; ")
            ),
            400,
        )));
    }
    if matches!(reply.status, 401 | 403) {
        return Step::Fail(c.auth_error(format!("HTTP {}", reply.status)));
    }
    Step::Fail(job.unavailable(format!(
        "/prompt answered HTTP {}: {}",
        reply.status,
        reply.text()
    )))
}

fn follow(
    c: &Common,
    job: &Job<'_>,
    prompt_id: &str,
    finished: &mut bool,
) -> Result<Vec<u8>, EngineError> {
    let mut stage: &'static str = "queue";
    let history_url = c.url(&format!("/history/{prompt_id}"));
    let entry = loop {
        job.sleep(c.s.poll)
            .map_err(|why| job.interrupted(why, stage))?;
        let reply = retrying(job, false, || {
            let r = c.http.send(job, c.http.client.get(&history_url), None);
            get_step(job, r, stage, &[500, 502, 503, 504])
        })?;
        if !reply.ok() {
            return Err(job.unavailable(format!(
                "/history answered HTTP {}: {}",
                reply.status,
                reply.text()
            )));
        }
        let v = reply.json().ok_or_else(|| {
            job.bad_reply(format!("malformed JSON from /history: {}", reply.text()))
        })?;
        // `{}` until the prompt is done, then `{prompt_id: entry}`.
        if let Some(entry) = v.get(prompt_id) {
            *finished = true;
            break entry.clone();
        }
        // Where is it? Only for the progress line, so failures are ignored.
        if let Ok(Reply { body, .. }) = c.http.send(job, c.http.client.get(c.url("/queue")), None) {
            if let Ok(q) = serde_json::from_slice::<Value>(&body) {
                match queue_position(&q, prompt_id) {
                    Some(0) => {
                        stage = "running";
                        job.progress("running");
                    }
                    Some(p) => job.progress(&format!("queued (position {p})")),
                    None => {}
                }
            }
        }
    };

    let status = entry.get("status");
    if status
        .and_then(|s| s.get("status_str"))
        .and_then(Value::as_str)
        == Some("error")
    {
        let messages = status
            .and_then(|s| s.get("messages"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in &messages {
            let (Some(event), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
                continue;
            };
            let s = |k: &str| {
                data.get(k)
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default()
            };
            if event == "execution_error" {
                return Err(job.unavailable(format!(
                    "the workflow failed in node {} ({}): {}",
                    s("node_id"),
                    s("node_type"),
                    clip(&s("exception_message"), 300)
                )));
            }
            if event == "execution_interrupted" {
                return Err(job.unavailable("the prompt was interrupted on the ComfyUI server"));
            }
        }
        return Err(job.unavailable("the workflow failed (no error message in the history)"));
    }

    // Prefer saved outputs over previews; nodes in id order so the choice is stable.
    let outputs = entry
        .get("outputs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut ids: Vec<&String> = outputs.keys().collect();
    ids.sort_by_key(|k| (k.parse::<u64>().unwrap_or(u64::MAX), (*k).clone()));
    let images: Vec<&Value> = ids
        .iter()
        .filter_map(|k| outputs[k.as_str()].get("images").and_then(Value::as_array))
        .flatten()
        .collect();
    let pick = images
        .iter()
        .find(|i| i.get("type").and_then(Value::as_str) == Some("output"))
        .or_else(|| images.first())
        .ok_or_else(|| {
            let kinds: Vec<String> = outputs
                .values()
                .filter_map(Value::as_object)
                .flat_map(|o| o.keys().cloned())
                .collect();
            job.bad_reply(format!(
                "the workflow produced no image (its outputs hold: {})",
                if kinds.is_empty() {
                    "nothing".into()
                } else {
                    kinds.join(", ")
                }
            ))
        })?;
    let q = |k: &str| {
        pick.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (filename, subfolder, kind) = (q("filename"), q("subfolder"), q("type"));
    job.progress("downloading the result");
    let reply = retrying(job, false, || {
        let req = c.http.client.get(c.url("/view")).query(&[
            ("filename", &filename),
            ("subfolder", &subfolder),
            ("type", &kind),
        ]);
        get_step(
            job,
            c.http.send(job, req, None),
            "download",
            &[500, 502, 503, 504],
        )
    })?;
    if !reply.ok() {
        return Err(job.bad_reply(format!(
            "/view answered HTTP {} for {filename}",
            reply.status
        )));
    }
    Ok(reply.body)
}

/// 0 when running, n ≥ 1 when n-th in line, `None` when not in the queue (yet, or any more).
fn queue_position(q: &Value, prompt_id: &str) -> Option<usize> {
    let id_of = |item: &Value| item.get(1).and_then(Value::as_str).map(str::to_string);
    let running = q
        .get("queue_running")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if running
        .iter()
        .any(|i| id_of(i).as_deref() == Some(prompt_id))
    {
        return Some(0);
    }
    let mut pending = q
        .get("queue_pending")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    pending.sort_by(|a, b| {
        let n = |v: &Value| v.get(0).and_then(Value::as_f64).unwrap_or(0.0);
        n(a).total_cmp(&n(b))
    });
    pending
        .iter()
        .position(|i| id_of(i).as_deref() == Some(prompt_id))
        .map(|p| p + 1)
}

/// Stops our prompt only: interrupts it if it is the running one (a bare `/interrupt` on an
/// older ComfyUI would stop whatever runs, possibly someone else's prompt), or removes it from
/// the queue if it is still waiting.
fn cancel(c: &Common, prompt_id: &str) {
    let position = c
        .http
        .client
        .get(c.url("/queue"))
        .timeout(CANCEL_WAIT)
        .send()
        .ok()
        .and_then(|r| r.json::<Value>().ok())
        .and_then(|q| queue_position(&q, prompt_id));
    let ok = match position {
        Some(0) => c.http.fire(
            c.http
                .client
                .post(c.url("/interrupt"))
                .json(&json!({"prompt_id": prompt_id})),
            CANCEL_WAIT,
        ),
        _ => c.http.fire(
            c.http
                .client
                .post(c.url("/queue"))
                .json(&json!({"delete": [prompt_id]})),
            CANCEL_WAIT,
        ),
    };
    tracing::info!(
        engine = "comfyui",
        prompt_id,
        running = position == Some(0),
        acknowledged = ok,
        "asked ComfyUI to cancel the prompt"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_workflow_is_valid_and_substitutes() {
        let wf = parse_workflow(DEFAULT_WORKFLOW).unwrap();
        let out = substitute(&wf, "in.png", "warm it up", "");
        assert_eq!(out["4"]["inputs"]["image"], "in.png");
        assert_eq!(out["7"]["inputs"]["text"], "warm it up");
        assert!(!out.to_string().contains("{{"));
    }

    #[test]
    fn workflow_errors_are_explained() {
        assert!(parse_workflow("{").unwrap_err().contains("JSON"));
        assert!(
            parse_workflow(r#"{"1":{"class_type":"LoadImage","inputs":{"image":"x"}}}"#)
                .unwrap_err()
                .contains("{{prompt}}")
        );
        assert!(parse_workflow(r#"{"nodes":[],"links":[]}"#)
            .unwrap_err()
            .contains("API Format"));
        let custom = r#"{"prompt":{"a":{"class_type":"MyLoader","inputs":{"path":"{{image}}"}},"b":{"class_type":"T","inputs":{"t":"{{prompt}} / {{negative_prompt}}"}}}}"#;
        let wf = parse_workflow(custom).unwrap();
        let out = substitute(&wf, "f.png", "p", "n");
        assert_eq!(out["a"]["inputs"]["path"], "f.png");
        assert_eq!(out["b"]["inputs"]["t"], "p / n");
    }

    #[test]
    fn queue_positions() {
        let q = json!({"queue_running": [[3, "a", {}, {}, []]], "queue_pending": [[5, "c", {}, {}, []], [4, "b", {}, {}, []]]});
        assert_eq!(queue_position(&q, "a"), Some(0));
        assert_eq!(queue_position(&q, "b"), Some(1));
        assert_eq!(queue_position(&q, "c"), Some(2));
        assert_eq!(queue_position(&q, "z"), None);
    }
}
