//! Any bytes under a photo's name, through the daemon's own ingest and limits. A decoder
//! panic is caught by ingest (it becomes `corrupt_input`), exactly as in the daemon; what
//! the fuzzer must never find is an abort, a memory error, or a runaway allocation.
#![no_main]
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use luminary::config::Limits;

static QUIET: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on any panic; ingest catches decoder panics like the daemon
    // does, so let those unwind to it.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&kind, body)) = data.split_first() else { return };
    let ext = ["dng", "tif", "jpg", "png"][kind as usize % 4];
    let dir = std::env::temp_dir().join(format!("luminary-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("input.{ext}"));
    if std::fs::write(&path, body).is_err() {
        return;
    }
    let limits = Limits { max_pixels: 4_000_000, max_file_bytes: 8 << 20 };
    let _ = luminary::pipeline::ingest::ingest(&path, &limits);
});
