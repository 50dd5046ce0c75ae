//! Mock of OpenAI `/v1/images/edits`: multipart with `image` or `image[]`, Bearer key, base64
//! reply, `moderation_blocked` refusals and the SDK's retry headers.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::answers::{b64, grade_bytes};
use super::shared::{bearer, secs, Fault, Recorded, Resp, Shared, TEST_KEY};

fn error(status: u16, message: &str, etype: &str, code: Value, request_id: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"message": message, "type": etype, "param": null, "code": code}}),
    )
    .header("x-request-id", request_id)
}

pub(crate) fn handle(shared: &Shared, rec: &Recorded) -> Resp {
    let request_id = format!("req_mock{:06}", shared.next_id());
    match bearer(rec) {
        Some(k) if k == TEST_KEY => {}
        Some(k) => {
            // The real message quotes a masked key; the client must not pass it on.
            let masked = format!("{}****{}", k.get(..3).unwrap_or(""), k.get(k.len().saturating_sub(4)..).unwrap_or(""));
            return error(
                401,
                &format!("Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."),
                "invalid_request_error",
                json!("invalid_api_key"),
                &request_id,
            );
        }
        None => {
            return error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                Value::Null,
                &request_id,
            )
        }
    }
    if rec.method == "GET" {
        if let Some(model) = rec.path.strip_prefix("/v1/models/") {
            return Resp::json(
                200,
                &json!({"id": model, "object": "model", "created": 1_745_000_000, "owned_by": "system"}),
            );
        }
        return Resp::not_found();
    }
    if rec.method != "POST" || rec.path != "/v1/images/edits" {
        return Resp::not_found();
    }
    let field = |name: &str| {
        rec.part(name)
            .map(|p| String::from_utf8_lossy(&p.data).to_string())
    };
    let Some(image) = rec.part("image").or_else(|| rec.part("image[]")) else {
        return error(
            400,
            "Missing required parameter: 'image'.",
            "invalid_request_error",
            json!("missing_required_parameter"),
            &request_id,
        );
    };
    if field("prompt").is_none_or(|p| p.is_empty()) {
        return error(
            400,
            "Missing required parameter: 'prompt'.",
            "invalid_request_error",
            json!("missing_required_parameter"),
            &request_id,
        );
    }
    let size = field("size").unwrap_or_else(|| "auto".into());

    let fault = shared.next_fault();
    match &fault {
        Some(Fault::RateLimit { retry_after }) => {
            let s = secs(retry_after);
            return error(
                429,
                "Rate limit reached for gpt-image-1 on images per minute (IPM): Limit 5, Used 5, Requested 1.",
                "requests",
                json!("rate_limit_exceeded"),
                &request_id,
            )
            .header("retry-after-ms", &format!("{}", (s * 1000.0).round() as u64))
            .header("retry-after", &format!("{}", s.ceil() as u64));
        }
        Some(Fault::Unavailable503) => {
            return error(
                503,
                "The server is overloaded or not ready yet.",
                "server_error",
                Value::Null,
                &request_id,
            );
        }
        Some(Fault::Refuse | Fault::BlockPrompt) => {
            return error(
                400,
                "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID. safety_violations=[sexual].",
                "image_generation_user_error",
                json!("moderation_blocked"),
                &request_id,
            );
        }
        Some(Fault::Hang(d)) => {
            shared.sync_billed.fetch_add(1, Ordering::SeqCst);
            shared.sleep(*d);
            return error(504, "mock hung", "server_error", Value::Null, &request_id);
        }
        Some(Fault::Latency(d) | Fault::SlowJob(d)) => shared.sleep(*d),
        _ => {}
    }
    shared.sync_billed.fetch_add(1, Ordering::SeqCst);
    let b64_json = match &fault {
        Some(Fault::MalformedJson) => {
            return Resp::truncated_json(
                &json!({"created": 1, "data": [{"b64_json": "x".repeat(100)}]}),
            )
        }
        Some(Fault::TextOnly) => {
            b64(b"I can't edit this photo, but here is a description of a warm film look.")
        }
        other => match grade_bytes(&image.data, matches!(other, Some(Fault::WrongAspect))) {
            Ok((png, _, _)) => b64(&png),
            Err(e) => {
                return error(
                    400,
                    &format!("Invalid image file or mode for image 1: {e}"),
                    "invalid_request_error",
                    json!("invalid_image_format"),
                    &request_id,
                )
            }
        },
    };
    Resp::json(
        200,
        &json!({"created": 1_760_000_000, "background": "opaque", "output_format": "png", "quality": "high", "size": size,
                "data": [{"b64_json": b64_json}],
                "usage": {"input_tokens": 1200, "input_tokens_details": {"image_tokens": 1150, "text_tokens": 50}, "output_tokens": 6240, "total_tokens": 7440}}),
    )
    .header("x-request-id", &request_id)
}
