//! Live previews (the `preview` request): the photo as the job would make it, small enough
//! to judge (long edge up to 2048), fast enough to follow an intensity slider.
//!
//! A preview runs the job's own stages on the base downscaled to display size, and keeps
//! two things in memory, least recently used first out, within `[preview] memory_mb`:
//!
//! * per photo, the engine's preview (exactly what `enhance` sends, so an engine answer got
//!   for a preview is the cache hit of the full-resolution job) and the display-size base;
//! * per photo, edit (preset, parameters, engine) and preview size, the edit at full
//!   strength, made at the size shown (a 1024-pixel preview edits 0.7 MP, not 2.8).
//!
//! So a new intensity is one blend and one small JPEG (no decode, no engine); a new preset
//! on the same photo skips the decode; and for a paid engine the first preview *is* the
//! engine call — through the edit cache and the ledger — which the final `enhance` then
//! reuses at no cost. Preview files go to the cache folder (`previews/`), never beside the
//! originals, and the oldest are removed as new ones come.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use luminary_plugin_api::ImageFacts;

use super::request::Progress;
use super::{blend, preview, render};
use crate::color::OutputSpace;
use crate::config::Config;
use crate::engine::remote::{EditJob, Engines};
use crate::engine::{engine_for, Edited, JobInfo};
use crate::error::{check, Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::plugins::{resolve_params, Registry};
use crate::transfer::Transfer;

/// The longest preview edge a client may ask for.
pub const MAX_SIZE: u32 = 2048;
/// The shortest.
pub const MIN_SIZE: u32 = 64;
/// The default long edge.
pub const DEFAULT_SIZE: u32 = 1024;

/// What a client asks for (the `preview` request's body).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The photo: a path on this machine.
    pub source: PathBuf,
    /// Preset id.
    pub preset: String,
    /// 0..1; the preset's default when absent.
    #[serde(default)]
    pub intensity: Option<f64>,
    /// Preset parameters (validated against its schema).
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Engine name; chosen as for `enhance` when absent.
    #[serde(default)]
    pub engine: Option<String>,
    /// Long edge of the preview, 64..=2048 (default 1024).
    #[serde(default)]
    pub size: Option<u32>,
    /// `jpeg` (default) or `png`.
    #[serde(default)]
    pub format: Option<PreviewFormat>,
}

/// A preview file's format. Both are 8-bit sRGB with an ICC profile.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum PreviewFormat {
    /// Quality 90.
    #[default]
    Jpeg,
    /// Lossless.
    Png,
}

/// What a preview reports (the `done` event's body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PreviewResult {
    /// The source path.
    pub input: PathBuf,
    /// The preview file (in the daemon's cache folder).
    pub output: PathBuf,
    /// Preset id.
    pub preset: String,
    /// Intensity used.
    pub intensity: f64,
    /// Engine used.
    pub engine: String,
    /// Engine model.
    pub model: String,
    /// Whether the engine's answer came from the cache (or from this daemon's memory).
    pub cached: bool,
    /// What this preview cost, in US dollars (0 unless it made the engine call).
    pub cost: f64,
    /// Preview width.
    pub width: u32,
    /// Preview height.
    pub height: u32,
    /// What was reused: `none`, `base` (no decode), `edit` (only a blend).
    pub reused: String,
    /// Milliseconds per stage, and `total`.
    pub timings_ms: std::collections::BTreeMap<String, u64>,
}

/// A file as it is now: a changed photo is a new photo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl SourceId {
    /// The identity of `path`, or `not_found`.
    pub fn of(path: &Path) -> Result<SourceId, JobError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorCode::NotFound
            } else {
                ErrorCode::CorruptInput
            };
            JobError::file(code, path, format!("cannot read the file ({e})"))
        })?;
        if !meta.is_file() {
            return Err(JobError::file(ErrorCode::NotFound, path, "not a file"));
        }
        Ok(SourceId {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

impl SourceId {
    /// The photo as the edit cache notes it, with the engine preview's size (a different
    /// size sends different pixels, so it is another edit).
    pub fn ident(&self, preview_size: u32) -> String {
        let modified = self
            .modified
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!(
            "{}\u{0}{}\u{0}{modified}\u{0}{preview_size}",
            self.path.display(),
            self.len
        )
    }
}

/// A photo's pictures kept for previews.
pub struct Bases {
    /// What the engine is sent, as `enhance` computes it (`downscale(base, preview_size)`).
    pub engine_preview: RgbF32,
    /// The base at display size (long edge up to [`MAX_SIZE`]).
    pub display: RgbF32,
    /// The facts plugins see, as `enhance` computes them.
    pub facts: ImageFacts,
    /// The base at the preview sizes asked for so far (from `display`): an edit is made at
    /// the size shown, so a 1024-pixel preview edits 0.7 MP, not 2.8.
    sized: Mutex<Vec<(u32, Arc<RgbF32>)>>,
}

impl Bases {
    /// The base with a long edge of at most `size`.
    fn at(&self, size: u32) -> Arc<RgbF32> {
        let mut sized = self.sized.lock().unwrap();
        if let Some((_, b)) = sized.iter().find(|(s, _)| *s == size) {
            return b.clone();
        }
        let b = Arc::new(preview::downscale(&self.display, size as usize));
        sized.push((size, b.clone()));
        b
    }
}

/// One edit of one photo at full strength, at one preview size.
struct Edit {
    /// The base it was made from (blended against).
    base: Arc<RgbF32>,
    edited: RgbF32,
    engine: String,
    model: String,
}

/// An edit's identity: the photo, and everything that changes the engine's answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EditKey {
    source: SourceId,
    preset: String,
    version: u32,
    params: String,
    engine: String,
    model: String,
    prompt: String,
    size: u32,
}

/// A small least-recently-used map bounded by bytes.
struct Lru<K, V> {
    entries: HashMap<K, (Arc<V>, u64, usize)>,
    tick: u64,
    bytes: usize,
}

impl<K: Clone + Eq + std::hash::Hash, V> Lru<K, V> {
    fn new() -> Self {
        Lru {
            entries: HashMap::new(),
            tick: 0,
            bytes: 0,
        }
    }

    fn get(&mut self, k: &K) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(k).map(|e| {
            e.1 = tick;
            e.0.clone()
        })
    }

    /// Inserts, then drops the least recently used entries until at most `budget` bytes
    /// are held (the newest entry stays even when it alone is larger).
    fn put(&mut self, k: K, v: Arc<V>, size: usize, budget: usize) {
        self.tick += 1;
        if let Some(old) = self.entries.insert(k.clone(), (v, self.tick, size)) {
            self.bytes -= old.2;
        }
        self.bytes += size;
        while self.bytes > budget && self.entries.len() > 1 {
            let oldest = self
                .entries
                .iter()
                .filter(|(key, _)| **key != k)
                .min_by_key(|(_, e)| e.1)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(key) => {
                    let e = self.entries.remove(&key).expect("present");
                    self.bytes -= e.2;
                }
                None => break,
            }
        }
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

fn image_bytes(img: &RgbF32) -> usize {
    img.data.len() * 4
}

/// The daemon's preview memory: photos' bases and edits, each bounded by half of
/// `[preview] memory_mb`.
pub struct Live {
    bases: Mutex<Lru<SourceId, Bases>>,
    edits: Mutex<Lru<EditKey, Edit>>,
    budget: usize,
}

impl Live {
    /// Empty, holding at most `memory_mb` in all.
    pub fn new(memory_mb: u64) -> Live {
        Live {
            bases: Mutex::new(Lru::new()),
            edits: Mutex::new(Lru::new()),
            budget: (memory_mb as usize).saturating_mul(1 << 20) / 2,
        }
    }

    /// Bytes held (bases, edits), for `status`.
    pub fn held(&self) -> (usize, usize) {
        (
            self.bases.lock().unwrap().bytes(),
            self.edits.lock().unwrap().bytes(),
        )
    }

    /// The photo's bases from memory, if kept.
    pub fn bases(&self, id: &SourceId) -> Option<Arc<Bases>> {
        self.bases.lock().unwrap().get(id)
    }
}

/// The bases of `source`: from memory, else decoded, rendered and downscaled as `enhance`
/// does, then kept.
fn bases_of(
    id: &SourceId,
    config: &Config,
    live: &Live,
    cancel: &Cancel,
) -> Result<(Arc<Bases>, bool), JobError> {
    if let Some(b) = live.bases(id) {
        return Ok((b, true));
    }
    let ingested = crate::ingest::ingest_cancellable(&id.path, &config.limits, cancel)?;
    check(cancel)?;
    let mut base = ingested.image;
    let engine_preview = render::render_base_and_downscale(
        &mut base,
        ingested.rendering,
        config.engine.preview_size as usize,
    );
    let mut facts = preview::facts(&engine_preview, base.width, base.height, ingested.is_raw);
    facts.make = ingested.meta.text(exif::Tag::Make);
    facts.model = ingested.meta.text(exif::Tag::Model);
    let display = preview::downscale(&base, MAX_SIZE as usize);
    drop(base);
    // With room for the smaller sizes made from `display` later (a quarter each).
    let size = image_bytes(&engine_preview) + image_bytes(&display) * 3 / 2;
    let b = Arc::new(Bases {
        engine_preview,
        display,
        facts,
        sized: Mutex::new(Vec::new()),
    });
    live.bases
        .lock()
        .unwrap()
        .put(id.clone(), b.clone(), size, live.budget);
    Ok((b, false))
}

/// Runs one preview. `cache_dir` is the daemon's cache folder (previews go to
/// `cache_dir/previews/`).
#[allow(clippy::too_many_arguments)]
pub fn run_preview(
    req: &PreviewRequest,
    config: &Config,
    registry: &Registry,
    engines: &Engines,
    live: &Live,
    cache_dir: &Path,
    progress: Progress<'_>,
    off_cpu: crate::engine::OffCpu<'_>,
    cancel: &Cancel,
) -> Result<PreviewResult, JobError> {
    let started = Instant::now();
    let mut laps = super::steps::Laps::start();
    if req.source.as_os_str().is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "no source photo given",
        ));
    }
    let size = req.size.unwrap_or(DEFAULT_SIZE);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            format!(
                "a preview's size must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {size})"
            ),
        ));
    }
    let (descriptor, plugin) = super::steps::find_preset(registry, &req.preset)?;
    if descriptor.kind == luminary_plugin_api::PresetKind::Upscale {
        // A preview of an upscale would be the photo, smaller: nothing to see, and it
        // would send the whole photo out.
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "an upscale has no preview: run it, after its estimate",
        ));
    }
    let intensity =
        blend::validate_intensity(req.intensity.unwrap_or(descriptor.default_intensity))?;
    let params = resolve_params(descriptor, &req.params)?;
    if let Some(name) = &req.engine {
        engine_for(name, descriptor, engines)?;
    }
    let id = SourceId::of(&req.source)?;

    progress("ingest", 0.0);
    let (bases, had_base) = bases_of(&id, config, live, cancel)?;
    laps.lap("ingest");
    check(cancel)?;

    progress("preset", 0.4);
    let (engine_req, engine_name) = super::steps::engine_request(
        descriptor,
        plugin,
        &params,
        &bases.facts,
        req.engine.as_deref(),
        engines,
        config,
    )?;
    let engine = engine_for(&engine_name, descriptor, engines)?;
    let key = EditKey {
        source: id.clone(),
        preset: descriptor.id.clone(),
        version: descriptor.version,
        params: Value::Object(params.clone()).to_string(),
        engine: engine.name().to_string(),
        model: engine.model(),
        prompt: format!("{}\u{0}{}", engine_req.prompt, engine_req.negative_prompt),
        size,
    };
    laps.lap("preset");

    let kept = live.edits.lock().unwrap().get(&key);
    let from_memory = kept.is_some();
    let (edit, cached, cost) = match kept {
        // An AI engine's answer kept in memory is a cached answer; the offline engine
        // has none.
        Some(e) => {
            let cached = e.engine != "local";
            (e, cached, 0.0)
        }
        None => {
            progress("engine", 0.5);
            let status = |msg: &str| progress(&format!("engine · {msg}"), 0.5);
            let info = JobInfo {
                edit: EditJob {
                    preset: &descriptor.id,
                    preset_version: descriptor.version,
                    params: &super::cutout::engine_params(descriptor, &params),
                    prompt: &engine_req.prompt,
                    negative_prompt: &engine_req.negative_prompt,
                    task: super::cutout::task_of(descriptor),
                    photo: Some(id.ident(config.engine.preview_size)),
                },
                status: &status,
                off_cpu,
            };
            let base = bases.at(size);
            let display = (*base).clone();
            let mut pixel_output = None;
            if let Some(plugin) =
                plugin.filter(|_| engine.name() == "local" && descriptor.pixel_function)
            {
                let mut edited = display.clone();
                if super::steps::pixel_function(
                    plugin,
                    &descriptor.id,
                    &params,
                    &bases.facts,
                    &engine_req,
                    &bases.engine_preview,
                    &mut edited,
                    1.0,
                    cancel,
                )?
                .is_some()
                {
                    pixel_output = Some(edited);
                }
            }
            let (edited, cached, cost) = match pixel_output {
                Some(edited) => (edited, false, 0.0),
                None => match engine.run(
                    &engine_req,
                    &info,
                    display,
                    &bases.engine_preview,
                    1.0,
                    cancel,
                )? {
                    Edited::Blended(out) => (out, false, 0.0),
                    // A cut-out previews as the photo over a checkerboard, through its
                    // matte (refined as the full job refines it, at the preview's size).
                    Edited::Answer {
                        mut base, answer, ..
                    } if descriptor.kind == luminary_plugin_api::PresetKind::Cutout => {
                        let refine =
                            params.get("refine_edges").and_then(Value::as_bool) != Some(false);
                        let alpha =
                            super::cutout::alpha(&base, &answer, engine.name(), refine, 1.0)?;
                        crate::matte::over_checkerboard(&mut base, &alpha);
                        (base, answer.cached, answer.cost)
                    }
                    Edited::Answer {
                        mut base,
                        seen,
                        answer,
                    } => {
                        let mode = super::steps::transfer_mode(descriptor);
                        let transfer =
                            Transfer::fit_answer(&seen, &answer.image, mode, answer.lossy);
                        transfer.apply_blend(&mut base, 1.0, cancel)?;
                        (base, answer.cached, answer.cost)
                    }
                },
            };
            let size = image_bytes(&edited);
            let e = Arc::new(Edit {
                base,
                edited,
                engine: engine.name().to_string(),
                model: engine.model(),
            });
            live.edits
                .lock()
                .unwrap()
                .put(key.clone(), e.clone(), size, live.budget);
            (e, cached, cost)
        }
    };
    laps.lap("engine");
    check(cancel)?;

    progress("blend", 0.9);
    let mut out = edit.edited.clone();
    blend::blend_into(&edit.base, &mut out, intensity as f32);
    laps.lap("blend");
    let format = req.format.unwrap_or_default();
    let path = write_preview(&out, format, cache_dir, &key, intensity, size, config)?;
    laps.lap("encode");
    let mut timings = laps.timings;
    timings.insert("total".into(), started.elapsed().as_millis() as u64);
    progress("done", 1.0);
    Ok(PreviewResult {
        input: req.source.clone(),
        output: path,
        preset: descriptor.id.clone(),
        intensity,
        engine: edit.engine.clone(),
        model: edit.model.clone(),
        cached,
        cost,
        width: out.width as u32,
        height: out.height as u32,
        reused: if from_memory {
            "edit"
        } else if had_base {
            "base"
        } else {
            "none"
        }
        .into(),
        timings_ms: timings,
    })
}

/// How many preview files the cache folder keeps; older ones are removed.
const KEEP_FILES: usize = 256;

/// Writes the preview as `previews/<hash>.jpg|png` (the same request gives the same
/// name) through a temporary file and a rename, then removes the oldest previews beyond
/// [`KEEP_FILES`].
fn write_preview(
    img: &RgbF32,
    format: PreviewFormat,
    cache_dir: &Path,
    key: &EditKey,
    intensity: f64,
    size: u32,
    config: &Config,
) -> Result<PathBuf, JobError> {
    use sha2::Digest;
    let dir = cache_dir.join("previews");
    let fail = |why: String| JobError::file(ErrorCode::OutputFailed, &dir, why);
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create the folder ({e})")))?;
    let mut h = sha2::Sha256::new();
    h.update(format!(
        "{key:?}\u{0}{intensity:.4}\u{0}{size}\u{0}{format:?}\u{0}{}",
        config.engine.preview_size
    ));
    let name: String = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ext = match format {
        PreviewFormat::Jpeg => "jpg",
        PreviewFormat::Png => "png",
    };
    let path = dir.join(format!("{name}.{ext}"));
    let bytes = super::encode::preview_bytes(img, format == PreviewFormat::Png, OutputSpace::Srgb)
        .map_err(|e| fail(format!("cannot encode the preview ({e})")))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".preview-")
        .tempfile_in(&dir)
        .map_err(|e| fail(format!("cannot write a preview ({e})")))?;
    std::io::Write::write_all(&mut tmp, &bytes)
        .map_err(|e| fail(format!("cannot write a preview ({e})")))?;
    tmp.persist(&path)
        .map_err(|e| fail(format!("cannot write a preview ({})", e.error)))?;
    prune(&dir, KEEP_FILES);
    Ok(path)
}

/// Removes the oldest files of `dir` beyond `keep` (previews a client no longer shows).
pub fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file()
                .then(|| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
        })
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(p);
    }
}
