//! Timing the fit's steps for profiling (`LUMINARY_FIT_TRACE`), and the process's CPU
//! time the traces and the fidelity benchmark print. Below every part of the transfer.

use std::time::Instant;

/// With `LUMINARY_FIT_TRACE` set: prints the milliseconds since `t0` for a step of the
/// fit (for profiling only).
/// The process's CPU time so far follows, which a busy host does not inflate.
pub(crate) fn trace(what: &str, t0: Instant) {
    if fit_trace_on() {
        eprintln!(
            "  {what}: {:.1} ms (process CPU {:.1} ms)",
            t0.elapsed().as_secs_f64() * 1e3,
            cpu_seconds().unwrap_or(f64::NAN) * 1e3
        );
    }
}

/// Whether `LUMINARY_FIT_TRACE` is set (read once).
pub(crate) fn fit_trace_on() -> bool {
    static ON: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("LUMINARY_FIT_TRACE").is_some());
    *ON
}

/// CPU time of this process so far (user + system), where the platform says.
pub fn cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes the struct we own.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
            return Some(t(ru.ru_utime) + t(ru.ru_stime));
        }
    }
    None
}
