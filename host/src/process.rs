//! Small helpers for the child processes the daemon runs (plugin runners, RAW decoders).

use std::process::ExitStatus;

/// Human words for how a child process ended.
pub fn describe_exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                4 => "SIGILL, illegal instruction",
                6 => "SIGABRT, aborted",
                7 => "SIGBUS, bus error",
                8 => "SIGFPE, arithmetic error",
                9 => "SIGKILL",
                11 => "SIGSEGV, segmentation fault",
                _ => "signal",
            };
            return format!("crashed ({name}, signal {sig})");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "ended".to_string(),
    }
}
