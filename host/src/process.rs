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
    #[cfg(windows)]
    if let Some(code) = status.code() {
        // NTSTATUS exception codes: how Windows reports a crash as an exit code.
        let ntstatus = code as u32;
        let name = match ntstatus {
            0xC000_0005 => Some("access violation"),
            0xC000_001D => Some("illegal instruction"),
            0xC000_0094 => Some("integer division by zero"),
            0xC000_00FD => Some("stack overflow"),
            0xC000_0374 => Some("heap corruption"),
            0xC000_0409 => Some("aborted"),
            0x8000_0003 => Some("breakpoint"),
            _ => None,
        };
        if let Some(name) = name {
            return format!("crashed ({name}, {ntstatus:#010x})");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "ended".to_string(),
    }
}

/// Starts `cmd` with no console window (Windows): the daemon has no console, so a console
/// program it starts would otherwise get a window of its own that flashes up on the
/// photographer's screen. Nothing elsewhere.
pub fn no_console_window(cmd: &mut std::process::Command) {
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        cmd.creation_flags(windows_sys::Win32::System::Threading::CREATE_NO_WINDOW);
    }
    #[cfg(not(windows))]
    let _ = cmd;
}

/// No error dialog when this child process crashes (Windows Error Reporting's "stopped
/// working", or a missing-disk box): the daemon reports the crash as the job's error, and
/// nobody may be at the screen to click. Nothing elsewhere.
pub fn quiet_crashes() {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Diagnostics::Debug::{
            SetErrorMode, SEM_FAILCRITICALERRORS, SEM_NOGPFAULTERRORBOX,
        };
        // SAFETY: a plain call that changes this process's error mode.
        unsafe { SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX) };
    }
}

/// A private copy of this process's standard output, after which standard output points
/// at standard error: what the child prints (a plugin's or a decoder's stray `println!`)
/// then goes to the log and cannot corrupt the answers the daemon reads. Call at start-up,
/// while only one thread exists.
pub fn private_stdout() -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: plain fd duplication at start-up, before any other thread exists.
        let fd = unsafe { libc::dup(1) };
        if fd < 0 || unsafe { libc::dup2(2, 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::FromRawHandle;
        use windows_sys::Win32::Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE};
        use windows_sys::Win32::System::Console::{
            GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_OUTPUT_HANDLE,
        };
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        // SAFETY: the standard handles belong to the process; the copy is owned by the
        // returned file. Rust's standard output looks its handle up on every write, so it
        // follows SetStdHandle.
        unsafe {
            let output = GetStdHandle(STD_OUTPUT_HANDLE);
            if output.is_null() || output as isize == -1 {
                return Err(std::io::Error::other("no standard output"));
            }
            let mut copy: HANDLE = std::ptr::null_mut();
            let me = GetCurrentProcess();
            if DuplicateHandle(me, output, me, &mut copy, 0, 0, DUPLICATE_SAME_ACCESS) == 0 {
                return Err(std::io::Error::last_os_error());
            }
            SetStdHandle(STD_OUTPUT_HANDLE, GetStdHandle(STD_ERROR_HANDLE));
            Ok(std::fs::File::from_raw_handle(copy as _))
        }
    }
}
