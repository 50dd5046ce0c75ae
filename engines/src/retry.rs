//! Retry loop with exponential backoff and full jitter, and the server's wait hints
//! (`Retry-After`, `retry-after-ms`, Gemini's `RetryInfo.retryDelay`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http::{Interrupt, Job, Reply, SendError};
use crate::EngineError;

/// What one attempt came to.
pub(crate) enum Step<T> {
    Done(T),
    /// Worth another try; `give_up` is what to report if no try is left (or no time).
    Retry(Retryable),
    Fail(EngineError),
}

pub(crate) struct Retryable {
    /// For the progress line: "HTTP 503", "connection refused".
    pub why: String,
    /// The server's requested wait, which replaces our backoff.
    pub after: Option<Duration>,
    pub give_up: EngineError,
}

/// Runs `attempt` until it is done, fails, or tries/time run out. `billable` counts sends into
/// the job's attempt counter (for [`crate::EditOutput::attempts`]); polls pass `false`.
pub(crate) fn retrying<T>(
    job: &Job<'_>,
    billable: bool,
    mut attempt: impl FnMut() -> Step<T>,
) -> Result<T, EngineError> {
    let mut n: u32 = 0;
    loop {
        n += 1;
        if billable {
            job.attempts.set(job.attempts.get() + 1);
        }
        let r = match attempt() {
            Step::Done(t) => return Ok(t),
            Step::Fail(e) => return Err(e),
            Step::Retry(r) => r,
        };
        if n >= job.s.max_attempts {
            tracing::warn!(engine = job.engine, attempts = n, why = %r.why, "giving up");
            return Err(r.give_up);
        }
        let wait = r
            .after
            .unwrap_or_else(|| full_jitter(job.s.backoff_base, job.s.backoff_cap, n));
        // Waiting past the deadline only to be cut off would waste the user's time.
        if wait >= job.remaining() {
            tracing::warn!(engine = job.engine, wait_s = wait.as_secs_f64(), why = %r.why, "no time left to retry");
            return Err(r.give_up);
        }
        let msg = format!("retrying in {:.1} s after {}", wait.as_secs_f64(), r.why);
        tracing::info!(engine = job.engine, attempt = n, "{msg}");
        job.progress(&msg);
        match job.sleep(wait) {
            Ok(()) => {}
            Err(Interrupt::Cancelled) => return Err(EngineError::Cancelled),
            Err(Interrupt::Deadline) => return Err(r.give_up),
        }
    }
}

/// "Full jitter": uniform in [0, min(cap, base·2^(n-1))], so many clients that failed together
/// do not come back together.
pub(crate) fn full_jitter(base: Duration, cap: Duration, n: u32) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(n.saturating_sub(1).min(30) as i32);
    let ceiling = exp.min(cap.as_secs_f64());
    Duration::from_secs_f64(ceiling * fastrand::f64())
}

/// `retry-after-ms` (OpenAI), else `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()) {
        if let Ok(ms) = ms.trim().parse::<f64>() {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = parse_http_date(v)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Gemini's `error.details[]` entry of type `google.rpc.RetryInfo`: `retryDelay` is a protobuf
/// Duration in JSON ("37s", "1.5s"), or `{seconds, nanos}` from some gateways.
pub(crate) fn gemini_retry_delay(body: &Value) -> Option<Duration> {
    let details = body.get("error")?.get("details")?.as_array()?;
    for d in details {
        let is_retry_info = d
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("RetryInfo"));
        if !is_retry_info {
            continue;
        }
        let delay = d.get("retryDelay").or_else(|| d.get("retry_delay"))?;
        if let Some(s) = delay.as_str() {
            let secs: f64 = s.trim().trim_end_matches('s').parse().ok()?;
            return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
        }
        let seconds = delay
            .get("seconds")
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(0.0);
        let nanos = delay.get("nanos").and_then(Value::as_f64).unwrap_or(0.0);
        let secs = seconds + nanos / 1e9;
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    None
}

/// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the only form RFC 9110 requires senders to use.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if *zone != "GMT" && *zone != "UTC" {
        return None;
    }
    let day: i64 = day.parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// The usual handling of a transport failure for a call that is safe to repeat (GETs, and
/// submits that certainly did not arrive). `stage` names the timeout if the job runs out of time.
pub(crate) fn transport_retry<T>(job: &Job<'_>, e: SendError, stage: &'static str) -> Step<T> {
    match e {
        SendError::Cancelled => Step::Fail(EngineError::Cancelled),
        SendError::Deadline => Step::Fail(job.interrupted(Interrupt::Deadline, stage)),
        SendError::Invalid(d) => Step::Fail(job.config(format!("invalid request: {d}"))),
        SendError::Connect { timeout, detail } => Step::Retry(Retryable {
            why: if timeout {
                "a connect timeout".into()
            } else {
                detail.clone()
            },
            after: None,
            give_up: if timeout {
                EngineError::Timeout {
                    engine: job.engine.into(),
                    stage: "connect",
                }
            } else {
                job.unavailable(detail)
            },
        }),
        SendError::Sent { timeout, detail } => Step::Retry(Retryable {
            why: if timeout {
                "a timeout".into()
            } else {
                detail.clone()
            },
            after: None,
            give_up: if timeout {
                EngineError::Timeout {
                    engine: job.engine.into(),
                    stage,
                }
            } else {
                job.unavailable(detail)
            },
        }),
    }
}

/// Transport failure of a billable sync call (Gemini, OpenAI): retried only when the request
/// certainly did not arrive. Once it left, a resend could be billed twice, so a missing reply is
/// reported as a `response` timeout (or a broken reply) and counted as maybe billed.
pub(crate) fn sync_send_failure<T>(job: &Job<'_>, e: SendError) -> Step<T> {
    match e {
        SendError::Connect { .. } | SendError::Invalid(_) | SendError::Cancelled => transport_retry(job, e, "response"),
        SendError::Deadline | SendError::Sent { timeout: true, .. } => {
            Step::Fail(EngineError::Timeout { engine: job.engine.into(), stage: "response" })
        }
        SendError::Sent { timeout: false, detail } => Step::Fail(job.bad_reply(format!(
            "the connection broke after the request was sent ({detail}); not re-sent, since it may already be billed"
        ))),
    }
}

/// Transport failure of a queue submit (fal, Replicate): re-sent only when it certainly did not
/// arrive. A submit whose answer got lost may have created a job, so it is reported (maybe
/// billed) rather than repeated; the orphan hook cancels that job if its answer still comes.
pub(crate) fn submit_failure<T>(job: &Job<'_>, e: SendError) -> Step<T> {
    match e {
        SendError::Connect { .. } | SendError::Invalid(_) | SendError::Cancelled => transport_retry(job, e, "submit"),
        SendError::Deadline | SendError::Sent { timeout: true, .. } => {
            Step::Fail(EngineError::Timeout { engine: job.engine.into(), stage: "submit" })
        }
        SendError::Sent { timeout: false, detail } => Step::Fail(job.bad_reply(format!(
            "the connection broke after the job was submitted ({detail}); not re-sent, since the job may exist"
        ))),
    }
}

/// A GET of a status, result or file: retried freely on the statuses in `retry_on` and on
/// transport errors; 401/403 become `auth`; anything else non-2xx is handed back to the caller.
pub(crate) fn get_step(
    job: &Job<'_>,
    r: Result<Reply, SendError>,
    stage: &'static str,
    retry_on: &[u16],
) -> Step<Reply> {
    match r {
        Err(e) => transport_retry(job, e, stage),
        Ok(reply) if retry_on.contains(&reply.status) => {
            let after = retry_after(&reply.headers);
            let give_up = if reply.status == 429 {
                EngineError::RateLimited {
                    engine: job.engine.into(),
                    retry_after_s: after.map(|d| d.as_secs_f64()),
                }
            } else {
                job.unavailable(format!(
                    "HTTP {} from {stage}: {}",
                    reply.status,
                    reply.text()
                ))
            };
            Step::Retry(Retryable {
                why: format!("HTTP {}", reply.status),
                after,
                give_up,
            })
        }
        Ok(reply) => Step::Done(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));

        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            784_111_777
        );
        assert!(parse_http_date("yesterday").is_none());
    }

    #[test]
    fn gemini_retry_delay_forms() {
        let body = serde_json::json!({"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.Help","links":[]},
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.5s"}]}});
        assert_eq!(gemini_retry_delay(&body), Some(Duration::from_millis(1500)));
        let body = serde_json::json!({"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}});
        assert_eq!(gemini_retry_delay(&body), Some(Duration::from_secs(37)));
        assert_eq!(
            gemini_retry_delay(&serde_json::json!({"error":{"details":[]}})),
            None
        );
    }

    #[test]
    fn jitter_stays_under_the_exponential_ceiling() {
        for n in 1..12 {
            let d = full_jitter(Duration::from_millis(500), Duration::from_secs(60), n);
            let ceiling = (0.5 * 2f64.powi(n as i32 - 1)).min(60.0);
            assert!(d.as_secs_f64() <= ceiling + 1e-9, "attempt {n}: {d:?}");
        }
    }
}
