//! Mock of Replicate predictions: Bearer auth, `Prefer: wait` honoured up to a short cap (so
//! the create may return `starting`/`processing` and the client must poll `urls.get`), `output`
//! as a string for odd-numbered predictions and an array for even ones, E005 refusals as
//! `failed` predictions, cancel via `urls.cancel`. Each model's image input is checked under
//! its own name; Qwen image edit models "stage" the room (`stage.rs`), the others grade.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::answers::grade_bytes;
use super::shared::{
    bearer, run_time, secs, Fault, JobState, MockJob, Recorded, Resp, Shared, TEST_KEY,
};

/// The version of `men1scus/birefnet` the mock hosts (the one Luminary's cut-out prefers).
pub(crate) const BIREFNET_VERSION: &str =
    "f74986db0355b58403ed20963af156525e2891ea3c2d499bfbfb2a28cd87c5d7";

/// The longest the mock blocks a create for `Prefer: wait` (the real service: up to 60 s).
pub(crate) const WAIT_CAP: Duration = Duration::from_secs(1);

pub(crate) fn handle(shared: &Shared, rec: &Recorded) -> Resp {
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    if segs.first() == Some(&"files") && rec.method == "GET" {
        return super::fal::serve(shared, segs.get(1).copied().unwrap_or(""));
    }
    if bearer(rec) != Some(TEST_KEY) {
        return Resp::json(
            401,
            &json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
        );
    }
    match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "models", owner, name, "predictions"]) => {
            create(shared, rec, &format!("{owner}/{name}"))
        }
        ("POST", ["v1", "predictions"]) => {
            let version = rec
                .json
                .as_ref()
                .and_then(|v| v.get("version"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            create(shared, rec, &version)
        }
        ("GET", ["v1", "predictions", id]) => {
            let jobs = shared.jobs.lock().unwrap();
            match jobs.get(*id) {
                Some(job) => Resp::json(200, &prediction(shared, id, job)),
                None => Resp::json(
                    404,
                    &json!({"title": "Not found", "detail": "Prediction not found", "status": 404}),
                ),
            }
        }
        ("POST", ["v1", "predictions", id, "cancel"]) => {
            let mut jobs = shared.jobs.lock().unwrap();
            match jobs.get_mut(*id) {
                Some(job) => {
                    if job.cancel() {
                        shared.cancels.fetch_add(1, Ordering::SeqCst);
                    }
                    Resp::json(200, &prediction(shared, id, job))
                }
                None => Resp::json(
                    404,
                    &json!({"title": "Not found", "detail": "Prediction not found", "status": 404}),
                ),
            }
        }
        ("GET", ["v1", "models", owner, name]) => Resp::json(
            200,
            &json!({"url": format!("https://replicate.com/{owner}/{name}"), "owner": owner, "name": name, "visibility": "public",
                    "description": "mock model", "latest_version": null}),
        ),
        _ => Resp::json(404, &json!({"title": "Not found", "status": 404})),
    }
}

fn create(shared: &Shared, rec: &Recorded, model: &str) -> Resp {
    let invalid = |detail: &str| {
        Resp::json(
            422,
            &json!({"title": "Input validation failed", "detail": detail, "status": 422}),
        )
    };
    let Some(input) = rec.json.as_ref().and_then(|v| v.get("input")) else {
        return invalid("- input is required");
    };
    // A version id names its model only to the service: the mock knows BiRefNet's.
    let matting = super::answers::hosts_matting(model) || model == BIREFNET_VERSION;
    let upscaling = super::answers::hosts_upscaler(model);
    if !matting
        && !upscaling
        && input
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return invalid("- input: prompt is required");
    }
    // Each model names its image input its own way (and validates its inputs): FLUX
    // Kontext `input_image`, Qwen image edit `image` (an array for the "plus" variant).
    let qwen = model.contains("qwen-image-edit");
    let field = if qwen || matting || upscaling {
        "image"
    } else {
        "input_image"
    };
    let uri = input.get(field).and_then(|v| {
        v.as_str()
            .or_else(|| v.as_array().and_then(|a| a.first()).and_then(Value::as_str))
    });
    let Some(image) = uri.and_then(super::answers::from_data_uri) else {
        return invalid(&format!("- input.{field}: expected a data: URI"));
    };
    if let Some(f) = input.get("output_format") {
        if !["webp", "jpg", "png"].contains(&f.as_str().unwrap_or("")) {
            return invalid("- input.output_format: must be one of webp, jpg, png");
        }
    }

    let fault = shared.next_fault();
    match &fault {
        Some(Fault::RateLimit { retry_after }) => {
            return Resp::json(
                429,
                &json!({"title": "Request was throttled.", "detail": format!("Request was throttled. Your rate limit resets in ~{}s.", secs(retry_after).ceil()), "status": 429}),
            )
            .header("Retry-After", retry_after);
        }
        Some(Fault::Unavailable503) => {
            return Resp::raw(
                503,
                "text/html",
                b"<html><body>503 Service Temporarily Unavailable</body></html>".to_vec(),
            )
        }
        _ => {}
    }
    // A staging model furnishes the room; the others grade the picture.
    let square = matches!(fault, Some(Fault::WrongAspect));
    // A background remover answers the RGBA cut-out.
    let output = if upscaling {
        let scale = input.get("scale").and_then(Value::as_f64).unwrap_or(4.0);
        if !(0.0..=10.0).contains(&scale) || scale.fract() != 0.0 {
            return invalid("- input.scale: the mock takes whole factors up to 10");
        }
        super::answers::upscale_bytes(&image, scale as u32)
    } else if matting {
        super::answers::matte_bytes(shared, &image).map(|(cut, _)| cut)
    } else if qwen {
        super::answers::edit_bytes(&image, square, super::stage::stage_room)
    } else {
        grade_bytes(&image, square)
    };
    let hang = match &fault {
        Some(Fault::Hang(d)) => Some(*d),
        _ => None,
    };
    let malformed = matches!(fault, Some(Fault::MalformedJson));
    let mut job = MockJob::new(super::shared::QUEUE_FOR, run_time(&fault), fault, output);
    job.number = shared.next_id();
    job.tag = model.to_string();
    let id = format!("mockpred{:012}", job.number);
    shared.jobs.lock().unwrap().insert(id.clone(), job);
    if let Some(d) = hang {
        shared.sleep(d);
    }

    // `Prefer: wait` or `Prefer: wait=N`: block until terminal, at most N s and the mock's cap.
    if let Some(pref) = rec
        .header("prefer")
        .and_then(|p| p.trim().strip_prefix("wait"))
    {
        let n: f64 = pref.trim_start_matches('=').trim().parse().unwrap_or(60.0);
        let until = Instant::now() + Duration::from_secs_f64(n.clamp(0.0, 60.0)).min(WAIT_CAP);
        while Instant::now() < until && !shared.stopping() {
            if matches!(
                shared.jobs.lock().unwrap().get(&id).map(MockJob::state),
                Some(JobState::Done | JobState::Cancelled)
            ) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let jobs = shared.jobs.lock().unwrap();
    let v = prediction(shared, &id, &jobs[&id]);
    if malformed {
        return Resp::truncated_json(&v);
    }
    Resp::json(201, &v)
}

fn prediction(shared: &Shared, id: &str, job: &MockJob) -> Value {
    let base = format!("{}/v1/predictions/{id}", shared.base_url);
    let mut v = json!({
        "id": id, "model": job.tag, "version": "hidden", "input": {"prompt": "…"}, "logs": "", "output": null,
        "data_removed": false, "error": null, "source": "api", "status": "starting",
        "created_at": "2026-08-01T12:00:00.000Z",
        "urls": {"get": base, "cancel": format!("{base}/cancel"), "web": format!("https://replicate.com/p/{id}")}
    });
    match job.state() {
        JobState::Queued => {}
        JobState::Running => v["status"] = json!("processing"),
        JobState::Cancelled => v["status"] = json!("canceled"),
        JobState::Done => match (&job.fault, &job.output) {
            (Some(Fault::Refuse | Fault::BlockPrompt), _) => {
                v["status"] = json!("failed");
                v["error"] = json!("The input or output was flagged as sensitive (E005)");
            }
            (Some(Fault::TextOnly), _) => {
                v["status"] = json!("succeeded");
                v["output"] = json!("I can't edit this photo.");
            }
            (_, Err(e)) => {
                v["status"] = json!("failed");
                v["error"] = json!(e);
            }
            (_, Ok((png, _, _))) => {
                let name = format!("{id}.png");
                shared
                    .files
                    .lock()
                    .unwrap()
                    .insert(name.clone(), (png.clone(), "image/png"));
                let url = format!("{}/files/{name}", shared.base_url);
                v["status"] = json!("succeeded");
                v["output"] = if job.number.is_multiple_of(2) {
                    json!(url)
                } else {
                    json!([url])
                };
                v["metrics"] = json!({"predict_time": job.run_for.as_secs_f64(), "total_time": (job.queue_for + job.run_for).as_secs_f64()});
                v["completed_at"] = json!("2026-08-01T12:00:05.900Z");
            }
        },
    }
    v
}
