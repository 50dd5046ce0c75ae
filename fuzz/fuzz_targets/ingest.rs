//! Any bytes under a photo's name, through the daemon's own ingest and limits. A decoder
//! panic is caught by ingest (it becomes `corrupt_input`), exactly as in the daemon; what
//! the fuzzer must never find is an abort, a memory error, or a runaway allocation.
//!
//! The daemon decodes camera RAWs in a `luminary decode-runner` child under an address-space
//! limit; the fuzzer cannot (libFuzzer sees coverage only in its own process, and a process
//! per input would cut executions by two orders of magnitude). So RAWs are decoded here,
//! through the same pre-checks and the same code the child runs, and the child's limit is
//! emulated: while rawler runs, an allocation beyond the heap the child would have fails,
//! and the failure unwinds (alloc error hook; the fuzz build is nightly Rust) into
//! ingest's `catch_unwind`, which reports `too_large` as the daemon does for a child that
//! ran out of memory. Everything else — TIFF/JPEG/PNG decoding, the pre-checks, the develop
//! of what rawler returned — runs in the daemon itself and has no such allowance: a huge
//! allocation there is a finding (`-malloc_limit_mb`).
#![no_main]
#![feature(alloc_error_hook)]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use luminary::config::Limits;
use luminary::ingest::{self, RawDecoding};

/// Bytes the Rust heap holds now.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// While a RAW decoder runs: the most the heap may hold (the child's limit); else `MAX`.
static CEILING: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Allocations below this always pass, so unwinding from a refused one (which allocates
/// its panic message) cannot itself fail. The child's limit is about large buffers too.
const SMALL: usize = 1 << 20;

struct Budgeted;

fn admit(size: usize) -> bool {
    let ceiling = CEILING.load(Relaxed);
    size < SMALL || ceiling == usize::MAX || LIVE.load(Relaxed).saturating_add(size) <= ceiling
}

unsafe impl GlobalAlloc for Budgeted {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !admit(l.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !admit(l.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() && !admit(new - l.size()) {
            return std::ptr::null_mut();
        }
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Relaxed);
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Budgeted = Budgeted;

/// Called by ingest around rawler: the heap the decoder process would have.
fn budget(heap: Option<u64>) {
    let ceiling = match heap {
        Some(h) => LIVE.load(Relaxed).saturating_add(h as usize),
        None => usize::MAX,
    };
    CEILING.store(ceiling, Relaxed);
}

static SETUP: Once = Once::new();

/// Names for first bytes 128 and up (scripts/fuzz uses the same list).
const RAW_EXTS: [&str; 16] = [
    "nef", "raf", "rw2", "cr3", "iiq", "x3f", "mrw", "crw", "cr2", "orf", "arw", "pef", "dng",
    "kdc", "srw", "gpr",
];

fuzz_target!(|data: &[u8]| {
    SETUP.call_once(|| {
        // libfuzzer-sys aborts on any panic; ingest catches decoder panics like the daemon
        // does, so let those unwind to it.
        std::panic::set_hook(Box::new(|_| {}));
        // An allocation refused under the decoder's budget unwinds like a panic (the
        // default would abort, as it does in the decoder process).
        std::alloc::set_alloc_error_hook(|l| {
            if CEILING.load(Relaxed) == usize::MAX {
                // Outside the decoder: a real out-of-memory, reported as the finding it is.
                eprintln!("memory allocation of {} bytes failed", l.size());
                std::process::abort();
            }
            panic!("memory allocation of {} bytes failed", l.size())
        });
        ingest::set_raw_decoding(RawDecoding::InProcess {
            budget: Some(budget),
        });
    });
    let Some((&kind, body)) = data.split_first() else { return };
    // The first byte names the file: below 128, one of the four container formats (the
    // seed corpus); from 128, a camera RAW format, so real header-only files of those
    // formats (ExifTool's, added by scripts/fuzz) are read as what they are.
    let ext = if kind < 128 {
        ["dng", "tif", "jpg", "png"][kind as usize % 4]
    } else {
        RAW_EXTS[(kind as usize - 128) % RAW_EXTS.len()]
    };
    let dir = std::env::temp_dir().join(format!("luminary-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("input.{ext}"));
    if std::fs::write(&path, body).is_err() {
        return;
    }
    let limits = Limits {
        max_pixels: 4_000_000,
        max_file_bytes: 8 << 20,
        ..Limits::default()
    };
    let _ = ingest::ingest(&path, &limits);
});
