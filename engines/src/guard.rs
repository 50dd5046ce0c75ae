//! Per-engine concurrency limit and circuit breaker, shared by every edit of one provider object.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::http::TICK;
use crate::{Control, EngineError};

/// A counting semaphore whose wait can be cancelled.
pub(crate) struct Limiter {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// A held slot; dropping it frees the slot.
pub(crate) struct Permit<'a>(&'a Limiter);

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        Limiter {
            max: max.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits for a slot, checking `ctl.cancelled` every [`TICK`]. `on_wait` is called once if the
    /// edit has to wait, so the host can show "waiting for a free gemini slot".
    pub fn acquire(
        &self,
        ctl: &Control<'_>,
        on_wait: impl FnOnce(),
    ) -> Result<Permit<'_>, EngineError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut on_wait = Some(on_wait);
        while *used >= self.max {
            if (ctl.cancelled)() {
                return Err(EngineError::Cancelled);
            }
            if let Some(f) = on_wait.take() {
                f();
            }
            used = self
                .freed
                .wait_timeout(used, TICK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if (ctl.cancelled)() {
            return Err(EngineError::Cancelled);
        }
        *used += 1;
        Ok(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// Opens after `threshold` consecutive transient failures; while open, edits fail at once instead
/// of each spending its full retry budget on a service that is down. After `open_for` the next
/// edit is let through ("half-open"): a success closes the circuit, a failure opens it again.
pub(crate) struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// `Err(remaining)` while open.
    pub fn check(&self) -> Result<(), (u32, Duration)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.open_until {
            Some(until) if Instant::now() < until => Err((st.failures, until - Instant::now())),
            Some(_) => {
                // Half-open: one more failure re-opens it.
                st.open_until = None;
                st.failures = self.threshold - 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Feeds one edit's outcome: transient failures count, a success resets, anything else (a
    /// refusal, a bad key) says the service is up but does not prove it healthy, so it is neutral.
    pub fn record(&self, outcome: Result<(), &EngineError>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                st.failures = 0;
                st.open_until = None;
                false
            }
            Err(e) if e.is_transient() => {
                st.failures = st.failures.saturating_add(1);
                if st.failures >= self.threshold && st.open_until.is_none() {
                    st.open_until = Some(Instant::now() + self.open_for);
                    return true;
                }
                false
            }
            Err(_) => false,
        }
    }

    /// For health reports.
    pub fn open_for(&self) -> Option<Duration> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.open_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> EngineError {
        EngineError::Unavailable {
            engine: "x".into(),
            detail: "HTTP 503".into(),
        }
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            b.record(Err(&fail()));
        }
        assert!(b.check().is_ok());
        b.record(Err(&EngineError::Refused {
            engine: "x".into(),
            reason: "no".into(),
        }));
        assert!(b.check().is_ok(), "refusals are neutral");
        assert!(b.record(Err(&fail())), "third transient failure opens it");
        assert!(b.check().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.check().is_ok(), "half-open after the wait");
        b.record(Err(&fail()));
        assert!(b.check().is_err(), "one failure while half-open re-opens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.check().is_ok());
        b.record(Ok(()));
        b.record(Err(&fail()));
        assert!(b.check().is_ok(), "a success reset the count");
    }

    #[test]
    fn limiter_wait_is_cancellable() {
        let l = Limiter::new(1);
        let never = || false;
        let always = || true;
        let quiet = |_: &str| {};
        let ctl = Control {
            cancelled: &never,
            progress: &quiet,
        };
        let _held = l.acquire(&ctl, || {}).unwrap();
        let ctl = Control {
            cancelled: &always,
            progress: &quiet,
        };
        assert!(matches!(
            l.acquire(&ctl, || {}),
            Err(EngineError::Cancelled)
        ));
    }
}
