//! In-process mock servers for every provider, following PROVIDERS.md's wire shapes and quirks,
//! for this crate's tests and the daemon's end-to-end tests.
//!
//! Each mock listens on 127.0.0.1 (port 0) on its own threads and stops when dropped. It checks
//! the key the way the real service does, decodes the image it received, applies
//! [`mock_grade`] (the "AI edit") and answers the provider's way: inline base64 (Gemini, OpenAI)
//! or a URL on the mock itself that the client must download (fal, Replicate, ComfyUI `/view`).
//!
//! **Faults are consumed one per billable submit**: Gemini `generateContent`, OpenAI
//! `/v1/images/edits`, fal's queue submit, Replicate's create and ComfyUI's `POST /prompt`. The
//! n-th submit gets the n-th fault of the list; submits after the list is used up succeed.
//! Status polls, result fetches and downloads never consume faults; a fault that concerns them
//! (a refusal, malformed JSON) is carried by the job its submit created.

mod answers;
mod comfyui;
mod fal;
mod gemini;
mod grade;
mod matte;
mod openai;
mod replicate;
mod shared;
mod stage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use grade::{grade_pixel, mock_grade};
pub use matte::{cutout, segment};
use shared::Shared;
pub use shared::{Fault, MockKind, MultipartPart, Recorded, TEST_KEY};
pub use stage::{furniture_at, stage_room};

/// A running mock; dropping it stops the server and joins its threads.
pub struct MockServer {
    /// `http://127.0.0.1:<port>`, to put in `ProviderConfig::base_url`.
    pub base_url: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a mock of `kind` whose billable submits get `faults` in order.
    pub fn start(kind: MockKind, faults: Vec<Fault>) -> MockServer {
        let server =
            tiny_http::Server::http("127.0.0.1:0").expect("mock: cannot listen on 127.0.0.1");
        let port = server
            .server_addr()
            .to_ip()
            .expect("mock: not an IP listener")
            .port();
        let base_url = format!("http://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            kind,
            base_url: base_url.clone(),
            faults: Mutex::new(faults.into()),
            log: Mutex::new(Vec::new()),
            sync_billed: AtomicUsize::new(0),
            cancels: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            jobs: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            matte: Mutex::new(None),
            counter: AtomicU64::new(0),
            handlers: Mutex::new(Vec::new()),
        });
        let theirs = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("mock-{kind:?}"))
            .spawn(move || {
                while !theirs.stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(20)) {
                        Ok(Some(req)) => {
                            let s = Arc::clone(&theirs);
                            let h = std::thread::spawn(move || handle(&s, req));
                            let mut hs = theirs.handlers.lock().unwrap();
                            hs.retain(|h| !h.is_finished());
                            hs.push(h);
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            })
            .expect("mock: cannot start a thread");
        MockServer {
            base_url,
            shared,
            accept: Some(accept),
        }
    }

    /// The true matte of what the test sends to segmentation models (any size: the mock
    /// answers it area-averaged to the picture it receives).
    pub fn set_matte(&self, truth: image::GrayImage) {
        *self.shared.matte.lock().unwrap() = Some(truth);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests whose method and path match (`path` may end with `*` for a prefix).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method == method
                    && if let Some(p) = path.strip_suffix('*') {
                        r.path.starts_with(p)
                    } else {
                        r.path == path
                    }
            })
            .collect()
    }

    /// Edits the real service would have charged for: sync calls answered 200 (or hung after
    /// acceptance), queue jobs that started running (minus refused ones, which fal and Replicate
    /// do not bill).
    pub fn billed(&self) -> usize {
        let jobs = self.shared.jobs.lock().unwrap();
        self.shared.sync_billed.load(Ordering::SeqCst)
            + jobs.values().filter(|j| j.billable && j.started()).count()
    }

    /// Remote cancels that hit a live job (fal cancel, Replicate cancel, ComfyUI interrupt or
    /// queue delete).
    pub fn cancels(&self) -> usize {
        self.shared.cancels.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Ids of the jobs created so far (fal request ids, Replicate prediction ids, ComfyUI
    /// prompt ids).
    pub fn job_ids(&self) -> Vec<String> {
        self.shared.jobs.lock().unwrap().keys().cloned().collect()
    }

    /// Faults not consumed yet.
    pub fn faults_left(&self) -> usize {
        self.shared.faults.lock().unwrap().len()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let handlers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.shared.handlers.lock().unwrap());
        for h in handlers {
            let _ = h.join();
        }
    }
}

fn handle(shared: &Shared, mut req: tiny_http::Request) {
    let method = req.method().as_str().to_ascii_uppercase();
    let url = req.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let _ = req.as_reader().read_to_end(&mut body);
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let json = serde_json::from_slice(&body).ok();
    let parts = if content_type.starts_with("multipart/form-data") {
        parse_multipart(&content_type, &body)
    } else {
        Vec::new()
    };
    let rec = Recorded {
        method,
        path,
        query,
        headers,
        body,
        json,
        parts,
        at: Instant::now(),
    };
    shared.log.lock().unwrap().push(rec.clone());

    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let resp = match shared.kind {
        MockKind::Gemini => gemini::handle(shared, &rec),
        MockKind::OpenAi => openai::handle(shared, &rec),
        MockKind::Fal => fal::handle(shared, &rec),
        MockKind::Replicate => replicate::handle(shared, &rec),
        MockKind::ComfyUi => comfyui::handle(shared, &rec),
    };
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);

    let mut response = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    for (n, v) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = req.respond(response);
}

fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<MultipartPart> {
    let Some(boundary) = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
    else {
        return Vec::new();
    };
    let delim = format!("--{}", boundary.trim_matches('"'));
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delim.as_bytes()) {
        rest = &rest[start + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest_after_crlf = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let Some(head_end) = find(rest_after_crlf, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest_after_crlf[..head_end]).to_string();
        let data_start = &rest_after_crlf[head_end + 4..];
        let end = find(data_start, format!("\r\n{delim}").as_bytes()).unwrap_or(data_start.len());
        let data = data_start[..end].to_vec();
        let mut name = String::new();
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = v.trim_matches('"').to_string();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_string());
                    }
                }
            } else if lower.starts_with("content-type:") {
                ctype = Some(line["content-type:".len()..].trim().to_string());
            }
        }
        parts.push(MultipartPart {
            name,
            filename,
            content_type: ctype,
            data,
        });
        rest = &data_start[end..];
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::percent_decode;

    #[test]
    fn multipart_round_trip() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt\r\n--XX\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\r\nxx\r\n--XX--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XX", body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].data, b"gpt");
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n\r\nxx");
        assert_eq!(percent_decode("a%20b+c%2F"), "a b c/");
    }
}
