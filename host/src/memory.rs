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
    REUSABLE.clear();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Full-size pixel buffers kept from the last job for the next one.
///
/// A fresh block of hundreds of megabytes is mapped by the allocator and every page of it
/// is zeroed by the kernel on first touch: a 24 MP job's picture is 288 MB, and zeroing
/// fresh pages was the largest single kernel cost of a job (`clear_page_erms`, about 6 %
/// of a bench run's samples on this 2-core VM). A batch's photos mostly share one size,
/// so the last job's picture, kept when the job ends ([`reuse_later`]), takes the next
/// one's demosaic output, already mapped. Only buffers the caller overwrites whole come
/// from here ([`reusable_f32`]). The daemon drops them with the rest of its free memory
/// when idle ([`give_back`]).
///
/// Only a job's finished picture is kept, never a buffer freed mid-job (the levels
/// plane): a kept buffer must not add to the job's peak, which comes after the demosaic
/// has taken it back.
static REUSABLE: Kept = Kept(std::sync::Mutex::new(None));

/// Buffers from this many samples on (64 MB) are kept for reuse; smaller ones cost little
/// to map.
const REUSE_FROM: usize = 16 << 20;

/// A buffer of `len` samples whose contents are unspecified (a previous job's pixels, or
/// zeros): for callers that write every sample before reading any. Takes the kept buffer
/// when it holds `len` without wasting more than a quarter of it; otherwise the kept one
/// is dropped first, so a job of another size never holds both its own buffer and the
/// last job's.
pub fn reusable_f32(len: usize) -> Vec<f32> {
    REUSABLE.take(len)
}

/// Keeps a full-size buffer the job is done with for [`reusable_f32`], in place of the
/// one kept before (one at most: more could only add to a peak; smaller buffers are
/// simply freed).
pub fn reuse_later(v: Vec<f32>) {
    REUSABLE.keep(v)
}

/// The kept buffer.
struct Kept(std::sync::Mutex<Option<Vec<f32>>>);

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<f32>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, len: usize) -> Vec<f32> {
        if len >= REUSE_FROM {
            // Taken out either way: a buffer that does not fit is dropped before the new
            // one is made, not after.
            let kept = self.lock().take();
            if let Some(mut v) = kept.filter(|v| (len..=len + len / 4).contains(&v.len())) {
                tracing::debug!(
                    "picture buffer of {} MB kept from the last job",
                    v.len() >> 18
                );
                v.truncate(len);
                return v;
            }
        }
        vec![0f32; len]
    }

    fn keep(&self, v: Vec<f32>) {
        if v.len() >= REUSE_FROM {
            let old = self.lock().replace(v);
            drop(old);
        }
    }

    fn clear(&self) {
        let kept = self.lock().take();
        drop(kept);
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

/// The daemon's allocator: the system's, asking for transparent huge pages on the blocks
/// glibc maps fresh (64 MB and up, `tune_allocator` in `main.rs`): the full-size buffers
/// of a job. A 24 MP job maps about a gigabyte of them, and each 4 KiB page of it faults
/// on first touch: about 250 000 faults per job, which made a quarter of a bench run's
/// samples kernel time. Huge pages fault 2 MiB at a time: measured, a `luminary bench` of
/// twelve 24 MP jobs 10.33–10.46 s → 9.70–10.02 s wall, system time 3.7–4.2 → 3.1–3.5 s.
/// Where the kernel gives them only on request (`madvise`, the default of Debian, Ubuntu
/// and Fedora), this is the request; where it gives them always or never, the hint changes
/// nothing. Freed blocks are still unmapped at once, so the idle daemon's memory is
/// unaffected.
pub struct Allocator;

/// Blocks from this size on get the hint: the size from which glibc maps them fresh.
pub const HUGE_PAGES_FROM: usize = 64 << 20;

static HUGE_PAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the huge-page hint off or on (`LUMINARY_HUGE_PAGES=0` at start: for measuring,
/// and for a kernel whose compaction stalls). Set before other threads exist; the
/// allocator cannot read the environment itself (that allocates).
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, std::sync::atomic::Ordering::Relaxed);
}

// SAFETY: every call is the system allocator's own, with the same layout; the hint only
// changes how the kernel backs pages the allocator already owns.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.alloc(layout) };
        advise_huge(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        advise_huge(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        advise_huge(p, new_size);
        p
    }
}

/// Asks for huge pages on the whole 2 MiB pages inside a block of `len` bytes at `p`.
#[inline]
fn advise_huge(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null()
        && len >= HUGE_PAGES_FROM
        && HUGE_PAGES.load(std::sync::atomic::Ordering::Relaxed)
    {
        const HUGE: usize = 2 << 20;
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + len) & !(HUGE - 1);
        if end > start {
            // SAFETY: the range lies inside a block the allocator just handed out; the
            // advice changes no contents. Its result is only a hint's: ignored.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
}

#[cfg(test)]
mod reuse_tests {
    use super::*;

    /// A kept buffer comes back, already mapped, for the next request that it fits; one
    /// much larger does not serve a small request; a miss frees what is kept.
    #[test]
    fn kept_buffers_serve_the_next_job_of_their_size_and_nothing_lingers() {
        let kept = Kept(std::sync::Mutex::new(None));
        let n = 2 * REUSE_FROM;
        let v = vec![0.5f32; n];
        let at = v.as_ptr();
        kept.keep(v);
        let w = kept.take(n - 100);
        assert_eq!(w.as_ptr(), at, "the kept buffer is reused");
        assert_eq!(w.len(), n - 100);
        assert!(
            w.iter().all(|&x| x == 0.5),
            "its samples are the last job's"
        );
        assert!(kept.lock().is_none(), "a taken buffer is no longer kept");
        kept.keep(w);
        // Too large to waste on this request: a fresh, zeroed buffer, and the kept one
        // is dropped rather than held beside it.
        let small = kept.take(REUSE_FROM);
        assert_ne!(small.as_ptr(), at);
        assert!(small.iter().all(|&x| x == 0.0));
        assert!(kept.lock().is_none(), "a miss drops the kept buffer");
        // Small buffers are never kept; a new one replaces the one kept.
        kept.keep(vec![1.0; 1000]);
        assert!(kept.lock().is_none());
        kept.keep(vec![0.0; REUSE_FROM]);
        kept.keep(vec![2.0; REUSE_FROM + 1]);
        assert_eq!(kept.lock().as_ref().map(Vec::len), Some(REUSE_FROM + 1));
        kept.clear();
        assert!(kept.lock().is_none());
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// The `VmFlags` of the mapping that holds `addr` (`hg`: huge pages asked for).
    fn flags_at(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("VmFlags:") {
                    return Some(v.trim().to_string());
                }
            }
        }
        None
    }

    /// A full-size buffer from the allocator has huge pages asked for (the mapping's
    /// `hg` flag; whether the kernel has a free huge page at that moment is its own
    /// matter), a small one does not, and both hold what is written to them.
    #[test]
    fn a_full_size_buffer_asks_for_huge_pages() {
        for (size, asked) in [(96usize << 20, true), (1 << 20, false)] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a non-zero layout; freed below with the same layout.
            let p = unsafe { Allocator.alloc_zeroed(layout) };
            assert!(!p.is_null());
            // SAFETY: `p` holds `layout.size()` zeroed bytes.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, size) };
            assert!(buf.iter().step_by(4096).all(|&b| b == 0));
            for (i, b) in buf.iter_mut().enumerate().step_by(4096) {
                *b = (i >> 12) as u8;
            }
            let flags = flags_at(p as usize + size / 2).unwrap_or_default();
            let ok = buf
                .iter()
                .enumerate()
                .step_by(4096)
                .all(|(i, &b)| b == (i >> 12) as u8);
            // SAFETY: allocated above with this layout.
            unsafe { Allocator.dealloc(p, layout) };
            assert!(ok, "contents kept");
            let hg = flags.split_whitespace().any(|f| f == "hg");
            assert_eq!(hg, asked, "{size} bytes: VmFlags {flags}");
        }
    }
}
