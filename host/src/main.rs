//! The `luminary` binary: glue between the command line and the library.

use clap::Parser;

/// The system allocator with huge pages asked for on full-size buffers (`memory.rs`).
#[global_allocator]
static ALLOCATOR: luminary::memory::Allocator = luminary::memory::Allocator;

fn main() {
    tune_allocator();
    let cli = luminary::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUMINARY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match luminary::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// glibc's malloc serves every block over its (adaptive) mmap threshold with fresh pages
/// and unmaps them on free. The transfer fit allocates a dozen preview-sized buffers
/// (8–12 MB each) per job; their page faults take the process's memory-map lock, which
/// serialises the fit's threads — measured: a 24 MP fit at 208 ms on two threads, the same
/// as on one, and 115–125 ms with these settings. So blocks below 64 MB come from the heap
/// and are reused, and up to 256 MB of freed heap stays mapped between jobs; full-resolution
/// buffers (hundreds of MB) are still mapped fresh and returned at once.
///
/// One arena for all threads: with one per thread (up to eight a core), each job thread's
/// arena kept its freed top — 50 MB apiece after twenty 3.4 MP jobs, 640 MB in all — and
/// `malloc_trim` cannot shrink another arena's top, so the idle daemon could not give it
/// back (`memory.rs`). With one arena it returns to 14 MB. Measured here: no speed lost (the
/// transfer fit 59 → 49 ms median, apply 248 → 253 MP/s, the offline 24 MP job the same;
/// the daemon's peak over twenty jobs 781 → 231 MB). `GLIBC_TUNABLES`, when set, wins.
fn tune_allocator() {
    luminary::memory::set_huge_pages(
        std::env::var_os("LUMINARY_HUGE_PAGES").is_none_or(|v| v != "0"),
    );
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only sets tunables; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
