//! HTTP calls that can be abandoned: each request runs on a helper thread while the caller
//! watches the job's cancellation flag and deadline.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;

use crate::config::Settings;
use crate::error::{clip, redact};
use crate::{Control, EngineError};

/// How often a waiting caller looks at the cancellation flag. The brief is "noticed within
/// ~200 ms"; 50 ms keeps that with room to spare and costs nothing.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// One edit in progress: who asked, until when, and how many billable sends so far.
pub(crate) struct Job<'a> {
    pub engine: &'static str,
    pub ctl: &'a Control<'a>,
    pub deadline: Instant,
    pub s: &'a Settings,
    pub attempts: Cell<u32>,
}

/// Why a wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    Cancelled,
    Deadline,
}

impl<'a> Job<'a> {
    pub fn new(engine: &'static str, ctl: &'a Control<'a>, s: &'a Settings) -> Job<'a> {
        Job {
            engine,
            ctl,
            deadline: Instant::now() + s.total_timeout,
            s,
            attempts: Cell::new(0),
        }
    }

    pub fn cancelled(&self) -> bool {
        (self.ctl.cancelled)()
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn progress(&self, msg: &str) {
        (self.ctl.progress)(msg)
    }

    /// Sleeps up to `d`, waking every [`TICK`] to check for cancellation and the deadline.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupt> {
        let until = Instant::now() + d;
        loop {
            if self.cancelled() {
                return Err(Interrupt::Cancelled);
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(Interrupt::Deadline);
            }
            if now >= until {
                return Ok(());
            }
            std::thread::sleep(TICK.min(until - now).min(self.deadline - now));
        }
    }

    /// The error for an interrupted wait: cancelled, or timed out at `stage`.
    pub fn interrupted(&self, why: Interrupt, stage: &'static str) -> EngineError {
        match why {
            Interrupt::Cancelled => EngineError::Cancelled,
            Interrupt::Deadline => EngineError::Timeout {
                engine: self.engine.to_string(),
                stage,
            },
        }
    }

    pub fn bad_reply(&self, detail: impl Into<String>) -> EngineError {
        EngineError::BadReply {
            engine: self.engine.to_string(),
            detail: detail.into(),
        }
    }

    pub fn config(&self, detail: impl Into<String>) -> EngineError {
        EngineError::Config {
            engine: self.engine.to_string(),
            detail: detail.into(),
        }
    }

    pub fn unavailable(&self, detail: impl Into<String>) -> EngineError {
        EngineError::Unavailable {
            engine: self.engine.to_string(),
            detail: detail.into(),
        }
    }
}

/// A complete HTTP reply (body read to the end).
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as one clipped line, for error messages.
    pub fn text(&self) -> String {
        clip(&String::from_utf8_lossy(&self.body), 300)
    }
}

/// Why no reply came back.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection was never established: the request certainly did not arrive.
    Connect {
        timeout: bool,
        detail: String,
    },
    /// The request left (maybe only partly) and no complete reply came: it may have arrived.
    Sent {
        timeout: bool,
        detail: String,
    },
    /// The request could not even be built (bad URL): a configuration problem.
    Invalid(String),
    Cancelled,
    Deadline,
}

/// Runs on the helper thread if the caller walked away before the reply arrived; queue providers
/// use it to cancel a job whose id the caller never saw, so it does not run (and bill) unseen.
pub(crate) type Orphan = Box<dyn FnOnce(Reply) + Send + 'static>;

#[derive(Default)]
struct Slot {
    result: Option<Result<Reply, reqwest::Error>>,
    abandoned: bool,
}

/// The engine's HTTP client (one connection pool per engine) and its timeouts.
pub(crate) struct Transport {
    pub client: Client,
    request_timeout: Duration,
    key: Option<String>,
}

impl Transport {
    pub fn new(s: &Settings, engine: &str) -> Result<Transport, EngineError> {
        let client = Client::builder()
            .connect_timeout(s.connect_timeout)
            .timeout(s.request_timeout)
            .user_agent(concat!("luminary-engines/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Config {
                engine: engine.to_string(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Transport {
            client,
            request_timeout: s.request_timeout,
            key: s.key.clone(),
        })
    }

    /// Sends a request and waits for the complete reply, abandoning it on cancellation or when
    /// the job's deadline passes. The per-request timeout never outlives the deadline, so an
    /// abandoned helper thread ends soon after.
    pub fn send(
        &self,
        job: &Job<'_>,
        req: RequestBuilder,
        orphan: Option<Orphan>,
    ) -> Result<Reply, SendError> {
        if job.cancelled() {
            return Err(SendError::Cancelled);
        }
        let remaining = job.remaining();
        if remaining.is_zero() {
            return Err(SendError::Deadline);
        }
        let timeout = self
            .request_timeout
            .min(remaining)
            .max(Duration::from_millis(1));
        let req = req
            .timeout(timeout)
            .build()
            .map_err(|e| SendError::Invalid(self.describe(&e)))?;
        let client = self.client.clone();
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("luminary-http".into())
            .spawn(move || {
                let result = client.execute(req).and_then(|resp| {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let body = resp.bytes()?.to_vec();
                    Ok(Reply {
                        status,
                        headers,
                        body,
                    })
                });
                let (lock, cv) = &*theirs;
                let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
                if slot.abandoned {
                    drop(slot);
                    if let (Ok(reply), Some(orphan)) = (result, orphan) {
                        orphan(reply);
                    }
                } else {
                    slot.result = Some(result);
                    cv.notify_all();
                }
            });
        if let Err(e) = spawned {
            return Err(SendError::Connect {
                timeout: false,
                detail: format!("cannot start an HTTP thread: {e}"),
            });
        }

        let (lock, cv) = &*shared;
        let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = slot.result.take() {
                return result.map_err(|e| self.classify(&e));
            }
            let why = if job.cancelled() {
                Some(SendError::Cancelled)
            } else if Instant::now() >= job.deadline + TICK {
                // A little grace: the request's own timeout fires at the deadline and gives a more
                // precise error than ours.
                Some(SendError::Deadline)
            } else {
                None
            };
            if let Some(why) = why {
                slot.abandoned = true;
                return Err(why);
            }
            slot = cv
                .wait_timeout(slot, TICK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Fires a best-effort request (remote cancel) and waits at most `wait` for it, so that a
    /// slow provider cannot hold up the host's cancellation; the helper finishes on its own.
    pub fn fire(&self, req: RequestBuilder, wait: Duration) -> bool {
        let Ok(req) = req.timeout(Duration::from_secs(10)).build() else {
            return false;
        };
        let client = self.client.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("luminary-cancel".into())
            .spawn(move || {
                let ok = client
                    .execute(req)
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                let _ = tx.send(ok);
            });
        spawned.is_ok() && rx.recv_timeout(wait).unwrap_or(false)
    }

    /// A plain blocking GET with a short timeout, for health checks.
    pub fn probe(&self, req: RequestBuilder) -> Result<Reply, String> {
        let timeout = self.request_timeout.min(Duration::from_secs(15));
        let resp = req.timeout(timeout).send().map_err(|e| self.describe(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().map_err(|e| self.describe(&e))?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn classify(&self, e: &reqwest::Error) -> SendError {
        let detail = self.describe(e);
        if e.is_builder() {
            SendError::Invalid(detail)
        } else if e.is_connect() {
            SendError::Connect {
                timeout: e.is_timeout(),
                detail,
            }
        } else {
            SendError::Sent {
                timeout: e.is_timeout(),
                detail,
            }
        }
    }

    /// The error with its cause chain but without the URL (which could carry a query key), and
    /// with the key removed in case some layer echoed it.
    pub fn describe(&self, e: &reqwest::Error) -> String {
        let mut text = String::new();
        let mut cur: Option<&dyn std::error::Error> = Some(e);
        let mut first = true;
        while let Some(err) = cur {
            let part = if first {
                // reqwest's own Display appends the URL; rebuild it from the kind instead.
                first = false;
                if e.is_timeout() {
                    "operation timed out".to_string()
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else if e.is_body() || e.is_decode() {
                    "error reading the reply body".to_string()
                } else {
                    "request failed".to_string()
                }
            } else {
                err.to_string()
            };
            if !text.contains(&part) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                text.push_str(&part);
            }
            cur = err.source();
        }
        let text = clip(&text, 300);
        match &self.key {
            Some(k) => redact(&text, k),
            None => text,
        }
    }
}

/// `url` with `extra` (`name=value`) appended as a query parameter, keeping any query the
/// server put there.
pub(crate) fn with_query(url: &str, extra: &str) -> String {
    if url.contains('?') {
        format!("{url}&{extra}")
    } else {
        format!("{url}?{extra}")
    }
}
