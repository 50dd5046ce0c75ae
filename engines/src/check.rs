//! What every reply must pass before the daemon sees it, and small helpers shared by the
//! providers (prompt text, data URIs, downloads).

use base64::Engine as _;

use crate::error::clip;
use crate::http::{Job, Transport};
use crate::retry::{get_step, retrying, Step};
use crate::{EditInput, EngineError};

/// Generative engines pick their output size from a fixed list (Gemini 1248×832 for 3:2, Kontext
/// 1248×832…), so the aspect ratio is close to the input's but rarely exact. More than 15 % off
/// means the engine cropped or padded, and the daemon's full-resolution transfer would misalign.
pub(crate) const ASPECT_TOLERANCE: f64 = 1.15;

/// A decoded, checked reply.
pub(crate) struct Checked {
    pub mime: String,
    pub width: u32,
    pub height: u32,
}

pub(crate) fn check_image(
    engine: &str,
    bytes: &[u8],
    input: &EditInput<'_>,
) -> Result<Checked, EngineError> {
    let bad = |detail: String| EngineError::BadReply {
        engine: engine.to_string(),
        detail,
    };
    if bytes.is_empty() {
        return Err(bad("the image is empty (0 bytes)".into()));
    }
    let format = match image::guess_format(bytes) {
        Ok(f) => f,
        Err(_) => {
            let head = &bytes[..bytes.len().min(120)];
            return Err(match std::str::from_utf8(head) {
                Ok(text) => bad(format!(
                    "got text instead of an image: \"{}\"",
                    clip(text, 100)
                )),
                Err(_) => bad(format!(
                    "got {} bytes that are not an image format Luminary reads",
                    bytes.len()
                )),
            });
        }
    };
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| bad(format!("the {format:?} image does not decode: {e}")))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(bad(format!("the image is empty ({w}×{h})")));
    }
    if input.width > 0 && input.height > 0 {
        let want = input.width as f64 / input.height as f64;
        let got = w as f64 / h as f64;
        let off = (got / want).max(want / got);
        if off > ASPECT_TOLERANCE {
            return Err(bad(format!(
                "the image is {w}×{h} (aspect {got:.3}) but the input is {}×{} (aspect {want:.3}); more than {:.0} % apart",
                input.width,
                input.height,
                (ASPECT_TOLERANCE - 1.0) * 100.0
            )));
        }
    }
    Ok(Checked {
        mime: format.to_mime_type().to_string(),
        width: w,
        height: h,
    })
}

/// The prompt for providers without a negative field.
pub(crate) fn prompt_with_avoid(input: &EditInput<'_>) -> String {
    let neg = input.negative_prompt.trim();
    if neg.is_empty() {
        input.prompt.to_string()
    } else {
        format!("{}\n\nAvoid: {neg}", input.prompt.trim_end())
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn data_uri(input: &EditInput<'_>) -> String {
    format!("data:{};base64,{}", input.mime, b64(input.image))
}

/// Base64 as providers send it: standard alphabet, sometimes URL-safe, padding optional.
pub(crate) fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(&s)
        .or_else(|_| STANDARD_NO_PAD.decode(&s))
        .or_else(|_| URL_SAFE.decode(&s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&s))
        .ok()
}

/// File extension for a multipart upload's file name (some servers look at it).
pub(crate) fn extension(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/webp" => "webp",
        _ => "png",
    }
}

/// Fetches an output right away (Replicate and fal URLs expire within the hour). Accepts a
/// `data:` URI too (fal `sync_mode`). The key is not sent: output URLs are public CDN links and
/// may point anywhere.
pub(crate) fn download(http: &Transport, job: &Job<'_>, url: &str) -> Result<Vec<u8>, EngineError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, payload) = rest
            .split_once(',')
            .ok_or_else(|| job.bad_reply("malformed data: URI in the reply"))?;
        if !meta.ends_with(";base64") {
            return Err(job.bad_reply("the data: URI in the reply is not base64"));
        }
        return decode_b64(payload)
            .ok_or_else(|| job.bad_reply("the data: URI in the reply is not valid base64"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(job.bad_reply(format!("expected an image URL, got \"{}\"", clip(url, 100))));
    }
    job.progress("downloading the result");
    let reply = retrying(job, false, || {
        let r = http.send(job, http.client.get(url), None);
        match get_step(job, r, "download", &[408, 425, 429, 500, 502, 503, 504]) {
            Step::Done(reply) if !reply.ok() => Step::Fail(job.bad_reply(format!(
                "downloading the result failed with HTTP {}: {}",
                reply.status,
                reply.text()
            ))),
            other => other,
        }
    })?;
    Ok(reply.body)
}

/// Picks the supported ratio closest to `w:h` in log space (so 2:1 and 1:2 are equally far
/// from 1:1). Returns the index into `ratios`.
pub(crate) fn closest_ratio(w: u32, h: u32, ratios: &[(u32, u32)]) -> usize {
    let want = (w.max(1) as f64 / h.max(1) as f64).ln();
    let mut best = (0, f64::INFINITY);
    for (i, (rw, rh)) in ratios.iter().enumerate() {
        let d = ((*rw as f64 / *rh as f64).ln() - want).abs();
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_ratio_in_log_space() {
        let r = [(1, 1), (3, 2), (2, 3), (16, 9)];
        assert_eq!(closest_ratio(1024, 683, &r), 1);
        assert_eq!(closest_ratio(683, 1024, &r), 2);
        assert_eq!(closest_ratio(1920, 1080, &r), 3);
        assert_eq!(closest_ratio(100, 100, &r), 0);
    }

    #[test]
    fn aspect_check() {
        let mut png = Vec::new();
        image::RgbImage::new(100, 100)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let input = EditInput {
            image: &[],
            mime: "image/png",
            width: 150,
            height: 100,
            prompt: "",
            negative_prompt: "",
            model: None,
            task: Default::default(),
        };
        let err = check_image("x", &png, &input).err().unwrap().to_string();
        assert!(err.contains("100×100") && err.contains("15 %"), "{err}");
        let input = EditInput {
            width: 110,
            ..input
        };
        assert!(check_image("x", &png, &input).is_ok());
        assert!(check_image("x", b"I cannot do that", &input)
            .err()
            .unwrap()
            .to_string()
            .contains("text instead"));
        assert!(check_image("x", b"", &input)
            .err()
            .unwrap()
            .to_string()
            .contains("empty"));
    }
}
