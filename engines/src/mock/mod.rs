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

mod comfyui;
mod fal;
mod gemini;
mod grade;
mod matte;
mod openai;
mod replicate;
mod stage;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub use grade::{grade_pixel, mock_grade};
pub use matte::{cutout, segment};
pub use stage::{furniture_at, stage_room};

/// The key every mock accepts. Anything else gets the provider's own 401/403 answer.
pub const TEST_KEY: &str = "lum-test-5f3a9c2e-key";

/// Which provider a mock imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockKind {
    /// `POST /v1beta/models/{model}:generateContent`.
    Gemini,
    /// `POST /v1/images/edits` (multipart).
    OpenAi,
    /// fal queue: submit, status, result, cancel.
    Fal,
    /// Replicate predictions with `Prefer: wait`.
    Replicate,
    /// ComfyUI: upload, prompt, history, view, queue, interrupt.
    ComfyUi,
}

/// A misbehaviour for one billable submit (see the module documentation).
#[derive(Clone, Debug)]
pub enum Fault {
    /// HTTP 429. `retry_after` is the `Retry-After` header value in seconds (OpenAI also gets
    /// `retry-after-ms`), or Gemini's `RetryInfo.retryDelay` ("1s", "1.5s").
    RateLimit {
        /// Header value or retryDelay.
        retry_after: String,
    },
    /// HTTP 503 without a request id: the submit never reached the service.
    Unavailable503,
    /// Accept the submit (and bill it), then say nothing for this long.
    Hang(Duration),
    /// HTTP 200 with truncated JSON (sync providers: the reply; fal: the result; Replicate: the
    /// create reply; ComfyUI: the `/prompt` reply).
    MalformedJson,
    /// The provider's content refusal (Gemini: `finishReason: IMAGE_SAFETY`).
    Refuse,
    /// Gemini's other refusal shape: `promptFeedback.blockReason`; others treat it as `Refuse`.
    BlockPrompt,
    /// Text where the image should be.
    TextOnly,
    /// A square crop of the graded image, far from the input's aspect ratio.
    WrongAspect,
    /// The graded image with its halves moved apart (the top right, the bottom left, by
    /// 1/200 of the width each): a model that redrew the scene unevenly, which no single
    /// motion lines up. (Gemini only.)
    Torn,
    /// Queue providers: the job stays in progress this long (sync providers: like `Latency`).
    SlowJob(Duration),
    /// Answer (or finish the job) only after this long; for concurrency tests.
    Latency(Duration),
}

/// One multipart part as received.
#[derive(Clone, Debug)]
pub struct MultipartPart {
    /// The `name` of the form field.
    pub name: String,
    /// The `filename`, for file parts.
    pub filename: Option<String>,
    /// The part's own `Content-Type`.
    pub content_type: Option<String>,
    /// The raw bytes.
    pub data: Vec<u8>,
}

/// One request the mock received, in arrival order.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string without `?` (empty if none).
    pub query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body parsed as JSON, if it is JSON.
    pub json: Option<Value>,
    /// Multipart parts, if the body is multipart/form-data.
    pub parts: Vec<MultipartPart>,
    /// When it arrived (to check that retries waited).
    pub at: Instant,
}

impl Recorded {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names of the multipart fields, in order.
    pub fn multipart_fields(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.name.clone()).collect()
    }

    /// The first multipart part with this name.
    pub fn part(&self, name: &str) -> Option<&MultipartPart> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// The value of a query parameter (percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    }
}

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

/// State shared by the accept loop and the request handlers.
pub(crate) struct Shared {
    pub kind: MockKind,
    pub base_url: String,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Recorded>>,
    pub sync_billed: AtomicUsize,
    pub cancels: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
    pub jobs: Mutex<HashMap<String, MockJob>>,
    /// Files served by the mock: fal/Replicate outputs, ComfyUI inputs and outputs.
    pub files: Mutex<HashMap<String, (Vec<u8>, &'static str)>>,
    /// The true matte of the pictures a test sends to segmentation models, if it knows it.
    pub matte: Mutex<Option<image::GrayImage>>,
    counter: AtomicU64,
    handlers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub fn next_fault(&self) -> Option<Fault> {
        self.faults.lock().unwrap().pop_front()
    }

    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// A uuid-shaped id, unique within this mock.
    pub fn uuid(&self) -> String {
        let n = self.next_id();
        format!(
            "{:08x}-4e1a-4b7c-8d2f-{:012x}",
            0x5eed_0000u32 + n as u32,
            n * 7919 + 17
        )
    }

    /// Sleeps, but wakes up when the mock is being dropped so tests never wait for a `Hang`.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A queued job of fal, Replicate or ComfyUI. Its state follows from the clock, so no thread
/// is needed to "run" it.
pub(crate) struct MockJob {
    pub created: Instant,
    pub queue_for: Duration,
    pub run_for: Duration,
    pub cancelled_at: Option<Instant>,
    pub fault: Option<Fault>,
    /// Counts toward [`MockServer::billed`] once started.
    pub billable: bool,
    /// The graded PNG and its size, or why the input could not be used.
    pub output: Result<(Vec<u8>, u32, u32), String>,
    /// Provider-specific: fal's `owner/app`, Replicate's output style, ComfyUI's queue number…
    pub tag: String,
    pub number: u64,
    /// A segmentation model's grey mask PNG (fal's `mask_image`), beside its cut-out.
    pub mask: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    Queued,
    Running,
    Done,
    Cancelled,
}

impl MockJob {
    pub fn new(
        queue_for: Duration,
        run_for: Duration,
        fault: Option<Fault>,
        output: Result<(Vec<u8>, u32, u32), String>,
    ) -> MockJob {
        MockJob {
            created: Instant::now(),
            queue_for,
            run_for,
            billable: !matches!(fault, Some(Fault::Refuse | Fault::BlockPrompt)),
            cancelled_at: None,
            fault,
            output,
            tag: String::new(),
            number: 0,
            mask: None,
        }
    }

    pub fn state(&self) -> JobState {
        if self.cancelled_at.is_some() {
            return JobState::Cancelled;
        }
        let e = self.created.elapsed();
        if e < self.queue_for {
            JobState::Queued
        } else if e < self.queue_for + self.run_for {
            JobState::Running
        } else {
            JobState::Done
        }
    }

    pub fn started(&self) -> bool {
        let until = self.cancelled_at.unwrap_or_else(Instant::now);
        until.saturating_duration_since(self.created) >= self.queue_for
    }

    /// Cancels a job that has not finished; `false` if it already had.
    pub fn cancel(&mut self) -> bool {
        match self.state() {
            JobState::Queued | JobState::Running => {
                self.cancelled_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }
}

/// How long jobs wait in the queue and run when no fault says otherwise. Short, so tests are
/// quick, but long enough that clients see IN_QUEUE/IN_PROGRESS and must poll.
pub(crate) const QUEUE_FOR: Duration = Duration::from_millis(60);
pub(crate) const RUN_FOR: Duration = Duration::from_millis(200);

/// The run time a fault asks for.
pub(crate) fn run_time(fault: &Option<Fault>) -> Duration {
    match fault {
        Some(Fault::SlowJob(d) | Fault::Latency(d)) => *d,
        // A hung submit's job keeps running well after the answer finally goes out, so that a
        // client that gave up meanwhile must cancel it.
        Some(Fault::Hang(d)) => *d + Duration::from_secs(5),
        _ => RUN_FOR,
    }
}

/// How long a super-resolution job runs in the mocks: tiles are many and quick.
pub(crate) fn upscale_time(fault: &Option<Fault>) -> Duration {
    match fault {
        None => Duration::from_millis(20),
        f => run_time(f),
    }
}

/// A response to send.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }

    pub fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    /// A 200 whose JSON is cut off in the middle.
    pub fn truncated_json(v: &Value) -> Resp {
        let text = v.to_string();
        let cut = text.len().min(40);
        Resp::raw(200, "application/json", text.as_bytes()[..cut].to_vec())
    }

    pub fn not_found() -> Resp {
        Resp::json(404, &serde_json::json!({"detail": "Not Found"}))
    }

    pub fn header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
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

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Decodes the received image, grades it with [`mock_grade`] and encodes a PNG. `square` crops
/// the centre square first (the `WrongAspect` fault).
pub(crate) fn grade_bytes(bytes: &[u8], square: bool) -> Result<(Vec<u8>, u32, u32), String> {
    edit_bytes(bytes, square, mock_grade)
}

/// The mock edit `edit` of the image in `bytes`, as PNG with its size.
pub(crate) fn edit_bytes(
    bytes: &[u8],
    square: bool,
    edit: fn(&image::RgbImage) -> image::RgbImage,
) -> Result<(Vec<u8>, u32, u32), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?;
    let mut rgb = img.to_rgb8();
    if square {
        let side = rgb.width().min(rgb.height());
        let x = (rgb.width() - side) / 2;
        let y = (rgb.height() - side) / 2;
        rgb = image::imageops::crop_imm(&rgb, x, y, side, side).to_image();
    }
    let graded = edit(&rgb);
    let mut png = Vec::new();
    graded
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok((png, graded.width(), graded.height()))
}

/// [`mock_grade`], then the halves moved apart (the `Torn` fault).
pub(crate) fn torn_grade(img: &image::RgbImage) -> image::RgbImage {
    let graded = mock_grade(img);
    let (w, h) = graded.dimensions();
    let d = (w / 200).max(3) as i64;
    image::RgbImage::from_fn(w, h, |x, y| {
        let dx = if y < h / 2 { -d } else { d };
        let sx = (x as i64 + dx).clamp(0, w as i64 - 1) as u32;
        *graded.get_pixel(sx, y)
    })
}

/// The bytes of a `data:…;base64,…` URI.
pub(crate) fn from_data_uri(uri: &str) -> Option<Vec<u8>> {
    let rest = uri.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bearer token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(rec: &Recorded) -> Option<&str> {
    rec.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Parses a fault's retry-after string as seconds.
pub(crate) fn secs(s: &str) -> f64 {
    s.trim().trim_end_matches('s').parse().unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

/// A segmentation model's answer to the image in `bytes`: its RGBA cut-out PNG with size,
/// and its grey mask PNG.
pub(crate) fn matte_bytes(
    shared: &Shared,
    bytes: &[u8],
) -> Result<((Vec<u8>, u32, u32), Vec<u8>), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?
        .to_rgb8();
    let matte = matte::segment(&img, shared.matte.lock().unwrap().as_ref());
    let png = |img: image::DynamicImage| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| format!("cannot encode PNG: {e}"))?;
        Ok(out)
    };
    let cut = png(image::DynamicImage::ImageRgba8(matte::cutout(&img, &matte)))?;
    let mask = png(image::DynamicImage::ImageLuma8(matte))?;
    Ok(((cut, img.width(), img.height()), mask))
}

/// A super-resolution model's answer: the picture `scale` times larger (Catmull-Rom), PNG.
pub(crate) fn upscale_bytes(bytes: &[u8], scale: u32) -> Result<(Vec<u8>, u32, u32), String> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| format!("cannot decode the input image: {e}"))?
        .to_rgb8();
    let (w, h) = (img.width() * scale, img.height() * scale);
    let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::CatmullRom);
    // Fast compression: a 4× tile is 12 MB of pixels, and a 24 MP upscale has 117 of them.
    let mut out = Vec::new();
    use image::ImageEncoder;
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Sub,
    )
    .write_image(big.as_raw(), w, h, image::ExtendedColorType::Rgb8)
    .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok((out, w, h))
}

/// The segmentation apps the mocks host (by the model's name, as the real services route).
pub(crate) fn hosts_matting(model: &str) -> bool {
    model.contains("birefnet")
}

/// The super-resolution apps the mocks host.
pub(crate) fn hosts_upscaler(model: &str) -> bool {
    model.contains("esrgan")
}
