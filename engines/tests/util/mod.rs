//! Helpers for the engine tests: the test photo, providers wired to mocks, a controllable job,
//! and the checks every test repeats.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::RgbImage;
use luminary_engines::mock::{mock_grade, Fault, MockKind, MockServer, TEST_KEY};
use luminary_engines::{
    provider, Control, EditInput, EditOutput, EngineError, Provider, ProviderConfig, Tuning,
};

/// A photo-like test picture, ≤1024 px on the long edge, encoded as PNG and JPEG.
pub struct Photo {
    pub png: Vec<u8>,
    pub jpeg: Vec<u8>,
    pub rgb: RgbImage,
    pub width: u32,
    pub height: u32,
}

/// The real photos the CI fetches before testing (libjxl testdata).
fn photo_dir() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(std::path::Path::new(&home).join(".cache/luminary-dev/photos"))
}

/// Loads the widest landscape photo in the cache (flower.png, 2268×1512 → 1024×683), or `None`
/// with a printed notice when the cache is missing.
pub fn photo() -> Option<&'static Photo> {
    static PHOTO: OnceLock<Option<Photo>> = OnceLock::new();
    PHOTO
        .get_or_init(|| {
            let dir = photo_dir()?;
            let mut best: Option<(u64, std::path::PathBuf)> = None;
            for entry in std::fs::read_dir(&dir).ok()?.flatten() {
                let path = entry.path();
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if !matches!(ext.as_str(), "png" | "jpg" | "jpeg") {
                    continue;
                }
                let Ok((w, h)) = image::image_dimensions(&path) else {
                    continue;
                };
                // Prefer a landscape photo (its aspect must survive every engine), then the largest.
                let score = if w > h { 1 << 40 } else { 0 } + w as u64 * h as u64;
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, path));
                }
            }
            let (_, path) = best?;
            let img = image::open(&path).ok()?.to_rgb8();
            let scale = 1024.0 / img.width().max(img.height()) as f64;
            let img = if scale < 1.0 {
                let (w, h) = (
                    (img.width() as f64 * scale).round() as u32,
                    (img.height() as f64 * scale).round() as u32,
                );
                image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle)
            } else {
                img
            };
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .ok()?;
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode_image(&img)
                .ok()?;
            Some(Photo {
                png,
                jpeg,
                width: img.width(),
                height: img.height(),
                rgb: img,
            })
        })
        .as_ref()
}

/// `let photo = need_photo!();` — skips the test (with a notice) when the photos are missing.
#[macro_export]
macro_rules! need_photo {
    () => {
        match util::photo() {
            Some(p) => p,
            None => {
                eprintln!("SKIPPED: no test photos in ~/.cache/luminary-dev/photos (the CI fetches them first)");
                return;
            }
        }
    };
}

pub fn name_of(kind: MockKind) -> &'static str {
    match kind {
        MockKind::Gemini => "gemini",
        MockKind::OpenAi => "openai",
        MockKind::Fal => "fal",
        MockKind::Replicate => "replicate",
        MockKind::ComfyUi => "comfyui",
    }
}

/// Test settings: the mock's URL and key, short timeouts, tiny backoffs and polls.
pub fn cfg(base_url: &str) -> ProviderConfig {
    ProviderConfig {
        base_url: Some(base_url.to_string()),
        api_key: Some(TEST_KEY.to_string()),
        request_timeout_s: Some(10.0),
        total_timeout_s: Some(30.0),
        tuning: Tuning {
            backoff_base_ms: Some(20),
            poll_ms: Some(25),
            circuit_threshold: None,
            circuit_open_s: None,
            ignore_env: true,
        },
        ..Default::default()
    }
}

pub fn start(kind: MockKind, faults: Vec<Fault>) -> (MockServer, Arc<dyn Provider>) {
    start_with(kind, faults, |_| {})
}

pub fn start_with(
    kind: MockKind,
    faults: Vec<Fault>,
    tweak: impl FnOnce(&mut ProviderConfig),
) -> (MockServer, Arc<dyn Provider>) {
    let mock = MockServer::start(kind, faults);
    let mut c = cfg(&mock.base_url);
    tweak(&mut c);
    let p = provider(name_of(kind), &c).expect("provider");
    (mock, p)
}

pub const PROMPT: &str =
    "Warm film look, lift shadows slightly, keep composition and faces unchanged.";
pub const NEGATIVE: &str = "plastic skin, oversaturation";

pub fn input(photo: &Photo) -> EditInput<'_> {
    EditInput {
        image: &photo.png,
        mime: "image/png",
        width: photo.width,
        height: photo.height,
        prompt: PROMPT,
        negative_prompt: NEGATIVE,
        model: None,
        task: Default::default(),
    }
}

/// The host's job: a cancel flag and a progress log.
#[derive(Default)]
pub struct Job {
    pub cancel: AtomicBool,
    pub cancelled_at: Mutex<Option<Instant>>,
    pub progress: Mutex<Vec<String>>,
}

impl Job {
    pub fn run(&self, p: &dyn Provider, input: &EditInput<'_>) -> Result<EditOutput, EngineError> {
        let cancelled = || self.cancel.load(Ordering::SeqCst);
        let progress = |m: &str| self.progress.lock().unwrap().push(m.to_string());
        let ctl = Control {
            cancelled: &cancelled,
            progress: &progress,
        };
        let r = p.edit(input, &ctl);
        if let Err(e) = &r {
            assert_clean(e);
        }
        r
    }

    pub fn cancel_now(&self) {
        *self.cancelled_at.lock().unwrap() = Some(Instant::now());
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn log(&self) -> Vec<String> {
        self.progress.lock().unwrap().clone()
    }
}

/// One edit with a fresh job.
pub fn edit(p: &dyn Provider, photo: &Photo) -> Result<EditOutput, EngineError> {
    Job::default().run(p, &input(photo))
}

/// Runs an edit and cancels it after `after`; returns the result and how long the edit took to
/// return once cancelled.
pub fn edit_cancelled_after(
    p: &dyn Provider,
    photo: &Photo,
    after: Duration,
) -> (Result<EditOutput, EngineError>, Duration, Vec<String>) {
    let job = Job::default();
    let (r, done_at) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = job.run(p, &input(photo));
            (r, Instant::now())
        });
        std::thread::sleep(after);
        job.cancel_now();
        h.join().unwrap()
    });
    let cancelled_at = job.cancelled_at.lock().unwrap().expect("cancelled");
    (
        r,
        done_at.saturating_duration_since(cancelled_at),
        job.log(),
    )
}

/// The reply is exactly the mock's grade of what was sent (PNG is lossless end to end).
pub fn assert_graded(out: &EditOutput, sent: &RgbImage) {
    assert_eq!(out.mime, "image/png");
    let got = image::load_from_memory(&out.bytes)
        .expect("decodes")
        .to_rgb8();
    assert_eq!((out.width, out.height), (got.width(), got.height()));
    let want = mock_grade(sent);
    assert_eq!(got.dimensions(), want.dimensions(), "size");
    assert!(
        got.as_raw() == want.as_raw(),
        "the returned pixels are not mock_grade(input)"
    );
}

/// The key never appears in an error, whatever the path.
pub fn assert_clean(e: &EngineError) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(TEST_KEY), "key leaked: {text}");
        assert!(!text.contains(WRONG_KEY), "key leaked: {text}");
    }
}

pub const WRONG_KEY: &str = "wrong-secret-key-0042";

/// Seconds between two recorded requests.
pub fn gap(a: &luminary_engines::mock::Recorded, b: &luminary_engines::mock::Recorded) -> f64 {
    b.at.duration_since(a.at).as_secs_f64()
}

/// Waits up to `limit` for `cond`.
pub fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
