//! Mock of the fal queue: `Key` auth, status/result/cancel URLs WITHOUT the model subpath
//! (a client that rebuilds them from the model id gets 404), status 202 while queued or
//! running and 200 when completed, results as URLs on the mock itself.

use std::sync::atomic::Ordering;

use std::time::Duration;

use serde_json::{json, Value};

use super::answers::grade_bytes;
use super::shared::{
    run_time, Fault, JobState, MockJob, Recorded, Resp, Shared, QUEUE_FOR, TEST_KEY,
};

fn detail(status: u16, loc: &str, msg: &str, ty: &str) -> Resp {
    Resp::json(
        status,
        &json!({"detail": [{"loc": ["body", loc], "msg": msg, "type": ty}]}),
    )
}

pub(crate) fn handle(shared: &Shared, rec: &Recorded) -> Resp {
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    if segs.first() == Some(&"files") && rec.method == "GET" {
        return serve_file(shared, segs.get(1).copied().unwrap_or(""));
    }
    match rec
        .header("authorization")
        .and_then(|v| v.strip_prefix("Key "))
    {
        Some(k) if k == TEST_KEY => {}
        Some(_) => {
            return Resp::json(
                401,
                &json!({"detail": "Invalid API key: key not found or revoked."}),
            )
        }
        None => {
            return Resp::json(
                401,
                &json!({"detail": "Missing authorization header: use 'Authorization: Key <FAL_KEY>'."}),
            )
        }
    }
    // owner/app/requests/{id}[/status|/cancel]; anything longer has a subpath and is unknown.
    if segs.len() >= 4 && segs[2] == "requests" {
        let app = format!("{}/{}", segs[0], segs[1]);
        let id = segs[3];
        return match (rec.method.as_str(), segs.get(4).copied(), segs.len()) {
            ("GET", Some("status"), 5) => status(shared, &app, id),
            ("PUT", Some("cancel"), 5) => cancel(shared, &app, id),
            ("GET", None, 4) => result(shared, &app, id),
            _ => Resp::not_found(),
        };
    }
    if rec.method == "POST" && segs.len() >= 2 && !segs.contains(&"requests") {
        return submit(shared, rec, &segs);
    }
    Resp::not_found()
}

fn urls(shared: &Shared, app: &str, id: &str) -> Value {
    let base = format!("{}/{app}/requests/{id}", shared.base_url);
    json!({"request_id": id, "response_url": base, "status_url": format!("{base}/status"), "cancel_url": format!("{base}/cancel")})
}

fn submit(shared: &Shared, rec: &Recorded, segs: &[&str]) -> Resp {
    let Some(body) = &rec.json else {
        return detail(
            422,
            "",
            "Input should be a valid JSON object",
            "model_attributes_type",
        );
    };
    // Segmentation apps (BiRefNet) take no prompt; edit models require one.
    let matting = super::answers::hosts_matting(segs[1]);
    let upscaling = super::answers::hosts_upscaler(segs[1]);
    if upscaling {
        let scale = body.get("scale").and_then(Value::as_u64).unwrap_or(2);
        if !(1..=8).contains(&scale) {
            return detail(
                422,
                "scale",
                "Input should be less than or equal to 8",
                "less_than_equal",
            );
        }
        let weights = if scale == 2 {
            "RealESRGAN_x2plus"
        } else {
            "RealESRGAN_x4plus"
        };
        if body
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| m != weights)
        {
            return detail(
                422,
                "model",
                "the mock expects the Real-ESRGAN weights of the scale asked for",
                "value_error",
            );
        }
    }
    if !matting
        && !upscaling
        && body
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return detail(422, "prompt", "Field required", "missing");
    }
    if matting {
        let fmt = body
            .get("output_format")
            .and_then(Value::as_str)
            .unwrap_or("png");
        if !["png", "webp", "gif"].contains(&fmt) {
            return detail(
                422,
                "output_format",
                "Input should be 'webp', 'png' or 'gif'",
                "enum",
            );
        }
        let res = body
            .get("operating_resolution")
            .and_then(Value::as_str)
            .unwrap_or("1024x1024");
        if !["1024x1024", "2048x2048", "2304x2304"].contains(&res) {
            return detail(
                422,
                "operating_resolution",
                "Input should be '1024x1024', '2048x2048' or '2304x2304'",
                "enum",
            );
        }
    }
    let uri = body.get("image_url").and_then(Value::as_str).or_else(|| {
        body.get("image_urls")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
    });
    let Some(uri) = uri else {
        return detail(422, "image_url", "Field required", "missing");
    };
    let Some(image) = super::answers::from_data_uri(uri) else {
        return detail(
            422,
            "image_url",
            "Failed to load the image (the mock accepts data: URIs only)",
            "image_load_error",
        );
    };

    let fault = shared.next_fault();
    match &fault {
        Some(Fault::RateLimit { retry_after }) => {
            return Resp::json(
                429,
                &json!({"detail": "Too many concurrent requests for this user"}),
            )
            .header("Retry-After", retry_after);
        }
        Some(Fault::Unavailable503) => {
            // The ingress answered: no request id, the queue never saw it.
            return Resp::json(503, &json!({"detail": "Service temporarily unavailable", "error_type": "runner_scheduling_failure"}))
                .header("X-Fal-Error-Type", "runner_scheduling_failure");
        }
        _ => {}
    }
    let (output, mask) = if upscaling {
        let scale = body.get("scale").and_then(Value::as_u64).unwrap_or(2) as u32;
        (super::answers::upscale_bytes(&image, scale), None)
    } else if matting {
        match super::answers::matte_bytes(shared, &image) {
            Ok((cut, mask)) => (Ok(cut), Some(mask)),
            Err(e) => (Err(e), None),
        }
    } else {
        (
            grade_bytes(&image, matches!(fault, Some(Fault::WrongAspect))),
            None,
        )
    };
    let wants_mask = body.get("output_mask").and_then(Value::as_bool) == Some(true);
    let hang = match &fault {
        Some(Fault::Hang(d)) => Some(*d),
        _ => None,
    };
    let (queue, run) = if upscaling {
        (
            Duration::from_millis(10),
            super::shared::upscale_time(&fault),
        )
    } else {
        (QUEUE_FOR, run_time(&fault))
    };
    let mut job = MockJob::new(queue, run, fault, output);
    job.tag = format!("{}/{}", segs[0], segs[1]);
    job.mask = mask.filter(|_| wants_mask);
    let id = shared.uuid();
    let app = job.tag.clone();
    shared.jobs.lock().unwrap().insert(id.clone(), job);
    if let Some(d) = hang {
        shared.sleep(d);
    }
    let mut reply = urls(shared, &app, &id);
    reply["status"] = json!("IN_QUEUE");
    reply["queue_position"] = json!(0);
    Resp::json(200, &reply).header("x-fal-request-id", &id)
}

fn status(shared: &Shared, app: &str, id: &str) -> Resp {
    let jobs = shared.jobs.lock().unwrap();
    let Some(job) = jobs.get(id).filter(|j| j.tag == app) else {
        return Resp::json(404, &json!({"detail": "Request not found"}));
    };
    let mut v = urls(shared, app, id);
    let code = match job.state() {
        JobState::Queued => {
            v["status"] = json!("IN_QUEUE");
            v["queue_position"] = json!(0);
            202
        }
        JobState::Running => {
            v["status"] = json!("IN_PROGRESS");
            v["logs"] = json!([{"message": "step 10/28", "level": "INFO", "source": "USER", "timestamp": "2026-08-01T12:00:03Z"}]);
            202
        }
        JobState::Done | JobState::Cancelled => {
            v["status"] = json!("COMPLETED");
            v["logs"] = json!([]);
            v["metrics"] = json!({"inference_time": job.run_for.as_secs_f64()});
            200
        }
    };
    Resp::json(code, &v)
}

fn cancel(shared: &Shared, app: &str, id: &str) -> Resp {
    let mut jobs = shared.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(id).filter(|j| j.tag == app) else {
        return Resp::json(404, &json!({"status": "NOT_FOUND"}));
    };
    if job.cancel() {
        shared.cancels.fetch_add(1, Ordering::SeqCst);
        Resp::json(202, &json!({"status": "CANCELLATION_REQUESTED"}))
    } else {
        Resp::json(400, &json!({"status": "ALREADY_COMPLETED"}))
    }
}

fn result(shared: &Shared, app: &str, id: &str) -> Resp {
    let jobs = shared.jobs.lock().unwrap();
    let Some(job) = jobs.get(id).filter(|j| j.tag == app) else {
        return Resp::json(404, &json!({"detail": "Request not found"}));
    };
    match job.state() {
        JobState::Queued | JobState::Running => {
            return Resp::json(400, &json!({"detail": "Request is still in progress"}))
        }
        JobState::Cancelled => return Resp::json(400, &json!({"detail": "Request was cancelled"})),
        JobState::Done => {}
    }
    match &job.fault {
        Some(Fault::Refuse | Fault::BlockPrompt) => {
            return detail(
                422,
                "image_url",
                "The content could not be processed because it contained material flagged by a content checker.",
                "content_policy_violation",
            )
        }
        Some(Fault::MalformedJson) => return Resp::truncated_json(&json!({"images": [{"url": "x".repeat(100)}]})),
        _ => {}
    }
    let (png, w, h) = match &job.output {
        Ok(x) => x.clone(),
        Err(e) => return detail(422, "image_url", e, "image_load_error"),
    };
    let (name, body, ctype) = if matches!(job.fault, Some(Fault::TextOnly)) {
        (
            format!("{id}.txt"),
            b"I can't edit this photo.".to_vec(),
            "text/plain",
        )
    } else {
        (format!("{id}.png"), png, "image/png")
    };
    shared
        .files
        .lock()
        .unwrap()
        .insert(name.clone(), (body, ctype));
    if super::answers::hosts_matting(app) {
        // BiRefNet's output: `image` (the cut-out) and, with `output_mask`, `mask_image`.
        let file = |name: &str, bytes: &[u8]| {
            json!({"url": format!("{}/files/{name}", shared.base_url),
            "content_type": "image/png", "file_name": name, "file_size": bytes.len(), "width": w, "height": h})
        };
        let mut v = json!({"image": file(&name, &shared.files.lock().unwrap()[&name].0), "mask_image": null});
        if let Some(mask) = &job.mask {
            let mname = format!("{id}-mask.png");
            shared
                .files
                .lock()
                .unwrap()
                .insert(mname.clone(), (mask.clone(), "image/png"));
            v["mask_image"] = file(&mname, mask);
        }
        return Resp::json(200, &v);
    }
    Resp::json(
        200,
        &json!({"images": [{"url": format!("{}/files/{name}", shared.base_url), "content_type": ctype, "width": w, "height": h}],
                "seed": 42, "has_nsfw_concepts": [false], "prompt": "mock", "timings": {"inference": job.run_for.as_secs_f64()}}),
    )
}

fn serve_file(shared: &Shared, name: &str) -> Resp {
    match shared.files.lock().unwrap().get(name) {
        Some((bytes, ctype)) => Resp::raw(200, ctype, bytes.clone()),
        None => Resp::not_found(),
    }
}

/// Used by the Replicate mock too.
pub(crate) fn serve(shared: &Shared, name: &str) -> Resp {
    serve_file(shared, name)
}
