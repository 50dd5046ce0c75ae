//! How well a shoot's look carries: learned on one photo's preview and answer, applied at
//! full resolution to *other* photos, against the same known edit applied to those photos
//! at full resolution (`transfer::fidelity`'s edits, on sRGB-encoded values, PSNR on
//! sRGB). Beside it, per-photo transfer (each photo's own answer), to say what a look
//! gives up on edits with local parts.
//!
//! Used by `luminary bench --look` and `tests/tests/fidelity.rs`.

use std::time::Instant;

use super::Look;
use crate::error::Cancel;
use crate::image::RgbF32;
use crate::transfer::fidelity::{apply_edit, psnr, working_to_srgb, AnswerFormat, Edit, Scene};

/// One photo of the benchmark.
pub struct Photo {
    /// Its name in the table.
    pub name: String,
    /// The photo, prepared (sRGB and working space, full resolution).
    pub scene: Scene,
}

/// One row: a look learned on `reference`, applied to `target`.
#[derive(Clone, Debug)]
pub struct Row {
    /// The edit.
    pub edit: Edit,
    /// Photo the look was learned on.
    pub reference: String,
    /// Photo it was applied to.
    pub target: String,
    /// The look on `target` against the edit made on `target` at full resolution.
    pub look_db: f64,
    /// Per-photo transfer of `target`'s own answer, same comparison.
    pub transfer_db: f64,
    /// Learning (registration and fit), milliseconds.
    pub learn_ms: f64,
    /// Applying at full resolution, megapixels per second.
    pub apply_mps: f64,
}

/// The look learned from `reference`'s answer to `edit` (PNG), and how long it took.
pub fn learn_on(reference: &Scene, edit: Edit) -> (Look, f64) {
    let (seen, answer) = reference.answer(edit, AnswerFormat::Png);
    let started = Instant::now();
    let fitted = super::fit::learn_from_answers(&[(&seen, &answer)]);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    (
        Look {
            info: super::LookInfo {
                preset: edit.name().into(),
                preset_version: 1,
                params: Default::default(),
                engine: "benchmark".into(),
                model: "known edit".into(),
                references: vec![],
                coverage: fitted.coverage,
                created: 0,
            },
            global: fitted.global,
            lut: fitted.lut,
        },
        ms,
    )
}

/// `look` applied to `target` at full resolution, sRGB-encoded, and the megapixels per
/// second of the apply.
pub fn apply_to(look: &Look, target: &Scene) -> (RgbF32, f64) {
    let mut out = target.base.clone();
    let started = Instant::now();
    look.apply_blend(&mut out, 1.0, &Cancel::default())
        .expect("not cancelled");
    let s = started.elapsed().as_secs_f64();
    (working_to_srgb(&out), out.megapixels() / s)
}

/// Every ordered pair of different photos, for `edit`.
pub fn cross(photos: &[Photo], edit: Edit) -> Vec<Row> {
    let truths: Vec<RgbF32> = photos
        .iter()
        .map(|p| {
            let mut t = p.scene.full_srgb.clone();
            apply_edit(edit, &mut t);
            t
        })
        .collect();
    let transfer: Vec<f64> = photos
        .iter()
        .map(|p| {
            p.scene
                .row_as(edit, AnswerFormat::Png, edit.mode())
                .luminary_db
        })
        .collect();
    let mut rows = Vec::new();
    for r in photos {
        let (look, learn_ms) = learn_on(&r.scene, edit);
        for (k, t) in photos.iter().enumerate() {
            if std::ptr::eq(r, t) {
                continue;
            }
            let (out, apply_mps) = apply_to(&look, &t.scene);
            rows.push(Row {
                edit,
                reference: r.name.clone(),
                target: t.name.clone(),
                look_db: psnr(&out.data, &truths[k].data, None),
                transfer_db: transfer[k],
                learn_ms,
                apply_mps,
            });
        }
    }
    rows
}

/// The table's header and a row, as `bench --look` and the test print them.
pub fn header() -> String {
    format!(
        "{:<14} {:<34} {:<34} {:>8} {:>9} {:>8} {:>9}",
        "edit", "learned on", "applied to", "look dB", "photo dB", "learn ms", "apply MP/s"
    )
}

/// One printed row.
pub fn line(r: &Row) -> String {
    format!(
        "{:<14} {:<34} {:<34} {:>8.2} {:>9.2} {:>8.0} {:>9.0}",
        r.edit.name(),
        r.reference,
        r.target,
        r.look_db,
        r.transfer_db,
        r.learn_ms,
        r.apply_mps
    )
}
