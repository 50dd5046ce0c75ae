//! Giving memory back when the daemon has nothing to do.
//!
//! While jobs run, glibc's malloc is tuned to keep freed blocks for reuse (see
//! `tune_allocator` in `main.rs`: the transfer fit's threads would otherwise serialise on
//! page faults). That is right during a batch and wrong after it: a daemon that enhanced
//! twenty photos held 700 MB for as long as it lived, memory taken from Lightroom. So a
//! few seconds after the last job ends, the daemon hands its free pages back to the system
//! ([`give_back`]); the next job pays a few page faults, nothing more.

/// How long after its last job the daemon gives its free memory back.
pub const GIVE_BACK_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Returns the allocator's free pages to the system: `malloc_trim(0)` on glibc, which
/// trims the main arena's top and releases the whole free pages inside every arena. (It
/// cannot shrink another arena's top, which is why the daemon runs on one arena:
/// `tune_allocator` in `main.rs`.) Elsewhere
/// nothing to do: Windows' heap decommits large free blocks itself, and macOS's malloc
/// returns free pages under memory pressure.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's resident memory in bytes, where the platform tells it cheaply (Linux:
/// `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(1) as u64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}
