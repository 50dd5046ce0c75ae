//! Mock of the ComfyUI HTTP API: `/upload/image`, `/prompt` (validates that every `LoadImage`
//! names an uploaded file and that no `{{…}}` placeholder is left), `/history/{id}` (`{}` until
//! done, then keyed by prompt_id), `/view`, `/queue`, `/interrupt`, `/system_stats`.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::answers::grade_bytes;
use super::shared::{run_time, Fault, JobState, MockJob, Recorded, Resp, Shared, QUEUE_FOR};

pub(crate) fn handle(shared: &Shared, rec: &Recorded) -> Resp {
    match (rec.method.as_str(), rec.path.as_str()) {
        ("POST", "/upload/image") => upload(shared, rec),
        ("POST", "/prompt") => prompt(shared, rec),
        ("GET", "/queue") => queue(shared),
        ("POST", "/queue") => {
            let ids: Vec<String> = rec
                .json
                .as_ref()
                .and_then(|v| v.get("delete"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut jobs = shared.jobs.lock().unwrap();
            for id in ids {
                if let Some(job) = jobs.get_mut(&id) {
                    if job.state() == JobState::Queued && job.cancel() {
                        shared.cancels.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Resp::raw(200, "text/plain", Vec::new())
        }
        ("POST", "/interrupt") => {
            let target = rec
                .json
                .as_ref()
                .and_then(|v| v.get("prompt_id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut jobs = shared.jobs.lock().unwrap();
            for (id, job) in jobs.iter_mut() {
                let hit = target.as_deref().is_none_or(|t| t == id);
                if hit && job.state() == JobState::Running && job.cancel() {
                    shared.cancels.fetch_add(1, Ordering::SeqCst);
                }
            }
            Resp::raw(200, "text/plain", Vec::new())
        }
        ("GET", "/system_stats") => Resp::json(
            200,
            &json!({"system": {"os": "posix", "ram_total": 34359738368u64, "ram_free": 20000000000u64, "comfyui_version": "0.3.60-mock",
                               "python_version": "3.12.3", "pytorch_version": "2.8.0", "embedded_python": false, "argv": ["main.py"]},
                    "devices": [{"name": "cuda:0 Mock GPU 24GB", "type": "cuda", "index": 0, "vram_total": 25757220864u64, "vram_free": 20000000000u64}]}),
        ),
        ("GET", "/view") => {
            let name = rec.query_param("filename").unwrap_or_default();
            let kind = rec.query_param("type").unwrap_or_else(|| "output".into());
            match shared.files.lock().unwrap().get(&format!("{kind}/{name}")) {
                Some((bytes, ctype)) => Resp::raw(200, ctype, bytes.clone()),
                None => Resp::raw(404, "text/plain", b"404: Not Found".to_vec()),
            }
        }
        ("GET", p) if p.starts_with("/history/") => history(shared, &p["/history/".len()..]),
        _ => Resp::raw(404, "text/plain", b"404: Not Found".to_vec()),
    }
}

fn upload(shared: &Shared, rec: &Recorded) -> Resp {
    let Some(part) = rec.part("image") else {
        return Resp::raw(400, "text/plain", Vec::new());
    };
    let mut name = part.filename.clone().unwrap_or_else(|| "image.png".into());
    let overwrite = rec
        .part("overwrite")
        .is_some_and(|p| p.data == b"true" || p.data == b"1");
    let mut files = shared.files.lock().unwrap();
    if !overwrite {
        let (stem, ext) = name
            .rsplit_once('.')
            .map(|(s, e)| (s.to_string(), format!(".{e}")))
            .unwrap_or((name.clone(), String::new()));
        let mut i = 1;
        while files.contains_key(&format!("input/{name}")) {
            name = format!("{stem} ({i}){ext}");
            i += 1;
        }
    }
    files.insert(
        format!("input/{name}"),
        (part.data.clone(), "application/octet-stream"),
    );
    Resp::json(
        200,
        &json!({"name": name, "subfolder": "", "type": "input"}),
    )
}

fn node_error(node: &str, class: &str, msg: &str, details: &str) -> Resp {
    Resp::json(
        400,
        &json!({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
                "node_errors": {node: {"errors": [{"type": "value_not_in_list", "message": msg, "details": details, "extra_info": {}}],
                                       "dependent_outputs": [], "class_type": class}}}),
    )
}

fn prompt(shared: &Shared, rec: &Recorded) -> Resp {
    let Some(wf) = rec
        .json
        .as_ref()
        .and_then(|v| v.get("prompt"))
        .and_then(Value::as_object)
    else {
        return Resp::json(
            400,
            &json!({"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}),
        );
    };
    let text = Value::Object(wf.clone()).to_string();
    if text.contains("{{") {
        return node_error(
            "?",
            "?",
            "Unsubstituted placeholder",
            "the workflow still contains a {{…}} placeholder",
        );
    }
    let mut image: Option<Vec<u8>> = None;
    let mut save_node = "9".to_string();
    for (id, node) in wf {
        match node.get("class_type").and_then(Value::as_str) {
            Some("LoadImage") => {
                let name = node
                    .pointer("/inputs/image")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match shared.files.lock().unwrap().get(&format!("input/{name}")) {
                    Some((bytes, _)) => image = Some(bytes.clone()),
                    None => {
                        return node_error(
                            id,
                            "LoadImage",
                            "Value not in list",
                            &format!("image: '{name}' not in []"),
                        )
                    }
                }
            }
            Some("SaveImage") => save_node = id.clone(),
            _ => {}
        }
    }
    let Some(image) = image else {
        return node_error(
            "?",
            "LoadImage",
            "Required input is missing",
            "no LoadImage node",
        );
    };

    let fault = shared.next_fault();
    match &fault {
        Some(Fault::RateLimit { retry_after }) => {
            return Resp::raw(429, "text/plain", b"Too Many Requests".to_vec())
                .header("Retry-After", retry_after)
        }
        Some(Fault::Unavailable503) => {
            return Resp::raw(503, "text/plain", b"Service Unavailable".to_vec())
        }
        _ => {}
    }
    let output = grade_bytes(&image, matches!(fault, Some(Fault::WrongAspect)));
    let hang = match &fault {
        Some(Fault::Hang(d)) => Some(*d),
        _ => None,
    };
    let malformed = matches!(fault, Some(Fault::MalformedJson));
    let mut job = MockJob::new(QUEUE_FOR, run_time(&fault), fault, output);
    job.number = shared.next_id();
    job.tag = save_node;
    let id = shared.uuid();
    let number = job.number;
    shared.jobs.lock().unwrap().insert(id.clone(), job);
    if let Some(d) = hang {
        shared.sleep(d);
    }
    let v = json!({"prompt_id": id, "number": number, "node_errors": {}});
    if malformed {
        return Resp::truncated_json(&v);
    }
    Resp::json(200, &v)
}

fn queue(shared: &Shared) -> Resp {
    let jobs = shared.jobs.lock().unwrap();
    let item = |id: &str, j: &MockJob| json!([j.number, id, {}, {"client_id": "mock"}, [j.tag]]);
    let running: Vec<Value> = jobs
        .iter()
        .filter(|(_, j)| j.state() == JobState::Running)
        .map(|(id, j)| item(id, j))
        .collect();
    let pending: Vec<Value> = jobs
        .iter()
        .filter(|(_, j)| j.state() == JobState::Queued)
        .map(|(id, j)| item(id, j))
        .collect();
    Resp::json(
        200,
        &json!({"queue_running": running, "queue_pending": pending}),
    )
}

fn history(shared: &Shared, id: &str) -> Resp {
    let jobs = shared.jobs.lock().unwrap();
    let Some(job) = jobs.get(id) else {
        return Resp::json(200, &json!({}));
    };
    let msg = |event: &str| json!([event, {"prompt_id": id, "timestamp": 1_760_000_000_000u64}]);
    let entry = match job.state() {
        JobState::Queued | JobState::Running => return Resp::json(200, &json!({})),
        // Deleted from the queue before it ran: it never reaches the history.
        JobState::Cancelled if !job.started() => return Resp::json(200, &json!({})),
        JobState::Cancelled => {
            json!({"outputs": {}, "status": {"status_str": "error", "completed": false,
                                      "messages": [msg("execution_start"), msg("execution_interrupted")]}, "meta": {}})
        }
        JobState::Done => match (&job.fault, &job.output) {
            (Some(Fault::Refuse | Fault::BlockPrompt), _) | (_, Err(_)) => {
                let why = job
                    .output
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "mock: the node refused this input".into());
                json!({"outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [msg("execution_start"),
                    ["execution_error", {"prompt_id": id, "node_id": "11", "node_type": "KSampler", "exception_message": why,
                                         "exception_type": "RuntimeError", "traceback": [], "timestamp": 1_760_000_000_000u64}]]}, "meta": {}})
            }
            (Some(Fault::TextOnly), _) => {
                json!({"outputs": {"14": {"text": ["I can't edit this photo."]}},
                                                 "status": {"status_str": "success", "completed": true, "messages": [msg("execution_start"), msg("execution_success")]}, "meta": {}})
            }
            (_, Ok((png, _, _))) => {
                let name = format!("luminary_{:05}_.png", job.number + 1);
                shared
                    .files
                    .lock()
                    .unwrap()
                    .insert(format!("output/{name}"), (png.clone(), "image/png"));
                json!({"outputs": {job.tag.clone(): {"images": [{"filename": name, "subfolder": "", "type": "output"}]}},
                       "status": {"status_str": "success", "completed": true, "messages": [msg("execution_start"), msg("execution_success")]},
                       "meta": {job.tag.clone(): {"node_id": job.tag, "display_node": job.tag}}})
            }
        },
    };
    let mut v = entry;
    v["prompt"] = json!([job.number, id, {}, {"client_id": "mock"}, [job.tag]]);
    Resp::json(200, &json!({ id: v }))
}
