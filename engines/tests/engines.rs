//! The engines against their mocks over real sockets: what each client sends, what it makes of
//! every kind of answer, and the promises about retries, billing, cancellation and keys.

mod util;

use std::time::{Duration, Instant};

use base64::Engine as _;
use luminary_engines::mock::{mock_grade, Fault, MockKind, MockServer, TEST_KEY};
use luminary_engines::{provider, EditInput, EngineError, ProviderConfig, Task, Tuning, NAMES};
use serde_json::{json, Value};
use util::*;

fn b64decode(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn data_uri_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("data URI string");
    let (meta, payload) = s
        .strip_prefix("data:")
        .and_then(|r| r.split_once(','))
        .expect("data: URI");
    assert_eq!(meta, "image/png;base64");
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap()
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------- success, one per provider

#[test]
fn gemini_sends_the_image_inline_with_the_key_header_and_returns_the_graded_photo() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::Gemini, vec![]);
    let out = edit(&*p, photo).expect("edit");
    assert_graded(&out, &photo.rgb);
    assert_eq!(out.attempts, 1);
    assert!(
        out.request_id
            .as_deref()
            .is_some_and(|id| id.starts_with("mock-resp-")),
        "{:?}",
        out.request_id
    );

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash-image:generateContent"
        )
    );
    assert_eq!(r.header("x-goog-api-key"), Some(TEST_KEY));
    assert!(
        r.header("authorization").is_none() && !r.query.contains("key="),
        "the key goes in the header only"
    );
    let body = r.json.as_ref().expect("JSON body");
    let parts = body["contents"][0]["parts"].as_array().unwrap();
    let text = parts
        .iter()
        .find_map(|p| p["text"].as_str())
        .expect("a text part");
    assert!(
        text.contains(PROMPT) && text.contains(&format!("Avoid: {NEGATIVE}")),
        "{text}"
    );
    let inline = parts
        .iter()
        .find_map(|p| p.get("inline_data"))
        .expect("an inline_data part");
    assert_eq!(inline["mime_type"], "image/png");
    assert_eq!(
        b64decode(&inline["data"]),
        photo.png,
        "the exact input bytes"
    );
    assert_eq!(
        body["generationConfig"]["responseModalities"],
        json!(["IMAGE"])
    );
    if (photo.width as f64 / photo.height as f64 - 1.5).abs() < 0.01 {
        assert_eq!(
            body["generationConfig"]["imageConfig"]["aspectRatio"],
            "3:2"
        );
    }
    assert_eq!(mock.billed(), 1);
}

#[test]
fn jpeg_input_is_sent_as_jpeg() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::Gemini, vec![]);
    let input = EditInput {
        image: &photo.jpeg,
        mime: "image/jpeg",
        ..input(photo)
    };
    let out = Job::default().run(&*p, &input).expect("edit");
    assert_graded(
        &out,
        &image::load_from_memory(&photo.jpeg).unwrap().to_rgb8(),
    );
    let body = mock.requests()[0].json.clone().unwrap();
    assert_eq!(
        body["contents"][0]["parts"][1]["inline_data"]["mime_type"],
        "image/jpeg"
    );
}

#[test]
fn openai_sends_multipart_with_bearer_key_and_returns_the_graded_photo() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::OpenAi, vec![]);
    let out = edit(&*p, photo).expect("edit");
    assert_graded(&out, &photo.rgb);
    assert!(out
        .request_id
        .as_deref()
        .is_some_and(|id| id.starts_with("req_mock")));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/images/edits")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    let field = |n: &str| {
        String::from_utf8(
            r.part(n)
                .unwrap_or_else(|| panic!("field {n}"))
                .data
                .clone(),
        )
        .unwrap()
    };
    assert_eq!(field("model"), "gpt-image-1");
    assert!(
        field("prompt").contains(PROMPT) && field("prompt").contains(&format!("Avoid: {NEGATIVE}"))
    );
    assert_eq!(
        field("size"),
        if photo.width > photo.height {
            "1536x1024"
        } else {
            "1024x1536"
        }
    );
    assert_eq!(field("output_format"), "png");
    assert_eq!(field("input_fidelity"), "high");
    let image = r.part("image").expect("the image part");
    assert_eq!(image.filename.as_deref(), Some("photo.png"));
    assert_eq!(image.content_type.as_deref(), Some("image/png"));
    assert_eq!(image.data, photo.png, "the exact input bytes");
    assert_eq!(mock.billed(), 1);
}

#[test]
fn fal_follows_the_urls_the_server_returned_and_downloads_the_result() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::Fal, vec![]);
    let job = Job::default();
    let out = job.run(&*p, &input(photo)).expect("edit");
    assert_graded(&out, &photo.rgb);

    let submits = mock.requests_to("POST", "/fal-ai/flux-pro/kontext");
    assert_eq!(submits.len(), 1);
    let s = &submits[0];
    assert_eq!(
        s.header("authorization"),
        Some(format!("Key {TEST_KEY}").as_str())
    );
    let body = s.json.as_ref().unwrap();
    assert_eq!(
        data_uri_bytes(&body["image_url"]),
        photo.png,
        "the exact input bytes as a data URI"
    );
    assert!(body["prompt"].as_str().unwrap().contains(PROMPT));
    assert_eq!(body["output_format"], "png");

    let id = out.request_id.clone().expect("request id");
    let polls = mock.requests_to("GET", &format!("/fal-ai/flux-pro/requests/{id}/status"));
    assert!(
        !polls.is_empty(),
        "polled the status URL without the /kontext subpath"
    );
    assert!(polls
        .iter()
        .all(|r| r.query == "logs=0" && r.header("authorization").is_some()));
    assert_eq!(
        mock.requests_to("GET", &format!("/fal-ai/flux-pro/requests/{id}"))
            .len(),
        1,
        "one result fetch"
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| !r.path.contains("/kontext/requests")),
        "never rebuilt URLs from the model id"
    );
    let downloads = mock.requests_to("GET", "/files/*");
    assert_eq!(downloads.len(), 1);
    assert!(
        downloads[0].header("authorization").is_none(),
        "the key is not sent to the CDN"
    );
    assert!(job.log().iter().any(|m| m == "running"), "{:?}", job.log());
    assert_eq!(mock.billed(), 1);
    assert_eq!(mock.cancels(), 0);
}

#[test]
fn replicate_takes_a_finished_create_or_polls_a_running_one() {
    let photo = need_photo!();
    // The first prediction finishes within `Prefer: wait` (output is a string); the second
    // outlasts the mock's wait cap, so the create answers "processing" and the client polls
    // (output is an array).
    let (mock, p) = start(
        MockKind::Replicate,
        vec![
            Fault::Latency(Duration::from_millis(150)),
            Fault::SlowJob(Duration::from_millis(1300)),
        ],
    );
    let first = edit(&*p, photo).expect("first edit");
    assert_graded(&first, &photo.rgb);
    assert!(
        mock.requests_to("GET", "/v1/predictions/*").is_empty(),
        "a finished create needs no poll"
    );

    let second = edit(&*p, photo).expect("second edit");
    assert_graded(&second, &photo.rgb);
    let id = second.request_id.clone().unwrap();
    assert!(
        !mock
            .requests_to("GET", &format!("/v1/predictions/{id}"))
            .is_empty(),
        "polled urls.get"
    );

    let creates = mock.requests_to(
        "POST",
        "/v1/models/black-forest-labs/flux-kontext-pro/predictions",
    );
    assert_eq!(creates.len(), 2);
    for c in &creates {
        assert_eq!(
            c.header("authorization"),
            Some(format!("Bearer {TEST_KEY}").as_str())
        );
        assert_eq!(c.header("prefer"), Some("wait=5"));
        assert_eq!(c.header("cancel-after"), Some("30s"));
        let input = &c.json.as_ref().unwrap()["input"];
        assert_eq!(data_uri_bytes(&input["input_image"]), photo.png);
        assert_eq!(input["aspect_ratio"], "match_input_image");
        assert!(input["prompt"].as_str().unwrap().contains(PROMPT));
    }
    assert_eq!(mock.requests_to("GET", "/files/*").len(), 2);
    assert_eq!(mock.billed(), 2);
}

#[test]
fn comfyui_uploads_queues_polls_the_history_and_views_the_output() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::ComfyUi, vec![]);
    let out = edit(&*p, photo).expect("edit");
    assert_graded(&out, &photo.rgb);

    let uploads = mock.requests_to("POST", "/upload/image");
    assert_eq!(uploads.len(), 1);
    let up = &uploads[0];
    let image = up.part("image").expect("image part");
    assert_eq!(image.data, photo.png);
    let name = image.filename.clone().unwrap();
    assert_eq!(
        up.part("overwrite").map(|p| p.data.clone()),
        Some(b"true".to_vec())
    );

    let prompts = mock.requests_to("POST", "/prompt");
    assert_eq!(prompts.len(), 1);
    let body = prompts[0].json.as_ref().unwrap();
    assert_eq!(
        body["prompt"]["4"]["inputs"]["image"],
        json!(name),
        "LoadImage gets the uploaded file"
    );
    let text = body["prompt"]["7"]["inputs"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(PROMPT) && text.contains(&format!("Avoid: {NEGATIVE}")),
        "{text}"
    );
    assert!(body["client_id"].as_str().is_some());

    let id = out.request_id.clone().unwrap();
    assert!(!mock
        .requests_to("GET", &format!("/history/{id}"))
        .is_empty());
    let views = mock.requests_to("GET", "/view");
    assert_eq!(views.len(), 1);
    assert_eq!(
        views[0].query_param("filename").as_deref(),
        Some("luminary_00001_.png")
    );
    assert_eq!(views[0].query_param("type").as_deref(), Some("output"));
    assert_eq!(mock.cancels(), 0);
}

#[test]
fn comfyui_custom_workflow_gets_its_placeholders_filled() {
    let photo = need_photo!();
    let path =
        std::env::temp_dir().join(format!("luminary-engines-test-{}.json", std::process::id()));
    let wf = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["9", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}, blurry", "clip": ["9", 0]}},
        "20": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    std::fs::write(&path, wf.to_string()).unwrap();
    let (mock, p) = start_with(MockKind::ComfyUi, vec![], |c| {
        c.workflow = Some(path.clone())
    });
    let out = edit(&*p, photo);
    let _ = std::fs::remove_file(&path);
    assert_graded(&out.expect("edit"), &photo.rgb);
    let body = mock.requests_to("POST", "/prompt")[0].json.clone().unwrap();
    assert_eq!(
        body["prompt"]["2"]["inputs"]["text"], PROMPT,
        "the workflow handles the negative prompt itself"
    );
    assert_eq!(
        body["prompt"]["3"]["inputs"]["text"],
        format!("{NEGATIVE}, blurry")
    );

    let missing = ProviderConfig {
        workflow: Some("/nonexistent/wf.json".into()),
        ..Default::default()
    };
    let err = provider("comfyui", &missing)
        .err()
        .expect("unreadable workflow");
    assert!(
        matches!(err, EngineError::Config { .. })
            && err.to_string().contains("/nonexistent/wf.json"),
        "{err}"
    );
}

// ---------------------------------------------------------------- retries

#[test]
fn gemini_429_waits_for_retry_info_then_succeeds_billed_once() {
    let photo = need_photo!();
    let (mock, p) = start(
        MockKind::Gemini,
        vec![Fault::RateLimit {
            retry_after: "1s".into(),
        }],
    );
    let job = Job::default();
    let out = job.run(&*p, &input(photo)).expect("edit");
    assert_graded(&out, &photo.rgb);
    assert_eq!(out.attempts, 2);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    let waited = gap(&reqs[0], &reqs[1]);
    assert!(
        (0.95..2.0).contains(&waited),
        "waited {waited} s for retryDelay 1s"
    );
    assert!(
        job.log()
            .iter()
            .any(|m| m == "retrying in 1.0 s after HTTP 429"),
        "{:?}",
        job.log()
    );
    assert_eq!(mock.billed(), 1);
}

#[test]
fn openai_429_prefers_retry_after_ms() {
    let photo = need_photo!();
    // The mock sends retry-after-ms: 400 and retry-after: 1; the SDK rule is to take the ms one.
    let (mock, p) = start(
        MockKind::OpenAi,
        vec![Fault::RateLimit {
            retry_after: "0.4".into(),
        }],
    );
    let out = edit(&*p, photo).expect("edit");
    assert_eq!(out.attempts, 2);
    let reqs = mock.requests();
    let waited = gap(&reqs[0], &reqs[1]);
    assert!(
        (0.38..0.9).contains(&waited),
        "waited {waited} s for retry-after-ms 400"
    );
    assert_eq!(mock.billed(), 1);
}

#[test]
fn replicate_429_honours_retry_after_and_creates_one_prediction() {
    let photo = need_photo!();
    let (mock, p) = start(
        MockKind::Replicate,
        vec![Fault::RateLimit {
            retry_after: "1".into(),
        }],
    );
    let out = edit(&*p, photo).expect("edit");
    assert_graded(&out, &photo.rgb);
    let creates = mock.requests_to("POST", "/v1/models/*");
    assert_eq!(creates.len(), 2);
    let waited = gap(&creates[0], &creates[1]);
    assert!(
        (0.95..2.0).contains(&waited),
        "waited {waited} s for Retry-After: 1"
    );
    assert_eq!(mock.billed(), 1, "exactly one prediction ran");
}

#[test]
fn a_retry_after_longer_than_the_total_timeout_gives_up_at_once() {
    let photo = need_photo!();
    let (mock, p) = start_with(
        MockKind::Replicate,
        vec![Fault::RateLimit {
            retry_after: "120".into(),
        }],
        |c| c.total_timeout_s = Some(5.0),
    );
    let t = Instant::now();
    let err = edit(&*p, photo).unwrap_err();
    assert!(secs(t) < 1.0, "did not sit out the wait");
    assert!(
        matches!(err, EngineError::RateLimited { retry_after_s: Some(s), .. } if s == 120.0),
        "{err:?}"
    );
    assert!(!err.maybe_billed());
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn rate_limits_until_the_last_attempt_report_rate_limited() {
    let photo = need_photo!();
    let faults = vec![
        Fault::RateLimit {
            retry_after: "0.1s".into(),
        },
        Fault::RateLimit {
            retry_after: "0.2s".into(),
        },
    ];
    let (mock, p) = start_with(MockKind::Gemini, faults, |c| c.max_attempts = Some(2));
    let err = edit(&*p, photo).unwrap_err();
    assert!(
        matches!(err, EngineError::RateLimited { retry_after_s: Some(s), .. } if (s - 0.2).abs() < 1e-9),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("lower [engines.gemini] concurrency"),
        "{err}"
    );
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(mock.billed(), 0);
}

#[test]
fn a_503_is_retried_for_sync_and_queue_submits() {
    let photo = need_photo!();
    for kind in [
        MockKind::Gemini,
        MockKind::OpenAi,
        MockKind::Fal,
        MockKind::Replicate,
    ] {
        let (mock, p) = start(kind, vec![Fault::Unavailable503]);
        let out = edit(&*p, photo).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_graded(&out, &photo.rgb);
        assert_eq!(out.attempts, 2, "{kind:?}");
        assert_eq!(mock.billed(), 1, "{kind:?}: one billed edit");
        assert_eq!(mock.faults_left(), 0);
    }
}

// ---------------------------------------------------------------- timeouts

#[test]
fn a_sync_call_that_hangs_times_out_and_is_not_resent() {
    let photo = need_photo!();
    for kind in [MockKind::Gemini, MockKind::OpenAi] {
        let (mock, p) = start_with(kind, vec![Fault::Hang(Duration::from_secs(3))], |c| {
            c.request_timeout_s = Some(0.5)
        });
        let t = Instant::now();
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::Timeout {
                    stage: "response",
                    ..
                }
            ),
            "{kind:?}: {err:?}"
        );
        assert!(err.maybe_billed(), "the request was sent; it may be billed");
        assert!(secs(t) < 1.5, "{kind:?}: took {} s", secs(t));
        assert_eq!(
            mock.requests().len(),
            1,
            "{kind:?}: a sent request is never re-sent"
        );
    }
}

#[test]
fn a_queue_submit_that_hangs_is_not_resubmitted() {
    let photo = need_photo!();
    let (mock, p) = start_with(
        MockKind::Fal,
        vec![Fault::Hang(Duration::from_secs(2))],
        |c| c.request_timeout_s = Some(0.5),
    );
    let err = edit(&*p, photo).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Timeout {
                stage: "submit",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.maybe_billed());
    assert_eq!(mock.requests_to("POST", "/fal-ai/*").len(), 1);
}

#[test]
fn the_total_timeout_while_running_cancels_the_remote_job() {
    let photo = need_photo!();
    let (mock, p) = start_with(
        MockKind::Fal,
        vec![Fault::SlowJob(Duration::from_secs(10))],
        |c| c.total_timeout_s = Some(1.0),
    );
    let t = Instant::now();
    let err = edit(&*p, photo).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Timeout {
                stage: "running",
                ..
            }
        ),
        "{err:?}"
    );
    assert!((0.9..2.0).contains(&secs(t)), "took {} s", secs(t));
    assert!(
        eventually(Duration::from_secs(10), || mock.cancels() == 1),
        "fal was asked to cancel"
    );
    assert_eq!(
        mock.requests_to("PUT", "/fal-ai/flux-pro/requests/*").len(),
        1
    );
}

// ---------------------------------------------------------------- bad replies and refusals

#[test]
fn malformed_json_is_a_bad_reply() {
    let photo = need_photo!();
    for kind in [
        MockKind::Gemini,
        MockKind::OpenAi,
        MockKind::Fal,
        MockKind::Replicate,
        MockKind::ComfyUi,
    ] {
        let (mock, p) = start(kind, vec![Fault::MalformedJson]);
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(err, EngineError::BadReply { .. }),
            "{kind:?}: {err:?}"
        );
        assert!(
            err.to_string().to_lowercase().contains("json"),
            "{kind:?}: {err}"
        );
        assert_eq!(mock.faults_left(), 0);
        assert_eq!(
            mock.requests()
                .iter()
                .filter(|r| r.method == "POST"
                    && !r.path.contains("/cancel")
                    && r.path != "/upload/image")
                .count(),
            1,
            "{kind:?}: not re-sent"
        );
    }
}

#[test]
fn text_instead_of_an_image_is_a_bad_reply() {
    let photo = need_photo!();
    let cases = [
        (MockKind::Gemini, "text instead of an image"),
        (MockKind::OpenAi, "text instead of an image"),
        (MockKind::Fal, "text instead of an image"),
        (MockKind::Replicate, "expected an image URL"),
        (MockKind::ComfyUi, "produced no image"),
    ];
    for (kind, says) in cases {
        let (mock, p) = start(kind, vec![Fault::TextOnly]);
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(err, EngineError::BadReply { .. }),
            "{kind:?}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{kind:?}: {err}");
        assert_eq!(mock.faults_left(), 0);
    }
}

#[test]
fn an_image_far_from_the_input_aspect_is_a_bad_reply() {
    let photo = need_photo!();
    if (photo.width as f64 / photo.height as f64) < 1.2 {
        eprintln!("SKIPPED: the test photo is nearly square");
        return;
    }
    for kind in [MockKind::Gemini, MockKind::Fal, MockKind::ComfyUi] {
        let (_mock, p) = start(kind, vec![Fault::WrongAspect]);
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(err, EngineError::BadReply { .. }) && err.to_string().contains("aspect"),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn refusals_carry_the_reason_and_are_never_retried() {
    let photo = need_photo!();
    let cases = [
        (MockKind::Gemini, Fault::Refuse, "IMAGE_SAFETY", true),
        (
            MockKind::Gemini,
            Fault::BlockPrompt,
            "PROHIBITED_CONTENT",
            true,
        ),
        (MockKind::OpenAi, Fault::Refuse, "safety system", false),
        (MockKind::Fal, Fault::Refuse, "content checker", false),
        (MockKind::Replicate, Fault::Refuse, "E005", false),
    ];
    for (kind, fault, reason, billed) in cases {
        let (mock, p) = start(kind, vec![fault.clone(), fault]);
        let err = edit(&*p, photo).unwrap_err();
        match &err {
            EngineError::Refused { engine, reason: r } => {
                assert_eq!(engine, name_of(kind));
                assert!(r.contains(reason), "{kind:?}: {r}");
            }
            other => panic!("{kind:?}: expected Refused, got {other:?}"),
        }
        assert_eq!(err.maybe_billed(), billed, "{kind:?}");
        assert_eq!(mock.faults_left(), 1, "{kind:?}: exactly one submit");
        assert_eq!(
            mock.cancels(),
            0,
            "{kind:?}: a finished job is not cancelled"
        );
    }
}

// ---------------------------------------------------------------- keys

#[test]
fn a_wrong_key_is_an_auth_error_naming_the_variable() {
    let photo = need_photo!();
    let cases = [
        (MockKind::Gemini, "GEMINI_API_KEY"),
        (MockKind::OpenAi, "OPENAI_API_KEY"),
        (MockKind::Fal, "FAL_KEY"),
        (MockKind::Replicate, "REPLICATE_API_TOKEN"),
    ];
    for (kind, var) in cases {
        let (mock, p) = start_with(kind, vec![], |c| c.api_key = Some(WRONG_KEY.into()));
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(err, EngineError::Auth { var: v, .. } if v == var),
            "{kind:?}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(var) && msg.contains(&format!("[engines.{}] api_key", name_of(kind))),
            "{msg}"
        );
        assert!(!msg.contains(WRONG_KEY) && !format!("{err:?}").contains(WRONG_KEY));
        assert_eq!(
            mock.requests().len(),
            1,
            "{kind:?}: a rejected key is not retried"
        );
        assert!(!err.maybe_billed());
    }
}

#[test]
fn a_missing_key_fails_before_any_request() {
    let photo = need_photo!();
    for kind in [
        MockKind::Gemini,
        MockKind::OpenAi,
        MockKind::Fal,
        MockKind::Replicate,
    ] {
        let (mock, p) = start_with(kind, vec![], |c| c.api_key = None);
        assert!(!p.has_key());
        let err = edit(&*p, photo).unwrap_err();
        assert!(matches!(err, EngineError::Auth { .. }), "{kind:?}: {err:?}");
        assert!(mock.requests().is_empty(), "{kind:?}: nothing was sent");
    }
}

// ---------------------------------------------------------------- cancellation

#[test]
fn cancelling_a_running_job_stops_it_remotely_within_a_second() {
    let photo = need_photo!();
    // Replicate is cancelled after its create returned (the mock blocks `Prefer: wait` for 1 s).
    let cases = [
        (MockKind::Fal, 500),
        (MockKind::Replicate, 1400),
        (MockKind::ComfyUi, 500),
    ];
    for (kind, after_ms) in cases {
        let (mock, p) = start(kind, vec![Fault::SlowJob(Duration::from_secs(10))]);
        let (r, took, log) = edit_cancelled_after(&*p, photo, Duration::from_millis(after_ms));
        assert!(matches!(r, Err(EngineError::Cancelled)), "{kind:?}: {r:?}");
        assert!(
            took < Duration::from_secs(1),
            "{kind:?}: took {took:?} to stop"
        );
        assert!(
            log.iter().any(|m| m == "running"),
            "{kind:?}: the job was running: {log:?}"
        );
        assert!(
            eventually(Duration::from_secs(10), || mock.cancels() == 1),
            "{kind:?}: the remote job was cancelled"
        );
        assert_eq!(mock.billed(), 1, "{kind:?}: it had started, so it may bill");
    }
}

#[test]
fn comfyui_interrupts_only_its_own_prompt() {
    let photo = need_photo!();
    let (mock, p) = start(
        MockKind::ComfyUi,
        vec![Fault::SlowJob(Duration::from_secs(10))],
    );
    let (r, _, _) = edit_cancelled_after(&*p, photo, Duration::from_millis(400));
    assert!(matches!(r, Err(EngineError::Cancelled)));
    let interrupts = mock.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    let prompt_id = mock.job_ids();
    assert_eq!(
        interrupts[0].json.as_ref().unwrap()["prompt_id"],
        json!(prompt_id[0])
    );
}

#[test]
fn cancelling_a_hung_sync_call_returns_at_once() {
    let photo = need_photo!();
    let (mock, p) = start(MockKind::Gemini, vec![Fault::Hang(Duration::from_secs(5))]);
    let (r, took, _) = edit_cancelled_after(&*p, photo, Duration::from_millis(300));
    assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
    assert!(took < Duration::from_millis(300), "took {took:?}");
    assert!(
        EngineError::Cancelled.maybe_billed(),
        "a cancelled sync call may still be billed"
    );
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn a_job_created_by_an_abandoned_submit_is_cancelled_when_its_id_arrives() {
    let photo = need_photo!();
    for kind in [MockKind::Fal, MockKind::Replicate] {
        let (mock, p) = start(kind, vec![Fault::Hang(Duration::from_millis(700))]);
        let (r, took, _) = edit_cancelled_after(&*p, photo, Duration::from_millis(200));
        assert!(matches!(r, Err(EngineError::Cancelled)), "{kind:?}: {r:?}");
        assert!(took < Duration::from_millis(300), "{kind:?}: took {took:?}");
        assert!(
            eventually(Duration::from_secs(4), || mock.cancels() == 1),
            "{kind:?}: the orphaned job was cancelled"
        );
    }
}

// ---------------------------------------------------------------- circuit breaker and concurrency

#[test]
fn the_circuit_opens_after_repeated_503s_and_closes_after_a_success() {
    let photo = need_photo!();
    let (mock, p) = start_with(MockKind::Gemini, vec![Fault::Unavailable503; 5], |c| {
        c.max_attempts = Some(1);
        c.tuning.circuit_open_s = Some(0.5);
    });
    for i in 0..5 {
        let err = edit(&*p, photo).unwrap_err();
        assert!(
            matches!(&err, EngineError::Unavailable { detail, .. } if detail.contains("HTTP 503")),
            "edit {i}: {err:?}"
        );
    }
    let err = edit(&*p, photo).unwrap_err();
    assert!(
        matches!(&err, EngineError::Unavailable { detail, .. } if detail.contains("circuit open") && detail.contains("retrying after")),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 5, "an open circuit sends nothing");
    std::thread::sleep(Duration::from_millis(600));
    edit(&*p, photo).expect("half-open lets one through, and it succeeds");
    edit(&*p, photo).expect("closed again");
    assert_eq!(mock.requests().len(), 7);
}

#[test]
fn at_most_concurrency_edits_are_in_flight_and_waiting_is_cancellable() {
    let photo = need_photo!();
    let (mock, p) = start_with(
        MockKind::Gemini,
        vec![Fault::Latency(Duration::from_millis(300)); 6],
        |c| c.concurrency = Some(2),
    );
    let waited = std::sync::Mutex::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let job = Job::default();
                    let r = job.run(&*p, &input(photo));
                    if job
                        .log()
                        .iter()
                        .any(|m| m == "waiting for a free gemini slot")
                    {
                        *waited.lock().unwrap() = true;
                    }
                    r
                })
            })
            .collect();
        for h in handles {
            assert_graded(&h.join().unwrap().expect("edit"), &photo.rgb);
        }
    });
    assert_eq!(
        mock.max_in_flight(),
        2,
        "the mock saw at most 2 requests at once"
    );
    assert!(*waited.lock().unwrap(), "some edits had to wait for a slot");

    // A job cancelled while waiting for a slot returns without sending anything.
    let (mock, p) = start_with(
        MockKind::Gemini,
        vec![Fault::Latency(Duration::from_millis(1500))],
        |c| c.concurrency = Some(1),
    );
    std::thread::scope(|s| {
        let busy = s.spawn(|| edit(&*p, photo));
        std::thread::sleep(Duration::from_millis(200));
        let (r, took, log) = edit_cancelled_after(&*p, photo, Duration::from_millis(200));
        assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
        assert!(took < Duration::from_millis(300));
        assert!(log.iter().any(|m| m == "waiting for a free gemini slot"));
        busy.join().unwrap().expect("the busy edit");
    });
    assert_eq!(mock.requests().len(), 1);
}

// ---------------------------------------------------------------- health and configuration

#[test]
fn health_reports_reachability_and_keys_without_leaking_them() {
    for kind in [
        MockKind::Gemini,
        MockKind::OpenAi,
        MockKind::Fal,
        MockKind::Replicate,
        MockKind::ComfyUi,
    ] {
        let (mock, p) = start(kind, vec![]);
        let h = p.health();
        assert!(h.reachable, "{kind:?}: {}", h.detail);
        assert!(h.detail.starts_with("ok"), "{kind:?}: {}", h.detail);
        assert_eq!(
            h.key_present,
            if kind == MockKind::ComfyUi {
                None
            } else {
                Some(true)
            }
        );
        assert!(!h.detail.contains(TEST_KEY));
        assert_eq!(mock.billed(), 0, "health spends nothing");
        assert!(mock.requests().iter().all(|r| r.method == "GET"));

        if kind != MockKind::ComfyUi {
            let (_mock, p) = start_with(kind, vec![], |c| c.api_key = Some(WRONG_KEY.into()));
            let h = p.health();
            assert!(
                h.reachable && h.detail.contains("rejected"),
                "{kind:?}: {}",
                h.detail
            );
            assert!(!h.detail.contains(WRONG_KEY));
        }
    }
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = provider("comfyui", &cfg(&format!("http://127.0.0.1:{port}"))).unwrap();
    let h = p.health();
    assert!(
        !h.reachable && h.detail.contains("unreachable"),
        "{}",
        h.detail
    );
}

#[test]
fn an_unreachable_server_is_unavailable_after_retries() {
    let photo = need_photo!();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for name in ["gemini", "fal", "comfyui"] {
        let p = provider(name, &cfg(&format!("http://127.0.0.1:{port}"))).unwrap();
        let job = Job::default();
        let err = job.run(&*p, &input(photo)).unwrap_err();
        assert!(
            matches!(err, EngineError::Unavailable { .. }),
            "{name}: {err:?}"
        );
        assert!(!err.maybe_billed(), "nothing reached the server");
        assert_eq!(
            job.log()
                .iter()
                .filter(|m| m.starts_with("retrying in"))
                .count(),
            3,
            "{name}: {:?}",
            job.log()
        );
    }
}

#[test]
fn defaults_and_configuration_errors() {
    let quiet = |model: Option<&str>| ProviderConfig {
        model: model.map(str::to_string),
        tuning: Tuning {
            ignore_env: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let expect = [
        (
            "gemini",
            "gemini-2.5-flash-image",
            0.039,
            Some("GEMINI_API_KEY"),
        ),
        ("openai", "gpt-image-1", 0.25, Some("OPENAI_API_KEY")),
        ("fal", "fal-ai/flux-pro/kontext", 0.04, Some("FAL_KEY")),
        (
            "replicate",
            "black-forest-labs/flux-kontext-pro",
            0.04,
            Some("REPLICATE_API_TOKEN"),
        ),
        ("comfyui", "workflow", 0.0, None),
    ];
    assert_eq!(
        NAMES.to_vec(),
        expect.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    for (name, model, price, var) in expect {
        let p = provider(name, &quiet(None)).unwrap();
        assert_eq!(
            (p.name(), p.model(), p.price_per_image(), p.key_var()),
            (name, model, price, var)
        );
        assert_eq!(p.has_key(), var.is_none());
    }
    assert_eq!(
        provider("gemini", &quiet(Some("gemini-3-pro-image")))
            .unwrap()
            .price_per_image(),
        0.134
    );

    let err = serde_json::from_value::<ProviderConfig>(json!({"timeout": 3})).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let bad = |c: ProviderConfig| {
        provider("gemini", &c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(bad(ProviderConfig {
        base_url: Some("ftp://x".into()),
        ..quiet(None)
    })
    .contains("not an http(s) URL"));
    assert!(bad(ProviderConfig {
        concurrency: Some(0),
        ..quiet(None)
    })
    .contains("concurrency"));
    assert!(bad(ProviderConfig {
        request_timeout_s: Some(-1.0),
        ..quiet(None)
    })
    .contains("request_timeout_s"));
    assert!(provider("midjourney", &quiet(None))
        .err()
        .unwrap()
        .to_string()
        .contains("unknown engine"));

    // Trailing /v1 as SDK docs spell it.
    let mock = MockServer::start(MockKind::OpenAi, vec![]);
    let p = provider(
        "openai",
        &ProviderConfig {
            base_url: Some(format!("{}/v1/", mock.base_url)),
            ..cfg(&mock.base_url)
        },
    )
    .unwrap();
    assert!(p.health().detail.starts_with("ok"));

    let c = ProviderConfig {
        api_key: Some(TEST_KEY.into()),
        ..quiet(None)
    };
    let debug = format!("{c:?}");
    assert!(
        debug.contains("<set>") && !debug.contains(TEST_KEY),
        "{debug}"
    );
    assert!(format!("{:?}", quiet(None)).contains("<unset>"));
}

#[test]
fn mock_grade_is_what_the_mocks_apply() {
    let photo = need_photo!();
    let graded = mock_grade(&photo.rgb);
    assert_eq!(graded.dimensions(), photo.rgb.dimensions());
    assert_ne!(graded.as_raw(), photo.rgb.as_raw(), "a visible grade");
    let mean = |img: &image::RgbImage, c: usize| {
        img.pixels().map(|p| p.0[c] as f64).sum::<f64>() / (img.width() * img.height()) as f64
    };
    let diff: f64 = (0..3)
        .map(|c| (mean(&graded, c) - mean(&photo.rgb, c)).abs())
        .sum();
    assert!(
        diff > 1.0,
        "the grade changes the colours measurably ({diff})"
    );
}

#[test]
fn mocks_accept_the_other_spellings_real_services_accept() {
    let photo = need_photo!();
    let http = reqwest::blocking::Client::new();

    // Gemini: camelCase request keys and the key as a query parameter; answers camelCase.
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let body = json!({"contents": [{"parts": [
        {"text": "warm"},
        {"inlineData": {"mimeType": "image/png", "data": base64::engine::general_purpose::STANDARD.encode(&photo.png)}}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}});
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash-image:generateContent?key={TEST_KEY}",
        mock.base_url
    );
    let v: Value = http.post(url).json(&body).send().unwrap().json().unwrap();
    let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
    let last = parts
        .iter()
        .rev()
        .find(|p| p.get("inlineData").is_some())
        .expect("camelCase inlineData");
    let got = image::load_from_memory(&b64decode(&last["inlineData"]["data"]))
        .unwrap()
        .to_rgb8();
    assert_eq!(got.as_raw(), mock_grade(&photo.rgb).as_raw());
    drop(mock);

    // OpenAI: the SDK's `image[]` name for a list of files.
    let mock = MockServer::start(MockKind::OpenAi, vec![]);
    let form = reqwest::blocking::multipart::Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "warm")
        .part(
            "image[]",
            reqwest::blocking::multipart::Part::bytes(photo.png.clone()).file_name("a.png"),
        );
    let resp = http
        .post(format!("{}/v1/images/edits", mock.base_url))
        .bearer_auth(TEST_KEY)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    assert!(v["data"][0]["b64_json"].is_string());
}

#[test]
fn a_presets_own_model_runs_on_the_shared_engine_with_its_own_input_and_price() {
    let photo = need_photo!();
    let (mock, p) = start_with(MockKind::Replicate, vec![], |c| {
        c.preset_models
            .insert("virtual-staging".into(), "qwen/qwen-image-edit".into());
        c.price_per_image = Some(0.05);
    });
    assert_eq!(
        p.preset_model("virtual-staging"),
        Some("qwen/qwen-image-edit")
    );
    assert_eq!(p.preset_model("warm-film"), None);
    // The configured price is for the configured model; another model has its list price.
    assert_eq!(p.price_for(p.model()), 0.05);
    assert_eq!(p.price_for("qwen/qwen-image-edit"), 0.03);
    let staging = EditInput {
        model: Some("qwen/qwen-image-edit"),
        ..input(photo)
    };
    let out = Job::default().run(&*p, &staging).expect("edit");
    let creates = mock.requests_to("POST", "/v1/models/*");
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].path,
        "/v1/models/qwen/qwen-image-edit/predictions"
    );
    let sent = &creates[0].json.as_ref().unwrap()["input"];
    assert!(sent["image"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert!(sent.get("input_image").is_none(), "{sent}");
    assert_eq!(sent["output_format"], "png");
    assert_eq!(sent["aspect_ratio"], "match_input_image");
    // The staging mock furnished the room and left the rest.
    let staged = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
    let expected = luminary_engines::mock::stage_room(&photo.rgb);
    assert_eq!(staged, expected);
    // The engine's own model is untouched for the next edit.
    Job::default().run(&*p, &input(photo)).expect("edit");
    let creates = mock.requests_to("POST", "/v1/models/*");
    assert_eq!(
        creates[1].path,
        "/v1/models/black-forest-labs/flux-kontext-pro/predictions"
    );
}

/// #21 point 5: the staging and background-removal models fail as every other model does —
/// a refusal is `Refused`, a wrong key `Auth` naming the variable, a job past the total
/// timeout `Timeout` with the remote job cancelled.
#[test]
fn the_staging_and_cutout_models_fail_with_the_same_errors_as_the_others() {
    let photo = need_photo!();
    let models = [
        (
            MockKind::Replicate,
            "qwen/qwen-image-edit",
            "REPLICATE_API_TOKEN",
            Task::Edit,
        ),
        (MockKind::Fal, "fal-ai/birefnet/v2", "FAL_KEY", Task::Matte),
        (MockKind::Fal, "fal-ai/esrgan", "FAL_KEY", Task::Upscale(2)),
        (
            MockKind::Replicate,
            "nightmareai/real-esrgan",
            "REPLICATE_API_TOKEN",
            Task::Upscale(4),
        ),
        (
            MockKind::Replicate,
            "men1scus/birefnet:f74986db0355b58403ed20963af156525e2891ea3c2d499bfbfb2a28cd87c5d7",
            "REPLICATE_API_TOKEN",
            Task::Matte,
        ),
    ];
    for (kind, model, var, task) in models {
        let on = |i: EditInput<'static>| EditInput {
            model: Some(model),
            task,
            ..i
        };
        let input = on(util::input(photo));
        let (mock, p) = start(kind, vec![Fault::Refuse]);
        let err = Job::default().run(&*p, &input).unwrap_err();
        assert!(
            matches!(err, EngineError::Refused { .. }),
            "{model}: {err:?}"
        );
        assert_eq!(mock.faults_left(), 0, "{model}: one submit");

        let (_mock, p) = start_with(kind, vec![], |c| c.api_key = Some(WRONG_KEY.into()));
        let err = Job::default().run(&*p, &input).unwrap_err();
        assert!(
            matches!(err, EngineError::Auth { var: v, .. } if v == var),
            "{model}: {err:?}"
        );

        // Past Replicate's `Prefer: wait` (1 s in the mock), so the job is running remotely.
        // With 3 s to spare after it: a create still in flight at the deadline is cut off by
        // its own timeout, so the client never learns the id to cancel (Replicate then
        // cancels it itself through `Cancel-After`, which the mock does not model), and a
        // CI machine busy with builds took longer than 2.5 s to upload and create.
        let (mock, p) = start_with(kind, vec![Fault::SlowJob(Duration::from_secs(10))], |c| {
            c.total_timeout_s = Some(4.0)
        });
        let err = Job::default().run(&*p, &input).unwrap_err();
        assert!(
            matches!(err, EngineError::Timeout { .. }),
            "{model}: {err:?}"
        );
        // The cancel is sent at once but acknowledged in the background (the job does not
        // wait more than 800 ms for it): on a loaded machine it may land just after.
        assert!(
            eventually(Duration::from_secs(10), || mock.cancels() == 1),
            "{model}: the remote job was not cancelled ({} cancels)",
            mock.cancels()
        );
    }
}

/// #21 point 4: super-resolution models get the factor the way each expects it and answer
/// the tile that much larger.
#[test]
fn upscaling_models_get_their_factor_and_answer_larger_tiles() {
    let photo = need_photo!();
    for (kind, model, scale) in [
        (MockKind::Fal, "fal-ai/esrgan", 2u32),
        (MockKind::Replicate, "nightmareai/real-esrgan", 4),
    ] {
        let (mock, p) = start(kind, vec![]);
        let input = EditInput {
            model: Some(model),
            task: Task::Upscale(scale),
            ..input(photo)
        };
        let out = Job::default().run(&*p, &input).expect("edit");
        assert_eq!(
            (out.width, out.height),
            (photo.width * scale, photo.height * scale),
            "{model}"
        );
        let sent = mock
            .requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.json.is_some())
            .unwrap();
        let body = sent.json.unwrap();
        match kind {
            MockKind::Fal => {
                assert_eq!(sent.path, "/fal-ai/esrgan");
                assert_eq!(
                    (body["scale"].as_u64(), body["model"].as_str()),
                    (Some(2), Some("RealESRGAN_x2plus")),
                    "{body}"
                );
                assert!(body.get("prompt").is_none(), "{body}");
            }
            _ => {
                assert_eq!(sent.path, "/v1/models/nightmareai/real-esrgan/predictions");
                assert_eq!(body["input"]["scale"].as_u64(), Some(4), "{body}");
                assert_eq!(body["input"]["face_enhance"], json!(false), "{body}");
                assert!(
                    body["input"]["image"].is_string() && body["input"].get("prompt").is_none(),
                    "{body}"
                );
            }
        }
        assert!((p.price_for(model) - 0.002).abs() < 1e-12);
    }
}
