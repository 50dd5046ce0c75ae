//! Stage 2 — Ingest: any supported file → scene-linear working-space pixels + metadata.
//!
//! One job per file:
//!
//! * `checks` — what every input passes before a decoder sees it: file size, format sniff,
//!   the TIFF structure walk, pixel counts, and the RAW decoder's memory limit;
//! * `raster` — TIFF/JPEG/PNG through `image`, linearised by their ICC profile;
//! * `decode` — rawler: a RAW's sensor data and every fact develop needs (what the
//!   decoder process runs);
//! * `runner` — that decoder process: the child's side and the daemon's; `confine` how
//!   each platform holds it in (`RLIMIT_AS` on Unix, a Job Object on Windows);
//! * `develop` — levels, opcodes, white balance, demosaic, crop and the camera matrix
//!   (`colour`: the DNG specification's colour maths; `opcodes`; `demosaic`), in the daemon.
//!
//! This file only sequences them. Calls go one way: nothing here is called back from the
//! parts. Orientation is applied here, so every later stage sees the picture upright.
//!
//! Decoders are third-party code fed untrusted files: rawler still has `todo!()` and
//! `panic!` paths, so every decode runs under `catch_unwind` and a panic becomes a
//! `corrupt_input` error for this file only. rawler also allocates whatever a header
//! claims, and a failed allocation aborts the process (no `catch_unwind` stops that): so
//! in the daemon and the CLI, camera RAWs are decoded in a `luminary decode-runner` child
//! process under a memory limit and a deadline.

pub mod checks;
pub mod colour;
mod confine;
pub(crate) mod decode;
pub mod demosaic;
pub(crate) mod develop;
pub mod opcodes;
pub(crate) mod raster;
pub mod runner;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use checks::{decode_memory_limit, decoder_base_bytes, estimate_memory_mb, Limits};

use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::metadata::{self, SourceMeta};
use checks::{failed_allocation, over_memory_limit, panic_text, Kind};
use decode::{Decoded, DecodedData, RawHeader, DEVELOP_BYTES_PER_PIXEL};
use develop::Samples;

/// A decoded photo.
pub struct Ingested {
    /// Upright, linear, working space.
    pub image: RgbF32,
    /// EXIF and orientation.
    pub meta: SourceMeta,
    /// Whether it came from a camera RAW.
    pub is_raw: bool,
    /// How render makes the base of it.
    pub rendering: Rendering,
    /// For RAWs: what the colour and develop decided, for the log and the benchmark.
    pub raw: Option<RawReport>,
}

/// What a photo needs from render.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rendering {
    /// Already display-referred (TIFF/JPEG/PNG someone rendered): nothing but bringing it
    /// into range.
    AsIs,
    /// Scene-referred sensor data, the camera's neutral at clip on 1.0: the baseline
    /// exposure (EV) and the default tone curve make it look as the camera showed it.
    Camera {
        /// BaselineExposure + BaselineExposureOffset, EV.
        exposure_ev: f32,
    },
}

/// What develop decided for a RAW.
#[derive(Clone, Debug, PartialEq)]
pub struct RawReport {
    /// Where the colour matrices came from.
    pub colour_origin: String,
    /// The white point used, CIE xy.
    pub white_xy: [f64; 2],
    /// Its correlated colour temperature, kelvin.
    pub cct: f64,
    /// White-balance gains (camera RGB, smallest 1).
    pub gains: [f32; 3],
    /// Fallbacks and opcodes not applied: each was also logged.
    pub notes: Vec<String>,
}

/// How camera RAWs are decoded.
#[derive(Clone, Debug)]
pub enum RawDecoding {
    /// In a `luminary decode-runner` child of this executable, under a memory limit and a
    /// deadline, so that a decoder that aborts, crashes or hangs fails only its job (the
    /// daemon and every CLI command). See `confine` for how each platform holds it in.
    Process(PathBuf),
    /// In this process: library users (tests) and the fuzz target. `budget`, when given,
    /// is called with the heap the decoder process would have (`Some(bytes)`: its memory
    /// limit less its own baseline) before rawler runs, and with `None` after, so a harness
    /// can refuse allocations beyond it as the child's limit would.
    InProcess {
        /// See above.
        budget: Option<fn(Option<u64>)>,
    },
}

static RAW_DECODING: OnceLock<RawDecoding> = OnceLock::new();

/// Chooses, once per process, how [`ingest`] decodes camera RAWs. Without it: in-process.
pub fn set_raw_decoding(how: RawDecoding) {
    let _ = RAW_DECODING.set(how);
}

/// How this process decodes camera RAWs.
pub fn raw_decoding() -> RawDecoding {
    RAW_DECODING
        .get()
        .cloned()
        .unwrap_or(RawDecoding::InProcess { budget: None })
}

/// Reads `path` into working-space pixels, refusing what exceeds `limits`.
pub fn ingest(path: &Path, limits: &Limits) -> Result<Ingested, JobError> {
    ingest_with(path, limits, &raw_decoding(), &Cancel::default())
}

/// [`ingest`] for a job: setting `cancel` stops a RAW decoder process.
pub fn ingest_cancellable(
    path: &Path,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Ingested, JobError> {
    ingest_with(path, limits, &raw_decoding(), cancel)
}

/// [`ingest`] with RAWs decoded as `how` says.
pub fn ingest_with(
    path: &Path,
    limits: &Limits,
    how: &RawDecoding,
    cancel: &Cancel,
) -> Result<Ingested, JobError> {
    let head = checks::check_file(path, limits)?;
    let raster = |path: &Path| {
        raster::decode(path, limits).map(|(image, meta)| Ingested {
            image,
            meta,
            is_raw: false,
            rendering: Rendering::AsIs,
            raw: None,
        })
    };
    match checks::sniff(path, &head) {
        // A JPEG with EXIF under a RAW's name. rawler would take it for a JPEG-wrapped RAW
        // (old Konica Minolta), and its JFIF parser loops forever on a damaged APP1 segment
        // (found by fuzzing: `fuzz/regressions/ingest-jfif-app1-hang.bin`), so such files
        // never reach it.
        Some(Kind::Raw) if head.starts_with(&[0xFF, 0xD8, 0xFF, 0xE1]) => Err(JobError::file(
            ErrorCode::UnsupportedFormat,
            path,
            "this is a JPEG, not a camera RAW (JPEG-wrapped RAWs are not supported); give it a .jpg name to enhance it",
        )),
        Some(Kind::Raw) => ingest_raw(path, limits, how, cancel),
        Some(Kind::Raster) => raster(path).or_else(|err| {
            // A DNG or other TIFF-based RAW saved with a .tif name: let rawler try.
            if checks::is_tiff(&head) {
                ingest_raw(path, limits, how, cancel).map_err(|e| {
                    if e.code == ErrorCode::Cancelled {
                        e
                    } else {
                        err
                    }
                })
            } else {
                Err(err)
            }
        }),
        None => Err(JobError::file(
            ErrorCode::UnsupportedFormat,
            path,
            "not a photo format Luminary reads (camera RAW, DNG, TIFF, JPEG or PNG)",
        )),
    }
}

/// The file's EXIF as our own reader sees it; a reader panic means none.
fn read_exif(path: &Path) -> SourceMeta {
    catch_unwind(|| metadata::read_exif(path)).unwrap_or_default()
}

/// Metadata of a decoded RAW: its EXIF, else rawler's (`rawler_meta` is asked only then).
fn raw_meta(
    exif: metadata::SourceMeta,
    orientation: u16,
    rawler_meta: impl FnOnce() -> Option<rawler::decoders::RawMetadata>,
) -> SourceMeta {
    let mut meta = exif;
    if meta.fields.is_empty() {
        if let Some(md) = rawler_meta() {
            meta.fields = metadata::from_rawler(&md);
        }
    }
    meta.orientation = orientation;
    meta
}

/// A decoder panic as a job error: an allocation refused under an emulated memory limit
/// (the fuzz target) is `too_large`, as the decoder process's limit makes it.
fn decoder_panic(path: &Path, p: Box<dyn std::any::Any + Send>, limit: u64) -> JobError {
    let text = panic_text(p);
    match failed_allocation(&text) {
        Some(asked) => over_memory_limit(path, limit, asked),
        None => JobError::file(
            ErrorCode::CorruptInput,
            path,
            format!("the RAW decoder failed on this file ({text})"),
        ),
    }
}

/// Restores "no budget" when an in-process decode ends, however it ends.
struct BudgetGuard(Option<fn(Option<u64>)>);

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            f(None);
        }
    }
}

fn ingest_raw(
    path: &Path,
    limits: &Limits,
    how: &RawDecoding,
    cancel: &Cancel,
) -> Result<Ingested, JobError> {
    match how {
        RawDecoding::Process(exe) => ingest_raw_in_child(exe, path, limits, cancel),
        RawDecoding::InProcess { budget } => {
            let _ = cancel;
            ingest_raw_in_process(path, limits, *budget)
        }
    }
}

/// Develops decoded samples, upright, and logs what develop worked around.
fn finish(
    path: &Path,
    header: &RawHeader,
    samples: Samples<'_>,
    meta: SourceMeta,
    limits: &Limits,
) -> Result<Ingested, JobError> {
    let t = std::time::Instant::now();
    let developed = catch_unwind(AssertUnwindSafe(|| {
        develop::develop(path, header, samples, limits)
    }))
    .unwrap_or_else(|_| {
        Err(JobError::file(
            ErrorCode::CorruptInput,
            path,
            "developing the RAW failed",
        ))
    })?;
    tracing::debug!("raw develop {:?}", t.elapsed());
    for note in &developed.notes {
        tracing::info!("{}: {note}", path.display());
    }
    let c = &developed.colour;
    tracing::debug!(
        "{}: colour from {}, white xy {:.4},{:.4} ({:.0} K), gains {:?}, baseline exposure {:+.2} EV",
        path.display(),
        header.colour.origin,
        c.white_xy[0],
        c.white_xy[1],
        c.cct,
        c.gains,
        header.baseline_exposure
    );
    let raw = RawReport {
        colour_origin: header.colour.origin.clone(),
        white_xy: c.white_xy,
        cct: c.cct,
        gains: c.gains,
        notes: developed.notes,
    };
    Ok(Ingested {
        image: developed.image.oriented(meta.orientation),
        meta,
        is_raw: true,
        rendering: Rendering::Camera {
            exposure_ev: header.baseline_exposure as f32,
        },
        raw: Some(raw),
    })
}

/// The RAW decoded in a decoder process, developed here from the shared mapping.
fn ingest_raw_in_child(
    exe: &Path,
    path: &Path,
    limits: &Limits,
    cancel: &Cancel,
) -> Result<Ingested, JobError> {
    let t0 = std::time::Instant::now();
    let mut child = runner::start(exe, path, limits)?;
    // Our own EXIF reader runs while the child decodes.
    let exif = read_exif(path);
    let header = child.header(cancel)?;
    let t1 = t0.elapsed();
    let meta = raw_meta(exif, header.orientation, || child.metadata(cancel));
    crate::error::check(cancel)?;
    let mapped = child.into_samples()?;
    tracing::debug!(
        "raw decode in a child {:?} (answer after {t1:?})",
        t0.elapsed()
    );
    let samples = if header.float {
        Samples::F32(mapped.as_f32())
    } else {
        Samples::U16(mapped.as_u16())
    };
    finish(path, &header, samples, meta, limits)
}

/// The RAW path without a decoder process: the same two halves, run here.
fn ingest_raw_in_process(
    path: &Path,
    limits: &Limits,
    budget: Option<fn(Option<u64>)>,
) -> Result<Ingested, JobError> {
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let limit = decode_memory_limit(limits, file_len);
    let heap = limit.saturating_sub(decoder_base_bytes());
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Ingested, JobError> {
        let decoded = {
            let _guard = BudgetGuard(budget);
            if let Some(f) = budget {
                f(Some(heap));
            }
            decode::decode_raw(path, limits, &mut |pixels| {
                if let Some(f) = budget {
                    f(Some(heap.saturating_add(
                        pixels.saturating_mul(DEVELOP_BYTES_PER_PIXEL),
                    )));
                }
            })
        };
        let (decoded, opened) = decoded?;
        let meta = raw_meta(read_exif(path), decoded.header.orientation, || {
            // As in the decoder process: under its limit, and a failure means no metadata.
            let _guard = BudgetGuard(budget);
            if let Some(f) = budget {
                f(Some(heap));
            }
            catch_unwind(AssertUnwindSafe(|| opened.metadata())).unwrap_or(None)
        });
        let Decoded { header, data } = decoded;
        match &data {
            DecodedData::Raw(raw) => {
                let samples = match &raw.data {
                    rawler::RawImageData::Integer(v) => Samples::U16(v),
                    rawler::RawImageData::Float(v) => Samples::F32(v),
                };
                finish(path, &header, samples, meta, limits)
            }
            DecodedData::Rgb(v) => finish(path, &header, Samples::F32(v), meta, limits),
        }
    }));
    result.unwrap_or_else(|p| Err(decoder_panic(path, p, limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread and gives up after `secs` (a regression here would hang).
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("did not finish in time")
    }

    /// Fuzzing found a JPEG-with-EXIF under a RAW's name whose damaged APP1 segment makes
    /// rawler's JFIF parser loop forever. It is refused before rawler sees it, in-process
    /// and (see host/tests/raw_decoder.rs) through the decoder process alike.
    #[test]
    fn regression_a_jpeg_named_like_a_raw_never_reaches_rawlers_jfif_parser() {
        let err = within(20, || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("crafted.dng");
            let bytes = include_bytes!("../../../fuzz/regressions/ingest-jfif-app1-hang.bin");
            std::fs::write(&path, &bytes[1..]).unwrap();
            let how = RawDecoding::InProcess { budget: None };
            ingest_with(&path, &Limits::default(), &how, &Cancel::default())
                .err()
                .expect("must be refused")
        });
        assert_eq!(err.code, ErrorCode::UnsupportedFormat, "{err:?}");
        assert!(
            err.message.contains("crafted.dng") && err.message.contains("not a camera RAW"),
            "{}",
            err.message
        );
    }

    /// Fuzzing found 8 KB DNGs whose IFD entries claim gigabytes (a known type, an unknown
    /// one, and an image size given as an array); rawler would allocate what they claim.
    #[test]
    fn regression_tiff_entry_counts_larger_than_the_file_are_refused_before_decoding() {
        let inputs: [&[u8]; 3] = [
            include_bytes!("../../../fuzz/regressions/ingest-tiff-entry-count-oom.bin"),
            include_bytes!("../../../fuzz/regressions/ingest-tiff-unknown-type-count-oom.bin"),
            include_bytes!("../../../fuzz/regressions/ingest-tiff-size-array-oom.bin"),
        ];
        for bytes in inputs {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("crafted.dng");
            // The fuzz input's first byte chose the extension; the rest is the file.
            std::fs::write(&path, &bytes[1..]).unwrap();
            let err = ingest(&path, &Limits::default())
                .err()
                .expect("must be refused");
            assert!(
                matches!(err.code, ErrorCode::CorruptInput | ErrorCode::TooLarge),
                "{err:?}"
            );
            assert!(err.message.contains("crafted.dng"), "{}", err.message);
            assert!(
                err.message.contains("claims") || err.message.contains("max_pixels"),
                "{}",
                err.message
            );
        }
    }
}
