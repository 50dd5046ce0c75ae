//! `estimate`: what a batch would cost on a paid engine, before anything is paid — for
//! each photo whether its edit is cached (free) and its price, the totals, and whether the
//! batch fits the `[budget]` caps. No engine is called and no photo is decoded: a photo's
//! identity is its path, size and modification time, and the edit cache notes which photo
//! each answer was for (`EditCache::note_source`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::live::SourceId;
use crate::budget::dollars;
use crate::config::Config;
use crate::engine::engine_for;
use crate::engine::remote::{edit_ident, Engines};
use crate::error::{ErrorCode, JobError};
use crate::plugins::{resolve_params, Registry};

/// What a client asks (the `estimate` request's body).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// The photos.
    pub sources: Vec<PathBuf>,
    /// Preset id.
    pub preset: String,
    /// Preset parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Engine; as `enhance` would choose it when absent.
    #[serde(default)]
    pub engine: Option<String>,
}

/// One photo of an estimate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EstimateItem {
    /// The photo.
    pub source: PathBuf,
    /// Its edit is in the cache: free.
    pub cached: bool,
    /// What enhancing it would cost, US dollars (0 cached or offline).
    pub price: f64,
    /// Why it cannot be enhanced (`not_found`, …), if so; it then costs nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Engine calls it makes (an upscale: one per tile; otherwise 1, or 0 when cached).
    #[serde(default)]
    pub calls: usize,
}

impl EstimateItem {
    /// A photo that cannot be enhanced (`not_found`, …): it costs nothing.
    fn failed(source: &std::path::Path, e: &JobError) -> EstimateItem {
        EstimateItem {
            source: source.to_path_buf(),
            cached: false,
            price: 0.0,
            error: Some(serde_json::json!({"code": e.code.as_str(), "message": e.message})),
            calls: 0,
        }
    }
}

/// An estimate (the `done` event's body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The engine the batch would use.
    pub engine: String,
    /// Its model.
    pub model: String,
    /// Whether the engine is paid (not `local`).
    pub paid: bool,
    /// Per photo, in the order asked.
    pub items: Vec<EstimateItem>,
    /// Photos asked about.
    pub photos: usize,
    /// Of which cached.
    pub cached: usize,
    /// Of which would call the engine.
    pub calls: usize,
    /// The batch's expected cost, US dollars.
    pub cost_usd: f64,
    /// The preset sends the whole full-resolution photo out (an upscale, in tiles), not a
    /// small preview: bridges and the CLI say so before anything is sent.
    #[serde(default)]
    pub sends_full_photo: bool,
    /// How it stands against the `[budget]` caps (absent without caps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetCheck>,
    /// `[engine] confirm_above_usd`: clients ask before a batch that costs more.
    pub confirm_above_usd: f64,
}

/// The batch against the spending caps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BudgetCheck {
    /// The whole batch fits every cap.
    pub within: bool,
    /// The least any cap that applies has left, US dollars.
    pub remaining_usd: f64,
    /// When it does not fit: which cap, in words, and how to raise it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Estimates `req` (see the module documentation).
pub fn estimate(
    req: &EstimateRequest,
    config: &Config,
    config_file: &std::path::Path,
    registry: &Registry,
    engines: &Engines,
) -> Result<Estimate, JobError> {
    if req.sources.is_empty() {
        return Err(JobError::new(
            ErrorCode::BadRequest,
            "no photos to estimate",
        ));
    }
    let (descriptor, _plugin) = super::steps::find_preset(registry, &req.preset)?;
    let params = resolve_params(descriptor, &req.params)?;
    // As `enhance` chooses: the request's engine, else the preset's declared engine when
    // it is set up, else the default. No plugin code runs (the descriptor says it).
    let name = match &req.engine {
        Some(n) => n.clone(),
        None => descriptor
            .engine_hint
            .clone()
            .filter(|h| engines.is_set_up(h))
            .unwrap_or_else(|| config.engine.default.clone()),
    };
    let engine = engine_for(&name, descriptor, engines)?;
    let paid = engine.name() != "local";
    let model = engine.model();
    let price = if paid {
        engines.provider(engine.name())?.price_for(&model)
    } else {
        0.0
    };
    let edit = edit_ident(
        &descriptor.id,
        descriptor.version,
        &super::cutout::engine_params(descriptor, &params),
        engine.name(),
        &model,
    );
    let upscaling = descriptor.kind == luminary_plugin_api::PresetKind::Upscale;
    let mut items = Vec::with_capacity(req.sources.len());
    for source in &req.sources {
        let item = match SourceId::of(source) {
            Err(e) => EstimateItem::failed(source, &e),
            // An upscale: one call per tile of the full photo (the photo's size is read;
            // tiles already paid for are not looked up, so this is the most it costs).
            Ok(_) if upscaling => match dimensions(source, config) {
                Ok((w, h)) => {
                    let n = super::upscale::tile_count(w, h);
                    EstimateItem {
                        source: source.clone(),
                        cached: false,
                        price: if paid { n as f64 * price } else { 0.0 },
                        error: None,
                        calls: if paid { n } else { 0 },
                    }
                }
                Err(e) => EstimateItem::failed(source, &e),
            },
            Ok(id) => {
                let cached = paid
                    && engines.cache().is_some_and(|c| {
                        c.has_answer_for(&id.ident(config.engine.preview_size), &edit)
                            .unwrap_or_else(|e| {
                                tracing::warn!("edit cache: {e}");
                                false
                            })
                    });
                EstimateItem {
                    source: source.clone(),
                    cached,
                    price: if cached || !paid { 0.0 } else { price },
                    error: None,
                    calls: (paid && !cached) as usize,
                }
            }
        };
        items.push(item);
    }
    let cached = items.iter().filter(|i| i.cached).count();
    let calls = items
        .iter()
        .filter(|i| i.error.is_none())
        .map(|i| i.calls)
        .sum::<usize>();
    let micro = |usd: f64| (usd * 1e6).round() as i64;
    let cost_micro = calls as i64 * micro(price);
    let budget = budget_check(engines, engine.name(), cost_micro, config_file)?;
    Ok(Estimate {
        engine: engine.name().to_string(),
        model,
        paid,
        photos: items.len(),
        cached,
        calls,
        cost_usd: cost_micro as f64 / 1e6,
        sends_full_photo: upscaling && paid,
        items,
        budget,
        confirm_above_usd: config.engine.confirm_above_usd,
    })
}

fn budget_check(
    engines: &Engines,
    engine: &str,
    cost_micro: i64,
    config_file: &std::path::Path,
) -> Result<Option<BudgetCheck>, JobError> {
    let caps = engines.budget().caps_for(engine);
    if caps.is_empty() || engine == "local" {
        return Ok(None);
    }
    let Some(ledger) = engines.ledger() else {
        return Ok(None);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut least = i64::MAX;
    let mut message = None;
    for cap in &caps {
        let spent = ledger
            .spent_since(cap.period.start(now), cap.engine.as_deref())
            .map_err(|e| JobError::new(ErrorCode::Internal, e.to_string()))?;
        let left = (cap.micro_usd - spent).max(0);
        least = least.min(left);
        if message.is_none() && cost_micro > left {
            message = Some(format!(
                "this batch ({}) would go past {}: {} of it is left; the calls beyond it will \
                 be refused. To spend more, raise {} in {}",
                dollars(cost_micro),
                cap.describe(),
                dollars(left),
                cap.key(),
                config_file.display()
            ));
        }
    }
    Ok(Some(BudgetCheck {
        within: message.is_none(),
        remaining_usd: least as f64 / 1e6,
        message,
    }))
}

/// A photo's upright size without developing it: the header of a rendered file, else (RAW)
/// the decoder's output.
fn dimensions(source: &std::path::Path, config: &Config) -> Result<(usize, usize), JobError> {
    if let Ok((w, h)) = image::image_dimensions(source) {
        return Ok((w as usize, h as usize));
    }
    let ingested = crate::ingest::ingest(source, &config.limits)?;
    Ok((ingested.image.width, ingested.image.height))
}
