//! What the mock server (`mod.rs`) and every provider's handlers share: the kinds and
//! faults a test picks, the requests recorded, the server's state and its queued jobs, and
//! the responses. Below both, so no provider reaches back into the server.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// State shared by the accept loop and the request handlers.
pub(crate) struct Shared {
    pub kind: MockKind,
    pub base_url: String,
    pub(super) faults: Mutex<VecDeque<Fault>>,
    pub(super) log: Mutex<Vec<Recorded>>,
    pub sync_billed: AtomicUsize,
    pub cancels: AtomicUsize,
    pub(super) in_flight: AtomicUsize,
    pub(super) max_in_flight: AtomicUsize,
    pub(super) stop: AtomicBool,
    pub jobs: Mutex<HashMap<String, MockJob>>,
    /// Files served by the mock: fal/Replicate outputs, ComfyUI inputs and outputs.
    pub files: Mutex<HashMap<String, (Vec<u8>, &'static str)>>,
    /// The true matte of the pictures a test sends to segmentation models, if it knows it.
    pub matte: Mutex<Option<image::GrayImage>>,
    pub(super) counter: AtomicU64,
    pub(super) handlers: Mutex<Vec<JoinHandle<()>>>,
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

/// The bearer token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(rec: &Recorded) -> Option<&str> {
    rec.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Parses a fault's retry-after string as seconds.
pub(crate) fn secs(s: &str) -> f64 {
    s.trim().trim_end_matches('s').parse().unwrap_or(1.0)
}

/// `%XX` and `+` in a query string decoded.
pub(super) fn percent_decode(s: &str) -> String {
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
