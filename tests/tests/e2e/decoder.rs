//! RAWs are decoded in a `luminary decode-runner` child of the daemon: a file that makes
//! rawler allocate what its header claims fails only its own job, cancelling a job stops
//! its decoder, and results are bit-identical to an in-process decode.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::linux_helpers::frame;
use luminary::error::{Cancel, ErrorCode};
use luminary::ingest::{ingest_with, RawDecoding};
use luminary_tests::daemon::{luminary_bin, Env};
use serde_json::{json, Value};

use super::{copy_into, enhance, fixtures};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn daemon_pid(env: &Env) -> i32 {
    let out = env.run(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// Live (not zombie) decoder processes whose parent is `pid`.
fn decoders_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let mut rest = stat.rsplit(") ").next().unwrap_or("").split(' ');
            let state = rest.next();
            let ppid = rest.next().and_then(|pp| pp.parse::<i32>().ok());
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            ppid == Some(pid)
                && state != Some("Z")
                && String::from_utf8_lossy(&cmdline).contains("decode-runner")
        })
        .collect()
}

fn event(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn a_raw_whose_header_claims_8_gb_fails_its_job_as_too_large_and_the_daemon_keeps_serving() {
    let f = fixtures();
    let env = Env::new();
    // Found by the ingest fuzzer: a QuickTake 150 header claiming 65535×65535 pixels.
    let bytes = std::fs::read(repo("fuzz/regressions/ingest-qtk-radc-size-oom.bin")).unwrap();
    let crafted = env.work.join("crafted.qtk");
    std::fs::write(&crafted, &bytes[1..]).unwrap();
    let good = copy_into(&env, &f.dng_grbg_12);
    let pid = daemon_pid(&env);
    for _ in 0..2 {
        let (res, _) = enhance(&env, &[crafted.to_str().unwrap(), "--preset", "auto"]);
        let r = &res[0];
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["code"], "too_large", "{r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.contains(crafted.to_str().unwrap())
                && msg.contains("more memory than the RAW decoder may use")
                && msg.contains("limits.decode_memory_mb"),
            "{msg}"
        );
    }
    // Same daemon, still serving RAWs.
    let (res, out) = enhance(&env, &[good.to_str().unwrap(), "--preset", "auto"]);
    assert_eq!(
        res[0]["ok"],
        true,
        "{res:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(daemon_pid(&env), pid, "the daemon was restarted");
    assert!(decoders_of(pid).is_empty(), "decoder processes left behind");
    // A tighter limit from config.toml refuses it the same way.
    assert!(env.run(&["stop"]).status.success());
    env.write_config("[limits]\ndecode_memory_mb = 900\n");
    let (res, _) = enhance(&env, &[crafted.to_str().unwrap(), "--preset", "auto"]);
    assert_eq!(res[0]["code"], "too_large", "{}", res[0]);
    assert!(
        res[0]["message"].as_str().unwrap().contains("(900 MB"),
        "{}",
        res[0]
    );
    let (res, _) = enhance(&env, &[good.to_str().unwrap(), "--preset", "auto"]);
    assert_eq!(res[0]["ok"], true, "{res:?}");
}

#[test]
fn cancelling_a_job_while_its_raw_decodes_stops_the_decoder() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.dng_rggb_14);
    let out = env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let pid = daemon_pid(&env);
    let mut s = UnixStream::connect(env.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    frame(
        &mut s,
        &json!({"type": "hello", "protocol": "1.0", "client": "decoder-test"}),
    );
    assert_eq!(event(&mut s).unwrap()["type"], "welcome");
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "7", "source": src, "preset": "auto", "output": {"dir": out}}),
    );
    loop {
        let ev = event(&mut s).expect("job events");
        assert_ne!(ev["type"], "error", "{ev}");
        if ev["type"] == "progress" && ev["stage"] == "ingest" {
            break;
        }
    }
    // Wait until its decoder runs, then cancel.
    let t = Instant::now();
    let mut seen = Vec::new();
    while seen.is_empty() && t.elapsed() < Duration::from_secs(10) {
        seen = decoders_of(pid);
    }
    frame(&mut s, &json!({"type": "cancel", "id": "c", "job": "7"}));
    let cancelled_at = Instant::now();
    let end = loop {
        let ev = event(&mut s).expect("an answer to the job");
        if ev["id"] == "7" && (ev["type"] == "error" || ev["type"] == "done") {
            break ev;
        }
    };
    println!(
        "decoder seen: {seen:?}; job ended {:?} after the cancel",
        cancelled_at.elapsed()
    );
    assert!(!seen.is_empty(), "no decoder process was seen");
    assert_eq!(end["code"], "cancelled", "{end}");
    assert!(
        decoders_of(pid).is_empty(),
        "the decoder outlived its cancelled job"
    );
    for p in seen {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "decoder {p} not reaped"
        );
    }
    assert!(std::fs::read_dir(&out).unwrap().next().is_none());
    assert!(env.run(&["status", "--no-spawn"]).status.success());
}

#[test]
fn dngs_decoded_in_the_decoder_process_are_bit_identical_to_an_in_process_decode() {
    let f = fixtures();
    let limits = luminary::config::Limits::default();
    for dng in [&f.dng_grbg_12, &f.dng_rggb_14] {
        let cancel = Cancel::default();
        let here = ingest_with(
            dng,
            &limits,
            &RawDecoding::InProcess { budget: None },
            &cancel,
        )
        .unwrap();
        let there =
            ingest_with(dng, &limits, &RawDecoding::Process(luminary_bin()), &cancel).unwrap();
        assert_eq!(
            (here.image.width, here.image.height),
            (there.image.width, there.image.height)
        );
        let differ = here
            .image
            .data
            .iter()
            .zip(&there.image.data)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{}: {differ} samples differ", dng.display());
        assert_eq!(here.meta.orientation, there.meta.orientation);
        assert_eq!(
            format!("{:?}", here.meta.fields),
            format!("{:?}", there.meta.fields)
        );
    }
    // And an unreadable one fails the same way in both.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("truncated.dng");
    let bytes = std::fs::read(&f.dng_grbg_12).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let cancel = Cancel::default();
    let a = ingest_with(
        &bad,
        &limits,
        &RawDecoding::InProcess { budget: None },
        &cancel,
    )
    .err()
    .unwrap();
    let b = ingest_with(
        &bad,
        &limits,
        &RawDecoding::Process(luminary_bin()),
        &cancel,
    )
    .err()
    .unwrap();
    assert_eq!((a.code, &a.message), (b.code, &b.message));
    assert_eq!(a.code, ErrorCode::CorruptInput, "{a:?}");
}
