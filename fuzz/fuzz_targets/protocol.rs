//! Frames and messages from an untrusted client: never a panic, never unbounded memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(frame)) = luminary::protocol::read_frame(&mut rest) {
        let _ = serde_json::from_slice::<luminary::protocol::Request>(&frame);
    }
});
