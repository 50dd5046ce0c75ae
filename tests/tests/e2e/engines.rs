//! AI engines through the real daemon (issue #4, parts of #9): the daemon is pointed at the
//! provider mocks of `luminary-engines` (running in this test process on 127.0.0.1), and every
//! test checks what a photographer relies on — the edit carried to full resolution, never
//! paying twice, clear failures, cancellation, kills that lose nothing, and keys that never
//! leak.
//!
//! Keys: every command removes the provider key variables a developer may have exported, so
//! a real key can never reach a mock or a test log; the daemon inherits the environment of
//! the CLI command that spawns it, so the key a test wants is set on that command.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::linux_helpers::{frame, wait_gone};
use base64::Engine as _;
use image::RgbImage;
use luminary_engines::mock::{grade_pixel, mock_grade, Fault, MockKind, MockServer, TEST_KEY};
use luminary_tests::daemon::{json_lines, results, Env};
use luminary_tests::*;
use serde_json::{json, Value};

/// Every variable a provider key can come from.
const KEY_VARS: [&str; 4] = [
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "FAL_KEY",
    "REPLICATE_API_TOKEN",
];

/// A price no provider lists, so a cost equal to it can only come from the config.
const PRICE: f64 = 0.0425;

/// Photos for this module, made once.
struct Photos {
    _dir: tempfile::TempDir,
    /// 6 MP camera-like DNG (3008×2000, RGGB, 14-bit) of a real photograph.
    dng6: PathBuf,
    /// 3.4 MP 16-bit TIFF of a real photograph.
    tiff16: PathBuf,
    /// A portrait shot stored sideways with EXIF orientation 6.
    jpeg_rot: PathBuf,
    /// What that JPEG looks like upright (portrait: taller than wide).
    jpeg_upright: Photo,
}

fn photos() -> &'static Photos {
    static P: OnceLock<Photos> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let flower = load_photo("flower.png").unwrap();
        let dng6 = dir.path().join("DSC_0815.dng");
        write_dng(
            &dng6,
            &flower.mirror_tile(3008, 2000),
            &RawSpec {
                cfa: Cfa::Rggb,
                bits: 14,
                black: 512,
                orientation: 1,
            },
        )
        .unwrap();
        let tiff16 = dir.path().join("scan16.tif");
        write_tiff(&tiff16, &flower, true, None).unwrap();
        let jpeg_upright = flower.mirror_tile(1512, 2268);
        let jpeg_rot = dir.path().join("portrait.jpg");
        write_rotated_jpeg(&jpeg_rot, &jpeg_upright).unwrap();
        Photos {
            _dir: dir,
            dng6,
            tiff16,
            jpeg_rot,
            jpeg_upright,
        }
    })
}

/// A 45 MP camera-like DNG (8256×5504, a high-resolution body's size), made once.
fn dng45() -> &'static Path {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Z7_4501.dng");
        let flower = load_photo("flower.png").unwrap();
        write_dng(
            &path,
            &flower.mirror_tile(8256, 5504),
            &RawSpec {
                cfa: Cfa::Rggb,
                bits: 14,
                black: 1008,
                orientation: 1,
            },
        )
        .unwrap();
        (dir, path)
    });
    path
}

#[path = "looks.rs"]
mod looks;

#[path = "prompts.rs"]
mod prompts;

#[path = "staging.rs"]
mod staging;

#[path = "cutouts.rs"]
pub(crate) mod cutouts;

#[path = "upscales.rs"]
mod upscales;

/// `[engines.gemini]` pointing at a mock, with short timeouts so fault tests are quick.
fn gemini_table(mock: &MockServer) -> String {
    format!(
        "[engines.gemini]\nbase_url = \"{}\"\nprice_per_image = {PRICE}\nconnect_timeout_s = 2\n\
         request_timeout_s = 20\ntotal_timeout_s = 60\nmax_attempts = 3\n",
        mock.base_url
    )
}

/// Tables that keep `luminary engines` off the internet: every engine this test does not
/// mock points at a closed local port.
const OFFLINE_OTHERS: &str =
    "[engines.openai]\nbase_url = \"http://127.0.0.1:9\"\nconnect_timeout_s = 1\n\
[engines.fal]\nbase_url = \"http://127.0.0.1:9\"\nconnect_timeout_s = 1\n\
[engines.replicate]\nbase_url = \"http://127.0.0.1:9\"\nconnect_timeout_s = 1\n\
[engines.comfyui]\nbase_url = \"http://127.0.0.1:9\"\nconnect_timeout_s = 1\n";

/// One test's Luminary: its environment, the keys its commands carry, and everything the
/// CLI printed and the socket answered (searched for secrets at the end).
struct Lum {
    env: Env,
    keys: Mutex<Vec<(&'static str, String)>>,
    seen: Mutex<Vec<u8>>,
}

impl Lum {
    fn new() -> Lum {
        Lum {
            env: Env::new(),
            keys: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The keys commands (and so a daemon they start) carry from now on.
    fn set_keys(&self, keys: &[(&'static str, &str)]) {
        *self.keys.lock().unwrap() = keys.iter().map(|(k, v)| (*k, v.to_string())).collect();
    }

    /// `luminary` with no provider key from the developer's environment, only ours.
    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        for v in KEY_VARS {
            c.env_remove(v);
        }
        for (k, v) in self.keys.lock().unwrap().iter() {
            c.env(k, v);
        }
        c
    }

    fn note(&self, bytes: &[u8]) {
        let mut s = self.seen.lock().unwrap();
        s.extend_from_slice(bytes);
        s.push(b'\n');
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run luminary");
        self.note(&out.stdout);
        self.note(&out.stderr);
        out
    }

    /// `luminary enhance --json ARGS`: the result lines and the whole output.
    fn enhance(&self, args: &[&str]) -> (Vec<Value>, Output) {
        let mut all = vec!["enhance", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        (results(&out.stdout), out)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (res, out) = self.enhance(args);
        assert!(
            out.status.success() && res.len() == 1 && res[0]["ok"] == true,
            "luminary enhance {args:?} failed: {}\n{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.env.daemon_log()
        );
        res.into_iter().next().unwrap()
    }

    fn failed(&self, args: &[&str]) -> Value {
        let (res, out) = self.enhance(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} should fail with exit 1: {}\n{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.env.daemon_log()
        );
        assert_eq!(res.len(), 1, "{args:?}");
        assert_eq!(res[0]["ok"], false);
        res.into_iter().next().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "luminary {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The daemon's pid (starting it, with the current keys, if none runs).
    fn daemon_pid(&self) -> i32 {
        self.json(&["status", "--json"])["pid"].as_i64().unwrap() as i32
    }

    /// Still serving (without starting a new daemon).
    fn assert_up(&self, after: &str) {
        let out = self.run(&["status", "--json", "--no-spawn"]);
        assert!(
            out.status.success(),
            "the daemon died after {after}: {}",
            self.env.daemon_log()
        );
    }

    /// `luminary stop`, and wait until the process is gone, so the next command starts a
    /// fresh daemon with the current keys.
    fn stop_daemon(&self) {
        let st = self.run(&["status", "--json", "--no-spawn"]);
        let pid = serde_json::from_slice::<Value>(&st.stdout)
            .ok()
            .and_then(|v| v["pid"].as_i64());
        assert!(self.run(&["stop"]).status.success());
        if let Some(pid) = pid {
            assert!(
                wait_gone(pid as i32, Duration::from_secs(20)),
                "the daemon did not exit"
            );
        }
    }

    /// A raw protocol connection to the daemon (started with the current keys).
    fn connect(&self) -> UnixStream {
        self.daemon_pid();
        let mut s = UnixStream::connect(self.env.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        frame(
            &mut s,
            &json!({"type": "hello", "protocol": "1.0", "client": "engines-test"}),
        );
        assert_eq!(self.event(&mut s).unwrap()["type"], "welcome");
        s
    }

    fn event(&self, s: &mut UnixStream) -> Option<Value> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        self.note(&body);
        serde_json::from_slice(&body).ok()
    }

    /// Issue #9 point 7: no key in anything the user or a support ticket could see — the
    /// daemon log, every line printed, every event, the progress files, and the raw bytes of
    /// every file under the data, cache and runtime folders (ledger, cache index, cached
    /// answers, journal).
    fn assert_no_secret(&self, secrets: &[&str], extra_files: &[&Path]) {
        let mut places: Vec<(String, Vec<u8>)> = vec![
            ("daemon log".into(), self.env.daemon_log().into_bytes()),
            (
                "CLI output and protocol events".into(),
                self.seen.lock().unwrap().clone(),
            ),
        ];
        let root = self.env.root.path();
        let mut files = Vec::new();
        for d in ["data", "cache", "runtime"] {
            walk(&root.join(d), &mut files);
        }
        files.extend(extra_files.iter().map(|p| p.to_path_buf()));
        let mut db_files = 0;
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                let name = f.display().to_string();
                if name.contains(".sqlite") {
                    db_files += 1;
                }
                places.push((name, bytes));
            }
        }
        assert!(db_files >= 1, "no database files found to search");
        for secret in secrets {
            for (what, bytes) in &places {
                assert!(
                    !contains(bytes, secret.as_bytes()),
                    "the key {secret:?} appears in {what}"
                );
            }
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    hay.iter().enumerate().any(|(i, &b)| {
        b == first && hay.len() - i >= needle.len() && &hay[i..i + needle.len()] == needle
    })
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn copy_to(dir: &Path, src: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().unwrap());
    std::fs::copy(src, &dst).unwrap();
    dst
}

/// Every file in `dir`, hidden ones included.
fn all_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn visible_files(dir: &Path) -> Vec<String> {
    all_files(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn decode8(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb8()
}

fn psnr8(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// The image bytes of a Gemini `generateContent` request, as the mock received them.
fn sent_image(req: &luminary_engines::mock::Recorded) -> (String, Vec<u8>) {
    let body = req.json.as_ref().expect("a JSON request");
    for content in body["contents"].as_array().expect("contents") {
        for part in content["parts"].as_array().expect("parts") {
            let inline = part.get("inline_data").or_else(|| part.get("inlineData"));
            if let Some(inline) = inline {
                let mime = inline
                    .get("mime_type")
                    .or_else(|| inline.get("mimeType"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(inline["data"].as_str().expect("base64 data"))
                    .expect("valid base64");
                return (mime, data);
            }
        }
    }
    panic!("the request carried no image");
}

/// The chunk types of a PNG, in order.
fn png_chunks(png: &[u8]) -> Vec<String> {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut at = 8;
    let mut chunks = Vec::new();
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        chunks.push(String::from_utf8_lossy(&png[at + 4..at + 8]).into_owned());
        at += 12 + len;
    }
    chunks
}

/// What left the machine: a metadata-free PNG no larger than the preview size.
fn assert_clean_preview(mime: &str, png: &[u8], private: &[&str]) -> RgbImage {
    assert_eq!(mime, "image/png");
    let chunks = png_chunks(png);
    for bad in ["eXIf", "tEXt", "iTXt", "zTXt", "iCCP", "tIME"] {
        assert!(
            !chunks.iter().any(|c| c == bad),
            "the preview sent to the engine carries a {bad} chunk: {chunks:?}"
        );
    }
    assert_eq!(chunks.last().map(String::as_str), Some("IEND"));
    for p in private {
        assert!(!contains(png, p.as_bytes()), "the preview contains {p:?}");
    }
    let img = image::load_from_memory(png).unwrap().into_rgb8();
    assert!(
        img.width().max(img.height()) <= 1024,
        "preview is {}×{}",
        img.width(),
        img.height()
    );
    img
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    luminary::ledger::day_string(now)
}

fn gemini_posts(mock: &MockServer) -> Vec<luminary_engines::mock::Recorded> {
    mock.requests_to("POST", "/v1beta/models/*")
}

fn peak_rss_kb(pid: i32) -> u64 {
    try_peak_rss_kb(pid).expect("VmHWM in /proc/<pid>/status")
}

fn try_peak_rss_kb(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The daemon's child processes (plugin runners, RAW decode runners).
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .and_then(|(_, r)| r.split(' ').nth(1))
                        .and_then(|pp| pp.parse::<i32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

/// Tests 1–3 (and 4's metadata check, 7's secrets): a Gemini edit of a DNG carried to full
/// resolution, then reused at another intensity and by a fresh daemon without a new call,
/// paid again only after `cache clear`, and accounted for in `luminary usage`.
#[test]
fn gemini_edit_reaches_full_resolution_is_paid_once_and_is_accounted_for() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.dng6);
    let before = fingerprint(&src);
    let s = src.to_str().unwrap();
    let progress = lum.env.work.join("progress.jsonl");

    // The ungraded base, exactly (intensity 0 of the offline engine).
    let base = lum.ok(&[
        s,
        "--preset",
        "warm-film",
        "--engine",
        "local",
        "--intensity",
        "0",
        "--format",
        "png",
    ]);
    assert_eq!(base["engine"], "local");
    assert_eq!(
        mock.requests().len(),
        0,
        "the offline engine called the mock"
    );

    // 1. The Gemini edit at full strength.
    let r = lum.ok(&[
        s,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--intensity",
        "1",
        "--format",
        "png",
        "--progress-file",
        progress.to_str().unwrap(),
    ]);
    assert_eq!(r["engine"], "gemini", "{r}");
    assert_eq!(r["model"], "gemini-2.5-flash-image", "{r}");
    assert_eq!(r["cached"], false, "{r}");
    assert!(
        (r["cost"].as_f64().unwrap() - PRICE).abs() < 1e-9,
        "cost should be the configured price {PRICE}: {r}"
    );
    for stage in ["engine", "transfer", "encode", "total"] {
        assert!(r["timings_ms"][stage].is_u64(), "no {stage} timing: {r}");
    }
    assert_eq!(mock.billed(), 1);
    let posts = gemini_posts(&mock);
    assert_eq!(posts.len(), 1);
    let prog = json_lines(&std::fs::read(&progress).unwrap());
    assert!(
        prog.iter()
            .any(|e| e["stage"].as_str().is_some_and(|s| s.starts_with("engine"))),
        "no engine progress in the progress file"
    );

    let out1 = PathBuf::from(r["output"].as_str().unwrap());
    let base_out = PathBuf::from(base["output"].as_str().unwrap());
    assert!(out1.exists() && out1 != base_out);
    let edited = decode8(&out1);
    let base8 = decode8(&base_out);
    assert_eq!(
        edited.dimensions(),
        (3008, 2000),
        "the edit is not at full resolution"
    );
    assert_eq!(base8.dimensions(), edited.dimensions());
    // What the photographer should get: the engine's grade applied to every full-resolution
    // pixel of the original.
    let mut reference = base8.clone();
    for px in reference.pixels_mut() {
        px.0 = grade_pixel(px.0);
    }
    // What a naive client gets: the engine's answer (the grade of the preview it was sent)
    // upscaled.
    let (mime, png) = sent_image(&posts[0]);
    let name = src.file_name().unwrap().to_str().unwrap();
    let preview = assert_clean_preview(&mime, &png, &[name, "ILCE-7M3", "Luminary Test"]);
    let body = String::from_utf8_lossy(&posts[0].body);
    assert!(
        !body.contains(name) && !body.contains(lum.env.work.to_str().unwrap()),
        "the request names the photo or its folder"
    );
    assert!(
        preview.width() == 1024 && (preview.height() as i32 - 681).abs() <= 1,
        "preview is {}×{}: the long edge should be the default preview_size 1024",
        preview.width(),
        preview.height()
    );
    let upscaled = image::imageops::resize(
        &mock_grade(&preview),
        3008,
        2000,
        image::imageops::FilterType::CatmullRom,
    );
    let db_edit = psnr8(&edited, &reference);
    let db_bicubic = psnr8(&upscaled, &reference);
    let db_unedited = psnr8(&base8, &reference);
    println!(
        "gemini at 6 MP vs the grade at full resolution: luminary {db_edit:.2} dB, bicubic \
         upscale of the answer {db_bicubic:.2} dB, unedited {db_unedited:.2} dB"
    );
    assert!(
        db_edit >= 35.0,
        "the edit does not follow the engine's grade: {db_edit:.2} dB"
    );
    assert!(
        db_edit >= db_bicubic + 5.0,
        "full-resolution detail lost: {db_edit:.2} dB vs bicubic {db_bicubic:.2} dB"
    );

    // 2. Another intensity: the cached answer, no new call, no cost.
    let r03 = lum.ok(&[
        s,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--intensity",
        "0.3",
        "--format",
        "png",
    ]);
    assert_eq!(r03["cached"], true, "{r03}");
    assert_eq!(r03["cost"].as_f64(), Some(0.0), "{r03}");
    assert_eq!(mock.billed(), 1, "intensity 0.3 called the engine again");
    assert_eq!(gemini_posts(&mock).len(), 1);
    let out03 = decode8(Path::new(r03["output"].as_str().unwrap()));
    let db_03 = psnr8(&out03, &edited);
    assert!(
        db_03 < 40.0,
        "intensity 0.3 looks like intensity 1 ({db_03:.1} dB)"
    );
    // Closer to the original than the full edit is.
    assert!(psnr8(&out03, &base8) > psnr8(&edited, &base8) + 3.0);

    // A fresh daemon still has it.
    lum.stop_daemon();
    let r03b = lum.ok(&[
        s,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--intensity",
        "0.3",
        "--format",
        "png",
    ]);
    assert_eq!(r03b["cached"], true, "{r03b}");
    assert_eq!(r03b["cost"].as_f64(), Some(0.0));
    assert_eq!(mock.billed(), 1, "a fresh daemon paid again");
    assert_eq!(gemini_posts(&mock).len(), 1);
    let same = decode8(Path::new(r03b["output"].as_str().unwrap()));
    assert!(
        psnr8(&same, &out03) > 60.0,
        "the cached answer gave another picture"
    );

    // `cache clear`: the next run pays again.
    let cleared = lum.json(&["cache", "clear", "--json"]);
    assert_eq!(cleared["entries"], 1, "{cleared}");
    let stats = lum.json(&["cache", "stats", "--json"]);
    assert_eq!(stats["entries"], 0, "{stats}");
    let again = lum.ok(&[
        s,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--intensity",
        "0.3",
        "--format",
        "png",
    ]);
    assert_eq!(again["cached"], false, "{again}");
    assert_eq!(
        mock.billed(),
        2,
        "cache clear did not make the engine run again"
    );
    assert_eq!(lum.json(&["cache", "stats", "--json"])["entries"], 1);

    // 3. The ledger: two engine calls, two cache hits, both calls' price.
    let usage = lum.json(&["usage", "--json"]);
    let rows: Vec<&Value> = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["engine"] == "gemini")
        .collect();
    assert_eq!(rows.len(), 1, "{usage}");
    let row = rows[0];
    assert_eq!(row["day"], today().as_str(), "{usage}");
    assert_eq!(row["calls"], 4, "{usage}");
    assert_eq!(row["cached"], 2, "{usage}");
    assert_eq!(row["failed"], 0, "{usage}");
    assert!(
        (row["cost_usd"].as_f64().unwrap() - 2.0 * PRICE).abs() < 1e-6,
        "{usage}"
    );
    assert!((usage["total_cost_usd"].as_f64().unwrap() - 2.0 * PRICE).abs() < 1e-6);
    let recent = lum.json(&["usage", "--json", "--days", "1"]);
    assert_eq!(recent["usage"], usage["usage"]);

    assert_eq!(fingerprint(&src), before, "the original changed");
    assert!(lum.env.hidden_files(&lum.env.work).is_empty());
    lum.assert_no_secret(&[TEST_KEY], &[&progress]);
}

/// Test 4: the preview of a portrait phone shot leaves the machine upright, small and
/// without EXIF, GPS or profile.
#[test]
fn the_preview_sent_is_upright_small_and_carries_no_metadata() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.jpeg_rot);
    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "auto",
        "--engine",
        "gemini",
        "--format",
        "jpeg",
    ]);
    assert_eq!(r["engine"], "gemini");
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(1512), Some(2268)),
        "output not upright: {r}"
    );
    let posts = gemini_posts(&mock);
    assert_eq!(posts.len(), 1);
    let (mime, png) = sent_image(&posts[0]);
    let preview = assert_clean_preview(&mime, &png, &["portrait.jpg", "ILCE-7M3", "Sony"]);
    assert!(
        preview.height() > preview.width(),
        "the preview of a portrait shot went out sideways: {}×{}",
        preview.width(),
        preview.height()
    );
    assert_eq!(preview.height(), 1024);
    // And it is the picture itself, upright (not mirrored or turned the other way).
    let upright = &p.jpeg_upright;
    let small = image::imageops::resize(
        &RgbImage::from_raw(upright.width as u32, upright.height as u32, upright.to_u8()).unwrap(),
        preview.width(),
        preview.height(),
        image::imageops::FilterType::Triangle,
    );
    let db = psnr8(&preview, &small);
    let flipped = image::imageops::rotate180(&small);
    let db_flipped = psnr8(&preview, &flipped);
    println!("preview vs upright photo: {db:.1} dB (turned 180°: {db_flipped:.1} dB)");
    assert!(
        db > 25.0 && db > db_flipped + 5.0,
        "preview is not the upright photo"
    );
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Issue #19: an answer that no single motion lines up with the photo (its halves moved
/// apart) is carried by the colour maps alone, and the result says so — in the `done`
/// message's `notes` and under the CLI's result — rather than printing two misaligned
/// pictures over each other. The same grade answered cleanly (another preset: the mock
/// grades every preset alike) is the reference: the fallback stays close to it (31.5 dB
/// when written), where the full transfer of the torn answer, ghosts and all, is 21.4 dB.
#[test]
fn a_torn_answer_falls_back_to_colour_alone_and_the_result_says_so() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![Fault::Torn]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.tiff16);
    let before = fingerprint(&src);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let args = |preset: &'static str| {
        vec![
            src.to_str().unwrap().to_string(),
            "--preset".into(),
            preset.into(),
            "--engine".into(),
            "gemini".into(),
            "--out-dir".into(),
            out.to_str().unwrap().to_string(),
        ]
    };
    let torn_args = args("moody");
    let torn_args: Vec<&str> = torn_args.iter().map(String::as_str).collect();
    let torn = lum.ok(&torn_args);
    let notes: Vec<&str> = torn["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {torn}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.len() == 1 && notes[0].contains("could not be lined up"),
        "{notes:?}"
    );
    assert!(torn["timings_ms"]["register"].is_u64(), "{torn}");

    let clean_args = args("warm-film");
    let clean_args: Vec<&str> = clean_args.iter().map(String::as_str).collect();
    let clean = lum.ok(&clean_args);
    assert!(
        clean.get("notes").is_none(),
        "a clean answer has notes: {clean}"
    );
    let a = decode8(Path::new(torn["output"].as_str().unwrap()));
    let b = decode8(Path::new(clean["output"].as_str().unwrap()));
    let db = psnr8(&a, &b);
    println!("torn answer's result against the clean answer's: {db:.1} dB");
    assert!(
        db >= 30.0,
        "the torn answer's result is {db:.1} dB from the clean one's"
    );

    // The CLI prints the note under the result (the torn answer now comes from the cache).
    let plain = lum.run(&[
        "enhance",
        torn_args[0],
        "--preset",
        "moody",
        "--engine",
        "gemini",
        "--out-dir",
        torn_args[6],
    ]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(plain.status.success(), "{text}");
    assert!(
        text.contains("note: ") && text.contains("could not be lined up"),
        "{text}"
    );
    assert_eq!(mock.billed(), 2, "the torn answer was paid for again");
    assert_eq!(fingerprint(&src), before, "the original changed");
}

/// Test 5: a refusal, a rate limit, a wrong key and no key, through the daemon.
#[test]
fn engine_faults_give_clear_errors_leave_nothing_and_the_daemon_stays_up() {
    let p = photos();
    let mock = MockServer::start(
        MockKind::Gemini,
        vec![
            Fault::Refuse,
            Fault::RateLimit {
                retry_after: "1".into(),
            },
        ],
    );
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.tiff16);
    let before = fingerprint(&src);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let args = [
        src.to_str().unwrap(),
        "--preset",
        "moody",
        "--engine",
        "gemini",
        "--out-dir",
        out.to_str().unwrap(),
    ];

    // A content refusal: not retried, billed once (Gemini charges for refusals), reason shown.
    let e = lum.failed(&args);
    assert_eq!(e["code"], "engine_refused", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("IMAGE_SAFETY") && msg.contains("gemini"),
        "{msg}"
    );
    assert_eq!(e["retryable"], false, "{e}");
    assert_eq!(mock.billed(), 1);
    assert_eq!(gemini_posts(&mock).len(), 1, "a refusal was retried");
    assert!(
        all_files(&out).is_empty(),
        "a failed job left {:?}",
        all_files(&out)
    );
    lum.assert_up("a refusal");

    // HTTP 429 with a retry delay, then success: the job completes after waiting.
    let r = lum.ok(&args);
    assert_eq!(r["engine"], "gemini");
    assert_eq!(r["cached"], false);
    let posts = gemini_posts(&mock);
    assert_eq!(posts.len(), 3);
    let waited = posts[2].at - posts[1].at;
    assert!(
        waited >= Duration::from_millis(900),
        "the retry did not wait for the server's delay: {waited:?}"
    );
    assert_eq!(mock.billed(), 2, "only the answered call is billed");
    assert_eq!(visible_files(&out).len(), 1);
    lum.assert_up("a rate limit");

    // A wrong key: `engine_auth` naming the variable; the wrong key is not echoed either.
    // (Another preset: the answer just paid for is rightly served from the cache whatever
    // the key, since no call is needed.)
    let wrong = "lum-wrong-0b7d1e44-key";
    lum.stop_daemon();
    lum.set_keys(&[("GEMINI_API_KEY", wrong)]);
    let mut args = args;
    args[2] = "warm-film";
    let sent_before = mock.requests().len();
    let e = lum.failed(&args);
    assert!(
        mock.requests().len() > sent_before,
        "the wrong key was never tried"
    );
    assert_eq!(e["code"], "engine_auth", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("GEMINI_API_KEY"),
        "{e}"
    );
    assert_eq!(mock.billed(), 2);
    assert_eq!(visible_files(&out).len(), 1, "a failed job left an output");
    lum.assert_up("a wrong key");

    // No key at all: the same error before anything is sent.
    lum.stop_daemon();
    lum.set_keys(&[]);
    let sent_before = mock.requests().len();
    let e = lum.failed(&args);
    assert_eq!(e["code"], "engine_auth", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("GEMINI_API_KEY"),
        "{e}"
    );
    assert_eq!(
        mock.requests().len(),
        sent_before,
        "a request went out without a key"
    );
    lum.assert_up("a missing key");

    assert_eq!(visible_files(&out).len(), 1);
    assert!(lum.env.hidden_files(&out).is_empty());
    assert_eq!(fingerprint(&src), before);
    // The ledger saw the refusal (billed) and the success.
    let usage = lum.json(&["usage", "--json"]);
    let row = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["engine"] == "gemini")
        .cloned()
        .unwrap_or_else(|| panic!("no gemini row: {usage}"));
    assert!(row["failed"].as_u64().unwrap() >= 1, "{usage}");
    assert!(
        (row["cost_usd"].as_f64().unwrap() - 2.0 * PRICE).abs() < 1e-6,
        "refusal (billed by Gemini) + success: {usage}"
    );
    lum.assert_no_secret(&[TEST_KEY, wrong], &[]);
}

/// Test 6: cancelling a fal job that is running remotely ends it at once and cancels the
/// remote job (so it stops costing).
#[test]
fn cancelling_a_fal_job_mid_engine_is_quick_and_cancels_the_remote_job() {
    let p = photos();
    let mock = MockServer::start(MockKind::Fal, vec![Fault::SlowJob(Duration::from_secs(60))]);
    let lum = Lum::new();
    lum.env.write_config(&format!(
        "[engines.fal]\nbase_url = \"{}\"\nprice_per_image = 0.04\nconnect_timeout_s = 2\n\
         request_timeout_s = 20\ntotal_timeout_s = 120\nmax_attempts = 3\n",
        mock.base_url
    ));
    lum.set_keys(&[("FAL_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.tiff16);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let mut s = lum.connect();
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "7", "source": src, "preset": "warm-film",
                "engine": "fal", "output": {"dir": out}}),
    );
    let mut stages = Vec::new();
    loop {
        let ev = lum.event(&mut s).expect("job events");
        assert!(ev["type"] != "error" && ev["type"] != "done", "{ev}");
        if let Some(st) = ev["stage"].as_str() {
            stages.push(st.to_string());
            if st.starts_with("engine") && !mock.job_ids().is_empty() {
                break;
            }
        }
    }
    // The remote job is running.
    wait_for("the fal job to start", Duration::from_secs(5), || {
        mock.billed() == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    frame(&mut s, &json!({"type": "cancel", "id": "c", "job": "7"}));
    let end = loop {
        let ev = lum.event(&mut s).expect("an answer to the cancel");
        if ev["id"] == "7" && (ev["type"] == "error" || ev["type"] == "done") {
            break ev;
        }
    };
    let took = t.elapsed();
    println!("fal job cancelled in {took:?} (stages seen: {stages:?})");
    assert_eq!(end["type"], "error", "{end}");
    assert_eq!(end["code"], "cancelled", "{end}");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    wait_for("the remote cancel", Duration::from_secs(2), || {
        mock.cancels() == 1
    });
    assert_eq!(mock.cancels(), 1);
    assert!(
        all_files(&out).is_empty(),
        "a cancelled job left {:?}",
        all_files(&out)
    );
    lum.assert_up("a cancel");
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Tests 7 and 8: `luminary engines` finds the key and the server without spending money,
/// warns about a config file holding a key that others can read, and a key from that file
/// works end to end without showing up anywhere.
#[test]
fn engines_command_checks_keys_for_free_and_keys_in_the_config_stay_private() {
    use std::os::unix::fs::PermissionsExt;
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env
        .write_config(&format!("{}{OFFLINE_OTHERS}", gemini_table(&mock)));
    let gemini_row = |v: &Value| -> Value {
        v["engines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["engine"] == "gemini")
            .cloned()
            .unwrap_or_else(|| panic!("no gemini row: {v}"))
    };

    // The key in the environment.
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let t = Instant::now();
    let v = lum.json(&["engines", "--json"]);
    println!("luminary engines took {:?}", t.elapsed());
    let g = gemini_row(&v);
    assert_eq!(g["key_present"], true, "{g}");
    assert_eq!(g["reachable"], true, "{g}");
    assert_eq!(g["configured"], true, "{g}");
    assert!((g["price_per_image"].as_f64().unwrap() - PRICE).abs() < 1e-9);
    assert!(!mock.requests().is_empty(), "the mock was not even asked");
    assert_eq!(mock.billed(), 0, "checking the engines cost money");
    assert!(
        gemini_posts(&mock).is_empty(),
        "checking the engines sent an edit"
    );
    let human = lum.run(&["engines"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("gemini"));

    // No key.
    lum.set_keys(&[]);
    let g = gemini_row(&lum.json(&["engines", "--json"]));
    assert_eq!(g["key_present"], false, "{g}");
    let human = String::from_utf8_lossy(&lum.run(&["engines"]).stdout).into_owned();
    assert!(
        human.contains("GEMINI_API_KEY"),
        "no hint which variable to set:\n{human}"
    );

    // The key in config.toml: readable by others → a warning naming the file and the fix.
    let file = lum.env.config_file();
    let text = format!(
        "{}api_key = \"{TEST_KEY}\"\n{OFFLINE_OTHERS}",
        gemini_table(&mock)
    );
    std::fs::write(&file, &text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lum.run(&["engines", "--json"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning")
            && err.contains(file.to_str().unwrap())
            && err.contains("chmod 600"),
        "no warning about a world-readable key file: {err}"
    );
    assert_eq!(
        gemini_row(&serde_json::from_slice(&out.stdout).unwrap())["key_present"],
        true
    );
    // 0600: quiet.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = lum.run(&["engines", "--json"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("warning"),
        "warned about a private file: {err}"
    );
    assert_eq!(mock.billed(), 0);

    // A job with the key from the file (no variable set) works and shows no key anywhere.
    let src = copy_to(&lum.env.work, &p.tiff16);
    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--format",
        "jpeg",
    ]);
    assert_eq!(r["engine"], "gemini");
    assert_eq!(mock.billed(), 1);
    let posts = gemini_posts(&mock);
    assert_eq!(posts[0].header("x-goog-api-key"), Some(TEST_KEY));
    // The config file holds the key on purpose (and shows the search finds it); nothing
    // else may.
    assert!(contains(
        &std::fs::read(&file).unwrap(),
        TEST_KEY.as_bytes()
    ));
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Test 9a: the daemon killed while the engine call is in flight loses nothing and the next
/// daemon completes the job.
#[test]
fn sigkill_during_the_engine_call_leaves_no_output_and_the_rerun_completes() {
    let p = photos();
    let mock = MockServer::start(
        MockKind::Gemini,
        vec![Fault::Latency(Duration::from_secs(4))],
    );
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &p.dng6);
    let before = fingerprint(&src);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let pid = lum.daemon_pid();
    let mut s = lum.connect();
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "k", "source": src, "preset": "warm-film",
                "engine": "gemini", "output": {"dir": out}}),
    );
    loop {
        let ev = lum.event(&mut s).expect("job events");
        assert!(ev["type"] != "error" && ev["type"] != "done", "{ev}");
        if ev["stage"]
            .as_str()
            .is_some_and(|s| s.starts_with("engine"))
        {
            break;
        }
    }
    // The request is at the engine, which takes 4 s to answer: kill the daemon meanwhile.
    wait_for("the engine request", Duration::from_secs(3), || {
        !gemini_posts(&mock).is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(mock.billed(), 0, "the engine answered before the kill");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_gone(pid, Duration::from_secs(10)));
    drop(s);
    assert!(
        visible_files(&out).is_empty(),
        "a partial output is visible: {:?}",
        visible_files(&out)
    );
    assert_eq!(fingerprint(&src), before, "the original changed");

    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["engine"], "gemini");
    assert_eq!(r["cached"], false, "the killed call never answered: {r}");
    assert_ne!(lum.daemon_pid(), pid);
    assert_eq!(
        all_files(&out).len(),
        1,
        "expected just the result: {:?}",
        all_files(&out)
    );
    assert_eq!(fingerprint(&src), before);
    lum.json(&["usage", "--json"]);
    lum.json(&["cache", "stats", "--json"]);
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Test 9b: the daemon killed after the engine answered (while carrying the edit to 45 MP):
/// the answer was kept, so the re-run is free; the databases survive the kill.
#[test]
fn sigkill_after_the_engine_answered_keeps_the_paid_answer() {
    let big = dng45();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = lum.env.work.join(big.file_name().unwrap());
    std::fs::hard_link(big, &src).unwrap_or_else(|_| {
        std::fs::copy(big, &src).unwrap();
    });
    let before = fingerprint(&src);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let pid = lum.daemon_pid();
    let mut s = lum.connect();
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "k", "source": src, "preset": "warm-film",
                "engine": "gemini", "output": {"dir": out}}),
    );
    let mut seen = Vec::new();
    loop {
        let ev = lum.event(&mut s).expect("job events");
        assert!(ev["type"] != "error" && ev["type"] != "done", "{ev}");
        if let Some(st) = ev["stage"].as_str() {
            seen.push(st.to_string());
            if st == "transfer" {
                break;
            }
        }
    }
    // Well inside the transfer of 45 MP.
    std::thread::sleep(Duration::from_millis(100));
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_gone(pid, Duration::from_secs(10)));
    drop(s);
    println!("killed after stages {seen:?}");
    assert_eq!(
        mock.billed(),
        1,
        "the engine should have answered before the kill"
    );
    assert!(visible_files(&out).is_empty(), "{:?}", visible_files(&out));
    assert_eq!(fingerprint(&src), before);

    // The databases open after the kill.
    let usage = lum.json(&["usage", "--json"]);
    assert!(
        (usage["total_cost_usd"].as_f64().unwrap() - PRICE).abs() < 1e-6,
        "the paid call is in the ledger: {usage}"
    );
    assert_eq!(lum.json(&["cache", "stats", "--json"])["entries"], 1);

    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--out-dir",
        out.to_str().unwrap(),
        "--format",
        "jpeg",
    ]);
    assert_eq!(r["cached"], true, "the answer paid for was lost: {r}");
    assert_eq!(r["cost"].as_f64(), Some(0.0));
    assert_eq!(mock.billed(), 1, "paid twice for the same edit");
    assert_eq!(gemini_posts(&mock).len(), 1);
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(8256), Some(5504))
    );
    assert_eq!(all_files(&out).len(), 1, "{:?}", all_files(&out));
    let usage = lum.json(&["usage", "--json"]);
    let row = &usage["usage"][0];
    assert_eq!(
        (row["calls"].as_u64(), row["cached"].as_u64()),
        (Some(2), Some(1)),
        "{usage}"
    );
    assert_eq!(lum.json(&["cache", "stats", "--json"])["entries"], 1);
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Test 10 (#5 point 6): a 45 MP RAW through an AI engine stays under 2 GB of daemon memory.
#[test]
fn a_45_mp_raw_through_gemini_peaks_under_2_gb() {
    let big = dng45();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let src = lum.env.work.join(big.file_name().unwrap());
    std::fs::hard_link(big, &src).unwrap_or_else(|_| {
        std::fs::copy(big, &src).unwrap();
    });
    let pid = lum.daemon_pid();
    let idle = peak_rss_kb(pid);
    // The RAW is decoded in a child process: watch the children's peaks too (sampled, so a
    // lower bound of theirs), to show the whole job's footprint, not only the daemon's.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (r, took, child_peak) = std::thread::scope(|sc| {
        let sampler = sc.spawn(|| {
            let mut peak = std::collections::BTreeMap::<i32, u64>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in children(pid) {
                    if let Some(kb) = try_peak_rss_kb(c) {
                        let e = peak.entry(c).or_default();
                        *e = (*e).max(kb);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.values().copied().max().unwrap_or(0)
        });
        let t = Instant::now();
        let r = lum.ok(&[
            src.to_str().unwrap(),
            "--preset",
            "warm-film",
            "--engine",
            "gemini",
        ]);
        let took = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, took, sampler.join().unwrap())
    });
    assert_eq!(r["engine"], "gemini");
    assert_eq!(r["cached"], false);
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(8256), Some(5504))
    );
    assert_eq!(mock.billed(), 1);
    assert_eq!(lum.daemon_pid(), pid, "the daemon restarted");
    let peak = peak_rss_kb(pid);
    println!(
        "45 MP DNG through gemini in {took:?} (timings {}): daemon peak RSS {} MB (idle {} MB); \
         largest child process peak seen {} MB",
        r["timings_ms"],
        peak / 1024,
        idle / 1024,
        child_peak / 1024
    );
    assert!(
        peak < 2 * 1024 * 1024,
        "the daemon peaked at {} MB for a 45 MP photo",
        peak / 1024
    );
    // Even counted as if the decoder's peak and the daemon's coincided.
    assert!(
        peak + child_peak < 2 * 1024 * 1024,
        "daemon {} MB + decoder {} MB for a 45 MP photo",
        peak / 1024,
        child_peak / 1024
    );
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Issue #20 point 5: a job waiting on an AI engine lends its CPU slot, so a batch keeps the
/// engine's `concurrency` calls in flight even when `max_jobs` allows one pixel job at a
/// time (before, the engine saw one call at a time: each waiting job held the only slot).
#[test]
fn a_batch_keeps_the_engines_concurrency_busy_with_one_cpu_slot() {
    const PHOTOS: usize = 6;
    const CONCURRENCY: usize = 3;
    // Long enough that three small photos are decoded and sent well within it, even with
    // the other tests loading the machine.
    let latency = Duration::from_millis(2500);
    let mock = MockServer::start(MockKind::Gemini, vec![Fault::Latency(latency); PHOTOS]);
    let lum = Lum::new();
    lum.env.write_config(&format!(
        "[daemon]\nmax_jobs = 1\n{}concurrency = {CONCURRENCY}\n",
        gemini_table(&mock)
    ));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    // Different photos (different crops of a real one): no answer comes from the cache.
    let flower = load_photo("flower.png").unwrap();
    let sources: Vec<PathBuf> = (0..PHOTOS)
        .map(|i| {
            let path = lum.env.work.join(format!("shot-{i}.tif"));
            write_tiff(&path, &flower.mirror_tile(1600 + 32 * i, 1066), false, None).unwrap();
            path
        })
        .collect();
    let out = lum.env.work.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut args: Vec<&str> = sources.iter().map(|p| p.to_str().unwrap()).collect();
    args.extend([
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    let t = Instant::now();
    let (res, o) = lum.enhance(&args);
    let took = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let done: Vec<&Value> = res.iter().filter(|r| r["ok"] == true).collect();
    assert_eq!(done.len(), PHOTOS, "{res:?}");
    assert!(done.iter().all(|r| r["cached"] == false), "{res:?}");
    assert_eq!(mock.billed(), PHOTOS);
    println!(
        "{PHOTOS} photos, {} s per answer, concurrency {CONCURRENCY}, max_jobs 1: {took:?} \
         (one call at a time would take at least {:?}); at most {} calls at once",
        latency.as_secs_f64(),
        latency * PHOTOS as u32,
        mock.max_in_flight()
    );
    assert_eq!(
        mock.max_in_flight(),
        CONCURRENCY,
        "the engine never had its {CONCURRENCY} calls in flight at once"
    );
    assert_eq!(visible_files(&out).len(), PHOTOS);
}

/// Issue #4 point 1: with no `--engine`, a preset's hint picks its engine when that engine
/// is set up (here `virtual-twilight` prefers Gemini), and the configured default otherwise —
/// a missing key never turns a preset's preference into a failed job.
#[test]
fn a_presets_engine_hint_is_followed_only_when_that_engine_is_set_up() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    let src = copy_to(&lum.env.work, &p.tiff16);
    let args = [src.to_str().unwrap(), "--preset", "virtual-twilight"];

    let offline = lum.ok(&args);
    assert_eq!(offline["engine"], "local", "{offline}");
    assert_eq!(mock.billed(), 0);
    // The estimate knows the same from the preset's descriptor, with no plugin code run.
    let est = lum.json(&[
        "estimate",
        args[0],
        "--preset",
        "virtual-twilight",
        "--json",
    ]);
    assert_eq!(
        (est["engine"].as_str(), est["paid"].as_bool()),
        (Some("local"), Some(false)),
        "{est}"
    );

    lum.stop_daemon();
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let est = lum.json(&[
        "estimate",
        args[0],
        "--preset",
        "virtual-twilight",
        "--json",
    ]);
    assert_eq!(
        (est["engine"].as_str(), est["calls"].as_u64()),
        (Some("gemini"), Some(1)),
        "{est}"
    );
    let hinted = lum.ok(&args);
    assert_eq!(hinted["engine"], "gemini", "{hinted}");
    assert_eq!(mock.billed(), 1);
    let est = lum.json(&[
        "estimate",
        args[0],
        "--preset",
        "virtual-twilight",
        "--json",
    ]);
    assert_eq!(
        (est["cached"].as_u64(), est["calls"].as_u64()),
        (Some(1), Some(0)),
        "{est}"
    );
    // The request still wins over the hint.
    let mut forced = args.to_vec();
    forced.extend(["--engine", "local"]);
    assert_eq!(lum.ok(&forced)["engine"], "local");
    assert_eq!(mock.billed(), 1);
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// #16 point 3: a paid call that would go past a `[budget]` cap is refused before anything
/// is sent (`budget_exceeded`, naming the cap, what was spent and how to raise it); cached
/// answers stay free and allowed; `luminary usage` shows spent and remaining amounts and
/// the ledger counts the refusal.
#[test]
fn a_call_past_the_daily_cap_is_refused_before_sending_and_cached_edits_stay_free() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    // Room for two calls at $0.0425 a day on gemini, and a total cap that does not bind.
    lum.env.write_config(&format!(
        "{}\n[budget]\nmonthly_usd = 100\n[budget.engines.gemini]\ndaily_usd = 0.1\n",
        gemini_table(&mock)
    ));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let jpeg = copy_to(&lum.env.work, &p.jpeg_rot);
    let gemini = |src: &Path| {
        vec![
            src.to_str().unwrap().to_string(),
            "--preset".to_string(),
            "warm-film".to_string(),
            "--engine".to_string(),
            "gemini".to_string(),
        ]
    };
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let run_ok = |v: Vec<String>| lum.ok(&strs(&v));
    let run_failed = |v: Vec<String>| lum.failed(&strs(&v));
    run_ok(gemini(&dng));
    run_ok(gemini(&tiff));
    assert_eq!(mock.billed(), 2);
    let requests = mock.requests().len();

    // A third photo would take the day to $0.1275: refused, and nothing reaches the engine.
    let r = run_failed(gemini(&jpeg));
    assert_eq!(r["code"], "budget_exceeded", "{r}");
    assert_eq!(r["retryable"], false, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("the daily budget for gemini ($0.10)")
            && msg.contains("$0.085 spent today")
            && msg.contains("[budget.engines.gemini] daily_usd")
            && msg.contains("config.toml"),
        "{msg}"
    );
    assert_eq!(
        mock.requests().len(),
        requests,
        "a refused call reached the engine"
    );
    assert!(
        !lum.env
            .work
            .join("portrait-luminary-warm-film.tif")
            .exists(),
        "a refused job wrote an output"
    );

    // The photos already paid for stay free and allowed, at any intensity.
    let mut again = gemini(&dng);
    again.extend(["--intensity".into(), "0.3".into()]);
    let cached = run_ok(again);
    assert_eq!(
        (cached["cached"].clone(), cached["cost"].as_f64()),
        (Value::Bool(true), Some(0.0))
    );
    assert_eq!(mock.billed(), 2);

    // `usage`: spent and remaining per cap, and the refusal counted apart from the calls.
    let usage = lum.json(&["usage", "--json"]);
    let budget = usage["budget"].as_array().unwrap();
    let daily = budget
        .iter()
        .find(|b| b["engine"] == "gemini" && b["period"] == "day")
        .unwrap_or_else(|| panic!("{usage}"));
    assert!(
        (daily["spent_usd"].as_f64().unwrap() - 0.085).abs() < 1e-9,
        "{usage}"
    );
    assert!(
        (daily["remaining_usd"].as_f64().unwrap() - 0.015).abs() < 1e-9,
        "{usage}"
    );
    let monthly = budget
        .iter()
        .find(|b| b["engine"].is_null() && b["period"] == "month")
        .unwrap();
    assert!(
        (monthly["remaining_usd"].as_f64().unwrap() - 99.915).abs() < 1e-9,
        "{usage}"
    );
    let row = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["engine"] == "gemini")
        .unwrap();
    assert_eq!(row["over_budget"], 1, "{usage}");
    assert_eq!(row["failed"], 0, "{usage}");
    let text = String::from_utf8_lossy(&lum.run(&["usage"]).stdout).into_owned();
    assert!(
        text.contains("the daily budget for gemini ($0.10)") && text.contains("$0.015 left"),
        "{text}"
    );
}

/// #16 points 1, 2 and 4: on a paid engine the first preview of a photo and preset is the
/// engine call (through the cache and the ledger); a preview at another intensity, or after
/// a daemon restart, never calls the engine; `estimate` knows which photos are cached
/// without decoding them; the full-resolution `enhance` reuses the preview's answer at no
/// cost, and looks like the preview.
#[test]
fn a_gemini_preview_is_the_paid_call_that_enhance_and_later_previews_reuse() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let (d, t) = (dng.to_str().unwrap(), tiff.to_str().unwrap());
    let before = std::fs::read_dir(&lum.env.work).unwrap().count();
    let preview = |intensity: &str, out: &Path| -> Value {
        let v = lum.json(&[
            "preview",
            d,
            "--preset",
            "warm-film",
            "--engine",
            "gemini",
            "--intensity",
            intensity,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.is_file(), "{v}");
        v
    };
    let dir = tempfile::tempdir().unwrap();
    let full = preview("1", &dir.path().join("full.jpg"));
    assert_eq!(
        (full["cached"].clone(), full["engine"].clone()),
        (json!(false), json!("gemini")),
        "{full}"
    );
    assert!(
        (full["cost"].as_f64().unwrap() - PRICE).abs() < 1e-9,
        "{full}"
    );
    assert_eq!(
        (full["width"].as_u64(), full["height"].as_u64()),
        (Some(1024), Some(681)),
        "{full}"
    );
    assert_eq!(mock.billed(), 1);

    // Another intensity: a blend of what the daemon keeps, no engine, no decode.
    let soft = preview("0.3", &dir.path().join("soft.jpg"));
    assert_eq!(
        (
            soft["cached"].clone(),
            soft["cost"].as_f64(),
            soft["reused"].clone()
        ),
        (json!(true), Some(0.0), json!("edit")),
        "{soft}"
    );
    assert_eq!(mock.billed(), 1);
    let zero = preview("0", &dir.path().join("zero.jpg"));
    let (a, b, z) = (
        decode8(&dir.path().join("full.jpg")),
        decode8(&dir.path().join("soft.jpg")),
        decode8(&dir.path().join("zero.jpg")),
    );
    // 0.3 of the way: much closer to the base than the full edit is.
    assert!(
        psnr8(&b, &z) > psnr8(&a, &z) + 6.0,
        "{} vs {}",
        psnr8(&b, &z),
        psnr8(&a, &z)
    );
    assert_eq!(zero["cost"].as_f64(), Some(0.0));

    // The estimate knows the DNG's edit is cached and the TIFF's is not, without a decode.
    let est = lum.json(&[
        "estimate",
        d,
        t,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--json",
    ]);
    assert_eq!(est["items"][0]["cached"], true, "{est}");
    assert_eq!(est["items"][1]["cached"], false, "{est}");
    assert!(
        (est["items"][1]["price"].as_f64().unwrap() - PRICE).abs() < 1e-9,
        "{est}"
    );
    assert_eq!(
        (
            est["photos"].as_u64(),
            est["cached"].as_u64(),
            est["calls"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{est}"
    );
    assert!(
        (est["cost_usd"].as_f64().unwrap() - PRICE).abs() < 1e-9,
        "{est}"
    );
    let text = String::from_utf8_lossy(
        &lum.run(&[
            "estimate",
            d,
            t,
            "--preset",
            "warm-film",
            "--engine",
            "gemini",
        ])
        .stdout,
    )
    .into_owned();
    assert!(
        text.contains("1 of 2 photo(s) will call gemini, about $0.04")
            && text.contains("; 1 cached"),
        "{text}"
    );
    assert_eq!(mock.billed(), 1, "the estimate called the engine");

    // The full-resolution job reuses the preview's answer, free, and looks like it.
    let r = lum.ok(&[
        d,
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--intensity",
        "1",
        "--format",
        "png",
    ]);
    assert_eq!(
        (r["cached"].clone(), r["cost"].as_f64()),
        (json!(true), Some(0.0)),
        "{r}"
    );
    assert_eq!(mock.billed(), 1);
    let out = decode8(Path::new(r["output"].as_str().unwrap()));
    let small = image::imageops::resize(
        &out,
        a.width(),
        a.height(),
        image::imageops::FilterType::Triangle,
    );
    let like = psnr8(&small, &a);
    println!("preview against the enhanced file, downscaled: {like:.1} dB");
    assert!(
        like > 30.0,
        "the preview does not show what enhance makes: {like:.1} dB"
    );

    // A new daemon (nothing in memory): the answer comes from the edit cache.
    assert!(lum.run(&["stop"]).status.success());
    let again = preview("0.6", &dir.path().join("again.jpg"));
    assert_eq!(
        (
            again["cached"].clone(),
            again["cost"].as_f64(),
            again["reused"].clone()
        ),
        (json!(true), Some(0.0), json!("none")),
        "{again}"
    );
    assert_eq!(
        mock.billed(),
        1,
        "a preview after a restart called the engine"
    );
    // Previews went to the cache folder and --out, never beside the originals.
    let after = std::fs::read_dir(&lum.env.work).unwrap().count();
    assert_eq!(
        after,
        before + 1,
        "only the enhanced file is new in the photo folder"
    );
    let cached_previews = walk_files(&lum.env.root.path().join("cache/luminary/previews"));
    assert!(!cached_previews.is_empty());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// #16 point 4: `enhance` on a paid engine prints the batch's estimate first; at a terminal
/// it asks before spending more than `[engine] confirm_above_usd` (and a "no" sends
/// nothing); with standard input not a terminal (scripts, editors) it never asks.
#[test]
fn a_paid_batch_is_estimated_first_and_asked_about_only_at_a_terminal() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&format!(
        "{}\n[engine]\nconfirm_above_usd = 0.05\n",
        gemini_table(&mock)
    ));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let (d, t) = (dng.to_str().unwrap(), tiff.to_str().unwrap());
    // At a terminal (a pty from `script`), answering "n": asked, nothing sent, exit 1.
    let at_terminal = |answer: &str| {
        let cmd = lum.cmd();
        let line = format!(
            "'{}' enhance '{d}' '{t}' --preset warm-film --engine gemini",
            luminary_tests::daemon::luminary_bin().display()
        );
        let mut script = Command::new("script");
        script.args(["-q", "-e", "-c", &line, "/dev/null"]);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        script
            .current_dir(&lum.env.work)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = script.spawn().unwrap();
        use std::io::Write;
        // The question comes after the estimate; the answer waits in the pty until read.
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let said = at_terminal("n\n");
    assert!(said.contains("2 of 2 photo(s) will call gemini"), "{said}");
    assert!(said.contains("Spend about $0.085? [y/N]"), "{said}");
    assert!(said.contains("nothing was enhanced"), "{said}");
    assert_eq!(mock.billed(), 0, "a 'no' still called the engine");
    // Standard input not a terminal: the estimate, no question, the batch runs.
    let (res, out) = lum.enhance(&[d, t, "--preset", "warm-film", "--engine", "gemini"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(res.len(), 2);
    let estimate = json_lines(&out.stdout)
        .into_iter()
        .find(|l| l["type"] == "estimate")
        .expect("an estimate line before the results");
    assert_eq!(
        (estimate["calls"].as_u64(), estimate["photos"].as_u64()),
        (Some(2), Some(2)),
        "{estimate}"
    );
    assert_eq!(mock.billed(), 2);
    // Now both are cached: free, so nothing to ask even at a terminal.
    let said = at_terminal("");
    assert!(
        said.contains("0 of 2 photo(s) will call gemini") && !said.contains("[y/N]"),
        "{said}"
    );
    assert_eq!(mock.billed(), 2);
}
