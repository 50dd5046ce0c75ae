//! Mock of Gemini `generateContent`: accepts snake_case and camelCase request keys, the key as
//! `x-goog-api-key` or `?key=`, answers camelCase, and sends refusals with HTTP 200.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::answers::{b64, edit_bytes, grade_bytes, torn_grade};
use super::shared::{secs, Fault, Recorded, Resp, Shared, TEST_KEY};

fn field<'v>(v: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn error(code: u16, status: &str, message: &str, details: Value) -> Resp {
    Resp::json(
        code,
        &json!({"error": {"code": code, "message": message, "status": status, "details": details}}),
    )
}

pub(crate) fn handle(shared: &Shared, rec: &Recorded) -> Resp {
    let key = rec
        .header("x-goog-api-key")
        .map(str::to_string)
        .or_else(|| rec.query_param("key"));
    match key.as_deref() {
        None => {
            return error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                json!([]),
            )
        }
        Some(k) if k != TEST_KEY => {
            return error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"}}]),
            )
        }
        Some(_) => {}
    }
    let Some(rest) = rec.path.strip_prefix("/v1beta/models/") else {
        return Resp::not_found();
    };
    if rec.method == "GET" {
        return Resp::json(
            200,
            &json!({"name": format!("models/{rest}"), "displayName": "Nano Banana (mock)", "supportedGenerationMethods": ["generateContent"]}),
        );
    }
    let Some(model) = rest.strip_suffix(":generateContent") else {
        return Resp::not_found();
    };
    if rec.method != "POST" {
        return Resp::not_found();
    }
    let Some(body) = &rec.json else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            json!([]),
        );
    };

    let mut image: Option<Vec<u8>> = None;
    for content in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for part in content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(inline) = field(part, "inlineData", "inline_data") {
                let mime = field(inline, "mimeType", "mime_type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if ![
                    "image/png",
                    "image/jpeg",
                    "image/webp",
                    "image/heic",
                    "image/heif",
                ]
                .contains(&mime)
                {
                    return error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Unsupported MIME type: {mime}"),
                        json!([]),
                    );
                }
                image = inline
                    .get("data")
                    .and_then(Value::as_str)
                    .and_then(|d| super::answers::from_data_uri(&format!("data:x;base64,{d}")));
            }
        }
    }
    let Some(image) = image else {
        return error(
            400,
            "INVALID_ARGUMENT",
            "Request contains no image (mock needs one inline_data part).",
            json!([]),
        );
    };
    let wants_image = field(body, "generationConfig", "generation_config")
        .and_then(|g| field(g, "responseModalities", "response_modalities"))
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x.as_str() == Some("IMAGE")));
    if !wants_image {
        return error(
            400,
            "INVALID_ARGUMENT",
            "This model only supports responseModalities including IMAGE (mock).",
            json!([]),
        );
    }

    let fault = shared.next_fault();
    let response_id = format!("mock-resp-{}", shared.next_id());
    let usage = json!({"promptTokenCount": 1300, "candidatesTokenCount": 1290, "totalTokenCount": 2590,
                       "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]});
    match &fault {
        Some(Fault::RateLimit { retry_after }) => {
            let delay = format!("{}s", secs(retry_after));
            return error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                json!([{"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                       {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]),
            );
        }
        Some(Fault::Unavailable503) => {
            return error(
                503,
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
                json!([]),
            );
        }
        Some(Fault::Hang(d) | Fault::Latency(d) | Fault::SlowJob(d)) => {
            if matches!(fault, Some(Fault::Hang(_))) {
                // Accepted and generating: the real service bills this even if nobody listens.
                shared.sync_billed.fetch_add(1, Ordering::SeqCst);
            }
            shared.sleep(*d);
            if matches!(fault, Some(Fault::Hang(_))) {
                return Resp::json(
                    504,
                    &json!({"error": {"code": 504, "status": "DEADLINE_EXCEEDED", "message": "mock hung"}}),
                );
            }
        }
        _ => {}
    }
    shared.sync_billed.fetch_add(1, Ordering::SeqCst);
    let reply = match fault {
        Some(Fault::MalformedJson) => {
            return Resp::truncated_json(
                &json!({"candidates": [{"content": {"parts": [{"text": "x".repeat(100)}]}}]}),
            )
        }
        Some(Fault::Refuse) => {
            json!({"candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_SAFETY", "index": 0}],
                                      "modelVersion": model, "responseId": response_id})
        }
        Some(Fault::BlockPrompt) => json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                           "usageMetadata": {"promptTokenCount": 1300, "totalTokenCount": 1300}, "modelVersion": model}),
        Some(Fault::TextOnly) => json!({"candidates": [{"content": {"role": "model", "parts": [
                                            {"text": "I can't edit this photo, but I can describe a warm film look: lift the shadows and add grain."}]},
                                         "finishReason": "STOP", "index": 0}],
                                        "usageMetadata": usage, "modelVersion": model, "responseId": response_id}),
        other => {
            let edited = if matches!(other, Some(Fault::Torn)) {
                edit_bytes(&image, false, torn_grade)
            } else {
                grade_bytes(&image, matches!(other, Some(Fault::WrongAspect)))
            };
            let (png, _, _) = match edited {
                Ok(x) => x,
                Err(e) => {
                    return error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Unable to process input image: {e}"),
                        json!([]),
                    )
                }
            };
            // A "thought" image first (Gemini 3 Pro sends interim ones) and a text part, as the
            // real service may: the client must take the last non-thought image.
            let thought = grade_bytes(&tiny_png(), false)
                .map(|t| t.0)
                .unwrap_or_default();
            json!({"candidates": [{"content": {"role": "model", "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": b64(&thought)}, "thought": true},
                        {"text": "Here is the photo with a warm film look."},
                        {"inlineData": {"mimeType": "image/png", "data": b64(&png)}, "thoughtSignature": "c2ln"}]},
                    "finishReason": "STOP", "index": 0}],
                   "usageMetadata": usage, "modelVersion": model, "responseId": response_id})
        }
    };
    Resp::json(200, &reply)
}

fn tiny_png() -> Vec<u8> {
    let mut png = Vec::new();
    let _ = image::RgbImage::from_pixel(8, 8, image::Rgb([128, 64, 32]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
    png
}
