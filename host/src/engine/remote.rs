//! AI engines (Gemini, OpenAI, fal, Replicate, ComfyUI) as pipeline engines: the preview
//! goes out as a metadata-free PNG, the answer comes back through the edit cache, and
//! every call lands in the usage ledger.
//!
//! The wire clients live in the `luminary-engines` crate; this module owns what the
//! daemon adds around them: which engine a job uses, never paying twice for the same
//! edit (the cache), and knowing what was spent (the ledger).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};

use luminary_engines::{Control, EditInput, EngineError, Provider, ProviderConfig};

use crate::cache::{CacheKey, EditCache};
use crate::color::OutputSpace;
use crate::config::Config;
use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::ledger::{Ledger, LedgerEntry, Outcome};

/// The AI engines of one daemon (or one CLI run): providers built on first use and kept
/// for the process's life (they hold connection pools, concurrency limits and circuit
/// breakers), the edit cache and the ledger.
pub struct Engines {
    configs: BTreeMap<String, ProviderConfig>,
    providers: Mutex<BTreeMap<String, Arc<dyn Provider>>>,
    cache: Option<EditCache>,
    ledger: Option<Ledger>,
    /// `[budget]`: paid calls past a cap are refused before they are sent.
    budget: crate::budget::BudgetConfig,
    /// Named in a refusal, so the photographer knows where to raise a cap.
    config_file: std::path::PathBuf,
}

/// Where the cache and the ledger live.
pub fn cache_dir(cache_root: &Path) -> std::path::PathBuf {
    cache_root.join("edits")
}

/// The ledger's file.
pub fn ledger_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("usage.sqlite")
}

impl Engines {
    /// Opens the cache and the ledger. Either failing is logged and the daemon goes on
    /// without it: a broken cache must not stop offline work. (A job that would call a
    /// paid engine without a ledger still runs; the log says why nothing is recorded.)
    pub fn open(
        config: &Config,
        config_file: &Path,
        cache_root: &Path,
        data_dir: &Path,
    ) -> Engines {
        let cache = match EditCache::open(&cache_dir(cache_root), config.cache.max_mb << 20) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("edit cache unavailable, engine answers will not be reused: {e}");
                None
            }
        };
        let ledger = match Ledger::open(&ledger_path(data_dir)) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("usage ledger unavailable, engine calls will not be recorded: {e}");
                None
            }
        };
        Engines {
            configs: config.engines.clone(),
            providers: Mutex::new(BTreeMap::new()),
            cache,
            ledger,
            budget: config.budget.clone(),
            config_file: config_file.to_path_buf(),
        }
    }

    /// Without cache or ledger (tests, `luminary engines`).
    pub fn without_storage(config: &Config) -> Engines {
        Engines {
            configs: config.engines.clone(),
            providers: Mutex::new(BTreeMap::new()),
            cache: None,
            ledger: None,
            budget: config.budget.clone(),
            config_file: std::path::PathBuf::new(),
        }
    }

    /// The provider called `name`, built on first use.
    pub fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, JobError> {
        let mut map = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(name) {
            return Ok(p.clone());
        }
        let cfg = self.configs.get(name).cloned().unwrap_or_default();
        let p = luminary_engines::provider(name, &cfg).map_err(engine_error)?;
        map.insert(name.to_string(), p.clone());
        Ok(p)
    }

    /// Whether `name` is set up well enough to be chosen without being asked for: its key
    /// is present, or (ComfyUI) it has a `[engines.comfyui]` table.
    pub fn is_set_up(&self, name: &str) -> bool {
        if name == "local" {
            return true;
        }
        if name == "comfyui" {
            return self.configs.contains_key(name);
        }
        self.provider(name).is_ok_and(|p| p.has_key())
    }

    /// The edit cache, when it opened.
    pub fn cache(&self) -> Option<&EditCache> {
        self.cache.as_ref()
    }

    /// The ledger, when it opened.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    /// The spending caps.
    pub fn budget(&self) -> &crate::budget::BudgetConfig {
        &self.budget
    }

    /// Records a paid call about to be sent, written before the call so that a daemon
    /// killed mid-call still shows it, after checking it against `[budget]` in the same
    /// ledger transaction: a call past a cap is refused here, before anything is sent.
    /// Returns the ledger row to finish (none without a ledger).
    fn begin_call(
        &self,
        engine: &str,
        model: &str,
        preset: &str,
        price: f64,
    ) -> Result<Option<i64>, JobError> {
        let entry = LedgerEntry::engine_call(engine, model, preset, Outcome::Ok, price, true);
        let caps = self.budget.caps_for(engine);
        let Some(ledger) = &self.ledger else {
            if caps.is_empty() {
                return Ok(None);
            }
            // Without the ledger nothing says what was spent: a cap cannot be kept.
            return Err(JobError::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "the usage ledger could not be opened (see the daemon log), so the spending \
                     caps in {} cannot be checked; no call to {engine} was sent",
                    self.config_file.display()
                ),
            ));
        };
        match ledger.begin_within(&entry, &caps) {
            Ok(Ok(id)) => Ok(Some(id)),
            Ok(Err(exceeded)) => {
                tracing::info!("refused a call to {engine}: {}", exceeded.cap.describe());
                Err(JobError::new(
                    ErrorCode::BudgetExceeded,
                    exceeded.message(&self.config_file),
                ))
            }
            Err(e) if caps.is_empty() => {
                tracing::warn!("cannot record engine usage: {e}");
                Ok(None)
            }
            Err(e) => Err(JobError::new(
                ErrorCode::BudgetExceeded,
                format!("cannot check the spending caps ({e}); no call to {engine} was sent"),
            )),
        }
    }

    fn record(&self, entry: LedgerEntry) {
        if let Some(l) = &self.ledger {
            if let Err(e) = l.record(&entry) {
                tracing::warn!("cannot record engine usage: {e}");
            }
        }
    }
}

/// Maps a provider failure to the protocol's error codes. Messages come from the engines
/// crate, which never puts a key in them.
pub fn engine_error(e: EngineError) -> JobError {
    let code = match &e {
        EngineError::Auth { .. } => ErrorCode::EngineAuth,
        EngineError::Refused { .. } => ErrorCode::EngineRefused,
        EngineError::RateLimited { .. } => ErrorCode::RateLimited,
        EngineError::Cancelled => return JobError::cancelled(),
        EngineError::Config { .. } => ErrorCode::BadRequest,
        EngineError::Unavailable { .. }
        | EngineError::Timeout { .. }
        | EngineError::BadReply { .. } => ErrorCode::EngineUnavailable,
    };
    JobError::new(code, e.to_string())
}

fn outcome_of(e: &EngineError) -> Outcome {
    match e {
        EngineError::Auth { .. } => Outcome::Auth,
        EngineError::Refused { .. } => Outcome::Refused,
        EngineError::Cancelled => Outcome::Cancelled,
        EngineError::Timeout { .. } => Outcome::Timeout,
        _ => Outcome::Failed,
    }
}

/// The preview as it leaves the machine: 8-bit sRGB PNG with no metadata chunks at all
/// (no EXIF, no GPS, no serial number, no ICC — sRGB is the PNG default), and the same
/// picture decoded back into the working space: exactly what the engine saw, which is what
/// the transfer must learn from.
pub fn outgoing_preview(preview: &RgbF32) -> (Vec<u8>, RgbF32) {
    let enc = OutputSpace::Srgb.encoder();
    let mut rgb8 = Vec::with_capacity(preview.data.len());
    for p in preview.data.chunks_exact(3) {
        let e = enc.encode(p);
        rgb8.extend(e.map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8));
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(
            Cursor::new(&mut png_bytes),
            preview.width as u32,
            preview.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut w = encoder.write_header().expect("writing to memory");
        w.write_image_data(&rgb8).expect("writing to memory");
    }
    let seen = decode_srgb8(preview.width, preview.height, &rgb8);
    (png_bytes, seen)
}

fn decode_srgb8(w: usize, h: usize, rgb8: &[u8]) -> RgbF32 {
    let encoded: Vec<f32> = rgb8.iter().map(|&v| v as f32 / 255.0).collect();
    crate::color::to_working(w, h, encoded, None).expect("sRGB converts")
}

/// Decodes an engine's answer into the working space. Answers are sRGB unless they carry
/// an ICC profile.
pub fn decode_answer(bytes: &[u8], engine: &str) -> Result<RgbF32, JobError> {
    let bad = |m: String| JobError::new(ErrorCode::EngineUnavailable, format!("{engine}: {m}"));
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("unreadable answer: {e}")))?;
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(format!("unreadable answer: {e}")))?;
    use image::ImageDecoder;
    let icc = decoder.icc_profile().ok().flatten();
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| bad(format!("undecodable answer: {e}")))?
        .into_rgb32f();
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 8 || h < 8 {
        return Err(bad(format!("answer is only {w}×{h} pixels")));
    }
    crate::color::to_working(w, h, img.into_raw(), icc.as_deref())
        .map_err(|e| bad(format!("answer's colour profile: {e}")))
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

/// What an AI engine gave back for one job.
pub struct Answer {
    /// The engine's picture, working space, its own size.
    pub image: RgbF32,
    /// Whether it came lossy (JPEG): the transfer then smooths its residual.
    pub lossy: bool,
    /// From the edit cache.
    pub cached: bool,
    /// Estimated cost of this job's call (0 when cached).
    pub cost: f64,
    /// The edit cache's key of this answer (a learned look records where it came from).
    pub key: String,
    /// The answer as the engine sent it: a cut-out's matte is read from these (its alpha
    /// channel or grey levels), not from the colour-managed picture.
    pub bytes: Vec<u8>,
}

/// Everything that identifies one edit, for the cache key and the ledger.
pub struct EditJob<'a> {
    /// Preset id.
    pub preset: &'a str,
    /// Preset version.
    pub preset_version: u32,
    /// Resolved parameters.
    pub params: &'a serde_json::Map<String, serde_json::Value>,
    /// What the model is asked (from the preset's kind).
    pub task: luminary_engines::Task,
    /// Prompt.
    pub prompt: &'a str,
    /// Negative prompt.
    pub negative_prompt: &'a str,
    /// The photo as a file (`live::SourceId::ident`), when the job knows it: the cache
    /// notes which photo an answer was for, so `estimate` can tell without decoding.
    pub photo: Option<String>,
}

/// The edit's identity for `estimate` and the cache's photo notes: everything of the cache
/// key but the preview's pixels and the prompt (which plugins build from the decoded
/// photo; for one photo and preset they come out the same).
pub fn edit_ident(
    preset: &str,
    version: u32,
    params: &serde_json::Map<String, serde_json::Value>,
    engine: &str,
    model: &str,
) -> String {
    format!(
        "{preset}\u{0}{version}\u{0}{}\u{0}{engine}\u{0}{model}",
        serde_json::Value::Object(params.clone())
    )
}

impl Engines {
    /// The engine's answer for `sent` (the outgoing PNG): from the cache when this exact
    /// edit was made before — at any intensity — else from the engine, then cached.
    // Each argument is one part of the cache key or of the call; a struct of them would
    // only be built here to be taken apart.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        provider: &dyn Provider,
        model: &str,
        sent: &[u8],
        size: (usize, usize),
        job: &EditJob<'_>,
        cancel: &Cancel,
        status: &(dyn Fn(&str) + Sync),
    ) -> Result<Answer, JobError> {
        let (engine, model) = (provider.name().to_string(), model.to_string());
        let key = CacheKey::new(
            sent,
            job.preset,
            job.preset_version,
            job.params,
            &format!("{}\u{0}{}", job.prompt, job.negative_prompt),
            &engine,
            &model,
        );
        let note = |cache: &EditCache| {
            if let Some(photo) = &job.photo {
                let edit = edit_ident(job.preset, job.preset_version, job.params, &engine, &model);
                if let Err(e) = cache.note_source(photo, &edit, &key) {
                    tracing::warn!("edit cache: {e}");
                }
            }
        };
        if let Some(cache) = &self.cache {
            match cache.get(&key) {
                Ok(Some(hit)) => match decode_answer(&hit.bytes, &engine) {
                    Ok(image) => {
                        note(cache);
                        self.record(LedgerEntry::cache_hit(&engine, &model, job.preset));
                        return Ok(Answer {
                            image,
                            lossy: is_jpeg(&hit.bytes),
                            cached: true,
                            cost: 0.0,
                            key: key.as_str().to_string(),
                            bytes: hit.bytes,
                        });
                    }
                    Err(e) => tracing::warn!("ignoring an unreadable cache entry: {e}"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("edit cache lookup failed: {e}"),
            }
        }
        let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
        let ctl = Control {
            cancelled: &cancelled,
            progress: status,
        };
        let input = EditInput {
            image: sent,
            mime: "image/png",
            width: size.0 as u32,
            height: size.1 as u32,
            prompt: job.prompt,
            negative_prompt: job.negative_prompt,
            model: (model != provider.model()).then_some(model.as_str()),
            task: job.task,
        };
        let price = provider.price_for(&model);
        let pending = self.begin_call(&engine, &model, job.preset, price)?;
        let finish = |entry: LedgerEntry| match (pending, &self.ledger) {
            (Some(id), Some(l)) => {
                if let Err(e) = l.finish(id, &entry) {
                    tracing::warn!("cannot record engine usage: {e}");
                }
            }
            _ => self.record(entry),
        };
        match provider.edit(&input, &ctl) {
            Ok(out) => {
                let mut entry =
                    LedgerEntry::engine_call(&engine, &model, job.preset, Outcome::Ok, price, true);
                entry.request_id = out.request_id.clone();
                finish(entry);
                let image = decode_answer(&out.bytes, &engine)?;
                if let Some(cache) = &self.cache {
                    match cache.put(
                        &key, &out.bytes, &out.mime, out.width, out.height, &engine, &model,
                    ) {
                        Ok(()) => note(cache),
                        Err(e) => tracing::warn!("cannot cache the engine's answer: {e}"),
                    }
                }
                Ok(Answer {
                    image,
                    lossy: is_jpeg(&out.bytes),
                    cached: false,
                    cost: price,
                    key: key.as_str().to_string(),
                    bytes: out.bytes,
                })
            }
            Err(e) => {
                finish(LedgerEntry::engine_call(
                    &engine,
                    &model,
                    job.preset,
                    outcome_of(&e),
                    price,
                    e.maybe_billed(),
                ));
                Err(engine_error(e))
            }
        }
    }
}
