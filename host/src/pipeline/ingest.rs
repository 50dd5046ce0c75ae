//! Stage 2 — Ingest: any supported file → scene-linear working-space pixels + metadata.
//!
//! RAW goes through rawler (black/white levels, CFA demosaic, crop), then our own white
//! balance and camera matrix so colours outside sRGB survive into the wide working space
//! (rawler's calibrate step would clip them to sRGB). TIFF/JPEG/PNG go through `image`
//! and are linearised by their embedded ICC profile (sRGB when they carry none).
//! Orientation is applied here, so every later stage sees the picture upright.
//!
//! Decoders are third-party code fed untrusted files: rawler still has `todo!()` and
//! `panic!` paths, so every decode runs under `catch_unwind` and a panic becomes a
//! `corrupt_input` error for this file only. rawler also allocates whatever a header
//! claims, and a failed allocation aborts the process (no `catch_unwind` stops that): so
//! in the daemon and the CLI, camera RAWs are decoded in a `luminary decode-runner` child
//! process under a memory limit and a deadline (`decode_runner`); the daemon gets the
//! sensor data back through shared memory and develops it here. TIFF-structured files are
//! also walked before any decoder sees them (`check_tiff_structure`).

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rawler::decoders::RawDecodeParams;
use rawler::imgop::develop::{Intermediate, ProcessingStep, RawDevelop};
use rawler::imgop::xyz::Illuminant;
use rawler::rawsource::RawSource;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::error::{Cancel, ErrorCode, JobError};
use crate::image::RgbF32;
use crate::pipeline::metadata::{self, SourceMeta};

/// A decoded photo.
pub struct Ingested {
    /// Upright, scene-linear, working space.
    pub image: RgbF32,
    /// EXIF and orientation.
    pub meta: SourceMeta,
    /// Whether it came from a camera RAW.
    pub is_raw: bool,
}

/// File extensions handled as camera RAW (rawler decides in the end).
const RAW_EXTENSIONS: &[&str] = &[
    "dng", "cr2", "cr3", "crw", "nef", "nrw", "arw", "srf", "sr2", "raf", "orf", "rw2", "pef",
    "srw", "3fr", "fff", "iiq", "erf", "kdc", "dcr", "dcs", "mos", "mef", "mrw", "raw", "rwl",
    "x3f", "ari", "qtk",
];

enum Kind {
    Raw,
    Raster,
}

fn sniff(path: &Path, head: &[u8]) -> Option<Kind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if RAW_EXTENSIONS.contains(&ext.as_str()) {
        return Some(Kind::Raw);
    }
    let is_tiff = head.starts_with(b"II*\0") || head.starts_with(b"MM\0*");
    let is_jpeg = head.starts_with(&[0xFF, 0xD8, 0xFF]);
    let is_png = head.starts_with(b"\x89PNG\r\n\x1a\n");
    if is_tiff || is_jpeg || is_png {
        Some(Kind::Raster)
    } else {
        None
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "decoder crashed".into())
}

/// How camera RAWs are decoded.
#[derive(Clone, Debug)]
pub enum RawDecoding {
    /// In a `luminary decode-runner` child of this executable, under a memory limit and a
    /// deadline, so that a decoder that aborts, crashes or hangs fails only its job (the
    /// daemon and every CLI command). Unix only: elsewhere this decodes in-process.
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
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => JobError::file(ErrorCode::NotFound, path, "no such file"),
        _ => JobError::file(ErrorCode::NotFound, path, format!("cannot read: {e}")),
    })?;
    if !meta.is_file() {
        return Err(JobError::file(
            ErrorCode::BadRequest,
            path,
            "is a folder, not a photo",
        ));
    }
    if meta.len() == 0 {
        return Err(JobError::file(
            ErrorCode::CorruptInput,
            path,
            "the file is empty (0 bytes)",
        ));
    }
    if meta.len() > limits.max_file_bytes {
        return Err(JobError::file(
            ErrorCode::TooLarge,
            path,
            format!(
                "the file is {} MB, over the limit of {} MB (limits.max_file_bytes in config.toml)",
                meta.len() / 1_000_000,
                limits.max_file_bytes / 1_000_000
            ),
        ));
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| JobError::file(ErrorCode::NotFound, path, format!("cannot read: {e}")))?;
    if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        check_tiff_structure(path, limits.max_pixels).map_err(|why| {
            match why.strip_prefix(TOO_LARGE) {
                Some(size) => JobError::file(ErrorCode::TooLarge, path, size),
                None => JobError::file(
                    ErrorCode::CorruptInput,
                    path,
                    format!("the file is damaged: {why}"),
                ),
            }
        })?;
    }
    match sniff(path, &head[..n]) {
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
        Some(Kind::Raster) => ingest_raster(path, limits).or_else(|err| {
            // A DNG or other TIFF-based RAW saved with a .tif name: let rawler try.
            if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
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

/// Bytes of memory a job needs per pixel at its peak (measured by `luminary bench`: about
/// 23 on a 24 MP RAW), with a margin.
const JOB_BYTES_PER_PIXEL: u64 = 26;

/// Estimated peak memory of a job on `path`, in MB, without decoding it: image headers give
/// the size of TIFF/JPEG/PNG files; for RAWs the file size stands in for the pixel count
/// (at least one byte per photosite in every RAW format, so this errs on the safe side).
pub fn estimate_memory_mb(path: &Path) -> u64 {
    let raw_ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| RAW_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false);
    let header_pixels = if raw_ext {
        None
    } else {
        image::ImageReader::open(path)
            .ok()
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.into_dimensions().ok())
            .map(|(w, h)| w as u64 * h as u64)
    };
    let pixels =
        header_pixels.unwrap_or_else(|| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    64 + pixels * JOB_BYTES_PER_PIXEL / (1 << 20)
}

/// Walks the IFDs of a TIFF-structured file (TIFF, DNG, most RAWs) and refuses one whose
/// entries claim more bytes than the file holds.
///
/// rawler allocates what an entry's count says before reading it, so an 8 KB file can ask
/// for gigabytes (found by fuzzing: `fuzz/regressions/ingest-tiff-entry-count-oom.bin`); on
/// a machine without overcommit that allocation would abort the daemon. This check is the
/// part of TIFF parsing needed to bound that, nothing more.
/// Marks a structure-check message that is about size, not damage.
const TOO_LARGE: &str = "too large: ";

fn check_tiff_structure(path: &Path, max_pixels: u64) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 8];
    if f.read_exact(&mut head).is_err() {
        return Err("the TIFF header is truncated".into());
    }
    let le = &head[..2] == b"II";
    let u16_at = |b: &[u8]| {
        if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        }
    };
    let u32_at = |b: &[u8]| {
        if le {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        }
    };
    if u16_at(&head[2..4]) != 42 {
        return Ok(()); // BigTIFF or not TIFF: left to the decoders.
    }
    let type_size = |t: u16| -> u64 {
        match t {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 | 17 | 18 => 8,
            // Unknown types: decoders still read `count` bytes.
            _ => 1,
        }
    };
    let mut queue = vec![u32_at(&head[4..8]) as u64];
    let mut seen = std::collections::HashSet::new();
    while let Some(offset) = queue.pop() {
        if offset == 0 || !seen.insert(offset) {
            continue;
        }
        if seen.len() > 256 {
            return Err("the file has an unreasonable number of IFDs".into());
        }
        if offset + 2 > len {
            return Err(format!(
                "an IFD at offset {offset} lies beyond the end of the file ({len} bytes)"
            ));
        }
        let mut n = [0u8; 2];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut n))
            .map_err(|e| e.to_string())?;
        let count = u16_at(&n) as u64;
        if offset + 2 + count * 12 + 4 > len {
            return Err(format!(
                "the IFD at offset {offset} claims {count} entries, more than the file holds"
            ));
        }
        let mut entries = vec![0u8; (count * 12 + 4) as usize];
        f.read_exact(&mut entries).map_err(|e| e.to_string())?;
        let (mut width, mut height) = (0u64, 0u64);
        for (i, e) in entries[..(count * 12) as usize]
            .chunks_exact(12)
            .enumerate()
        {
            let (tag, typ, n, value) = (
                u16_at(&e[0..2]),
                u16_at(&e[2..4]),
                u32_at(&e[4..8]) as u64,
                u32_at(&e[8..12]) as u64,
            );
            let bytes = n.saturating_mul(type_size(typ));
            if bytes > len || (bytes > 4 && value.saturating_add(bytes) > len) {
                return Err(format!(
                    "entry {i} (tag {tag}) of the IFD at offset {offset} claims {bytes} bytes; the file has {len}"
                ));
            }
            // Image size (decoders allocate it before reading pixels): the first value,
            // inline or not, as decoders read it.
            if (tag == 256 || tag == 257) && n >= 1 && (typ == 3 || typ == 4) {
                let first = if bytes <= 4 {
                    e[8..12].to_vec()
                } else {
                    let mut b = vec![0u8; 4];
                    f.seek(SeekFrom::Start(value))
                        .and_then(|_| f.read_exact(&mut b))
                        .map_err(|e| e.to_string())?;
                    b
                };
                let v = if typ == 3 {
                    u16_at(&first[0..2]) as u64
                } else {
                    u32_at(&first) as u64
                };
                if tag == 256 {
                    width = v
                } else {
                    height = v
                }
            }
            // Follow sub-IFDs (SubIFDs, EXIF, GPS, Interop) so their entries are checked too.
            if matches!(tag, 330 | 34665 | 34853 | 40965) && (typ == 4 || typ == 13) {
                if n == 1 {
                    queue.push(value);
                } else if bytes <= len {
                    let mut offs = vec![0u8; bytes as usize];
                    f.seek(SeekFrom::Start(value))
                        .and_then(|_| f.read_exact(&mut offs))
                        .map_err(|e| e.to_string())?;
                    queue.extend(offs.chunks_exact(4).map(|o| u32_at(o) as u64));
                }
            }
        }
        if width.saturating_mul(height) > max_pixels {
            return Err(format!(
                "{TOO_LARGE}{width}×{height} is {:.0} MP, over the limit of {:.0} MP (limits.max_pixels in config.toml)",
                (width * height) as f64 / 1e6,
                max_pixels as f64 / 1e6
            ));
        }
        queue.push(u32_at(&entries[(count * 12) as usize..]) as u64);
    }
    Ok(())
}

fn check_pixels(path: &Path, w: usize, h: usize, limits: &Limits) -> Result<(), JobError> {
    let px = w as u64 * h as u64;
    if px > limits.max_pixels {
        return Err(JobError::file(
            ErrorCode::TooLarge,
            path,
            format!(
                "{w}×{h} is {:.0} MP, over the limit of {:.0} MP (limits.max_pixels in config.toml)",
                px as f64 / 1e6,
                limits.max_pixels as f64 / 1e6
            ),
        ));
    }
    if w == 0 || h == 0 {
        return Err(JobError::file(
            ErrorCode::CorruptInput,
            path,
            "the image has no pixels",
        ));
    }
    Ok(())
}

/// Address space a RAW decoder process needs besides the decode itself: the executable,
/// its libraries, rawler's camera tables and two malloc arenas (about 125 MB measured on a
/// 2-core machine), with room; plus [`DECODER_THREAD_BYTES`] per thread.
const DECODER_BASE_BYTES: u64 = 384 << 20;
/// Per decoder thread (one per core): its stack, with room.
const DECODER_THREAD_BYTES: u64 = 8 << 20;
/// Bytes per pixel of `max_pixels` a decoder may allocate while it parses and decodes: the
/// sensor data (2 bytes a photosite, up to 12 for three-channel float DNGs), the copy in
/// shared memory and decoders' own buffers.
const DECODE_BYTES_PER_PIXEL: u64 = 16;
/// Bytes per actual pixel added to the limit, once the decoded size is known and within
/// `max_pixels`, for rawler's develop of non-Bayer sensors (float planes, demosaic, crops).
pub(crate) const DEVELOP_BYTES_PER_PIXEL: u64 = 64;

/// The address space a decoder process needs before it decodes anything.
pub fn decoder_base_bytes() -> u64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    DECODER_BASE_BYTES + threads * DECODER_THREAD_BYTES
}

/// The address space the decoder process of a `file_len`-byte RAW may use while it parses
/// and decodes: `limits.decode_memory_mb`, else the base, the file (it is mapped) and 16
/// bytes per pixel of `limits.max_pixels` (3.8 GB at the default 200 MP).
pub fn decode_memory_limit(limits: &Limits, file_len: u64) -> u64 {
    if limits.decode_memory_mb > 0 {
        return limits.decode_memory_mb.saturating_mul(1 << 20);
    }
    decoder_base_bytes()
        .saturating_add(file_len)
        .saturating_add(limits.max_pixels.saturating_mul(DECODE_BYTES_PER_PIXEL))
}

/// The `too_large` error of a decoder that went over its memory limit; `asked` is the
/// allocation that failed, when known.
pub(crate) fn over_memory_limit(path: &Path, limit: u64, asked: Option<u64>) -> JobError {
    let asked = asked
        .map(|b| format!(", and it asked for {} MB more at once", b.div_ceil(1 << 20)))
        .unwrap_or_default();
    JobError::file(
        ErrorCode::TooLarge,
        path,
        format!(
            "decoding it needs more memory than the RAW decoder may use ({} MB{asked}); the file claims a larger image than it holds, or needs limits.decode_memory_mb raised in config.toml",
            limit >> 20
        ),
    )
}

/// The size in a Rust allocation-failure message ("memory allocation of N bytes failed").
pub(crate) fn failed_allocation(text: &str) -> Option<Option<u64>> {
    let at = text.find("memory allocation of ")?;
    let rest = &text[at + "memory allocation of ".len()..];
    Some(rest.split(' ').next().and_then(|n| n.parse().ok()))
}

/// Sensor data as decoded, before develop. The decoder process sends this as JSON and the
/// samples through shared memory; floats travel as their bits, so they arrive exactly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct RawHeader {
    /// Samples per row (Bayer) or pixels per row (RGB).
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// EXIF orientation of the stored pixels.
    pub orientation: u16,
    /// What the samples are.
    pub layout: RawLayout,
}

/// The two kinds of decoded data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RawLayout {
    /// A 2×2 RGB Bayer mosaic, one sample per photosite (`u16`, or `f32` when `float`),
    /// developed by our fused demosaic.
    Bayer {
        float: bool,
        colors: [[usize; 2]; 2],
        black: [u32; 4],
        white: [u32; 4],
        /// Visible part: x, y, width, height.
        rect: [usize; 4],
        wb: [u32; 3],
        matrix: [[u32; 3]; 3],
    },
    /// Developed by rawler in the decoder (X-Trans, linear DNGs, monochrome): working-space
    /// RGB, three `f32` per pixel, not yet upright.
    Rgb,
}

/// What rawler produced: the header and the samples it describes.
pub(crate) struct Decoded {
    pub header: RawHeader,
    data: DecodedData,
}

enum DecodedData {
    Raw(rawler::RawImage),
    Rgb(Vec<f32>),
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the decode runner's hand-over
fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers (u16 / f32) without padding, read as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

impl Decoded {
    /// The samples as bytes, in the machine's byte order: what goes into shared memory.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn sample_bytes(&self) -> &[u8] {
        match &self.data {
            DecodedData::Raw(raw) => match &raw.data {
                rawler::RawImageData::Integer(v) => as_bytes(v),
                rawler::RawImageData::Float(v) => as_bytes(v),
            },
            DecodedData::Rgb(v) => as_bytes(v),
        }
    }
}

/// An open RAW and its decoder, kept for metadata.
pub(crate) struct OpenedRaw {
    src: RawSource,
    decoder: Box<dyn rawler::decoders::Decoder>,
}

impl OpenedRaw {
    /// rawler's parsed metadata, for RAW containers whose EXIF we cannot walk.
    pub fn metadata(&self) -> Option<rawler::decoders::RawMetadata> {
        self.decoder
            .raw_metadata(&self.src, &RawDecodeParams::default())
            .ok()
    }
}

/// rawler's part of a RAW ingest — what runs in the decoder process: parse, decode, size
/// check, colour, and for sensors our demosaic does not handle, rawler's develop.
/// `develop_room` is called with the checked pixel count before that develop, so the
/// caller can allow it the memory it needs.
pub(crate) fn decode_raw(
    path: &Path,
    limits: &Limits,
    develop_room: &mut dyn FnMut(u64),
) -> Result<(Decoded, OpenedRaw), JobError> {
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let t = std::time::Instant::now();
    let src = RawSource::new(path).map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?;
    tracing::debug!("raw source {:?}", t.elapsed());
    let decoder = rawler::get_decoder(&src).map_err(|e| {
        JobError::file(
            ErrorCode::UnsupportedFormat,
            path,
            format!("not a camera RAW Luminary can read ({e})"),
        )
    })?;
    tracing::debug!("raw decoder ready {:?}", t.elapsed());
    let params = RawDecodeParams::default();
    let t0 = std::time::Instant::now();
    let raw = decoder.raw_image(&src, &params, false).map_err(|e| {
        corrupt(format!(
            "the RAW data cannot be decoded ({e}); the file may be truncated"
        ))
    })?;
    tracing::debug!("raw decode {:?}", t0.elapsed());
    check_pixels(path, raw.width, raw.height, limits)?;
    let orientation = raw.orientation.to_u16();
    let (wb, m) = raw_colour(path, &raw)?;
    let opened = OpenedRaw { src, decoder };
    // The common case — a 2×2 RGB Bayer sensor — takes our fused path, in the daemon.
    if let rawler::rawimage::RawPhotometricInterpretation::Cfa(cfg) = &raw.photometric {
        if cfg.cfa.width == 2 && cfg.cfa.height == 2 && cfg.cfa.is_rgb() && raw.cpp == 1 {
            let colors = [
                [cfg.cfa.color_at(0, 0), cfg.cfa.color_at(0, 1)],
                [cfg.cfa.color_at(1, 0), cfg.cfa.color_at(1, 1)],
            ];
            let rect = raw
                .crop_area
                .or(raw.active_area)
                .map(|r| (r.p.x, r.p.y, r.d.w, r.d.h))
                .filter(|&(x, y, w, h)| w > 0 && h > 0 && x + w <= raw.width && y + h <= raw.height)
                .unwrap_or((0, 0, raw.width, raw.height));
            let (float, len) = match &raw.data {
                rawler::RawImageData::Integer(v) => (false, v.len()),
                rawler::RawImageData::Float(v) => (true, v.len()),
            };
            if len < raw.width * raw.height {
                return Err(corrupt("the RAW data is shorter than its size says".into()));
            }
            let header = RawHeader {
                width: raw.width,
                height: raw.height,
                orientation,
                layout: RawLayout::Bayer {
                    float,
                    colors,
                    black: raw.blacklevel.as_bayer_array().map(f32::to_bits),
                    white: raw.whitelevel.as_bayer_array().map(f32::to_bits),
                    rect: [rect.0, rect.1, rect.2, rect.3],
                    wb: wb.map(f32::to_bits),
                    matrix: m.map(|r| r.map(f32::to_bits)),
                },
            };
            let decoded = Decoded {
                header,
                data: DecodedData::Raw(raw),
            };
            return Ok((decoded, opened));
        }
    }
    develop_room(raw.width as u64 * raw.height as u64);
    let image = develop_with_rawler(path, &raw, wb, m)?;
    let decoded = Decoded {
        header: RawHeader {
            width: image.width,
            height: image.height,
            orientation,
            layout: RawLayout::Rgb,
        },
        data: DecodedData::Rgb(image.data),
    };
    Ok((decoded, opened))
}

/// Sensor samples, wherever they are (rawler's buffer, or shared memory).
pub(crate) enum SampleView<'a> {
    /// `u16` or `f32` samples of a Bayer mosaic.
    Bayer(super::demosaic::Samples<'a>),
    /// Developed RGB: borrowed (copied once) or owned.
    Rgb(std::borrow::Cow<'a, [f32]>),
}

/// The daemon's part: develops what [`decode_raw`] produced. The header may come from a
/// crashed or confused process, so everything is checked against the samples first.
pub(crate) fn develop_decoded(
    path: &Path,
    header: &RawHeader,
    samples: SampleView<'_>,
    limits: &Limits,
) -> Result<RgbF32, JobError> {
    let bad = |why: &str| {
        JobError::file(
            ErrorCode::CorruptInput,
            path,
            format!("the RAW decoder returned inconsistent data ({why})"),
        )
    };
    let (w, h) = (header.width, header.height);
    check_pixels(path, w, h, limits)?;
    match (&header.layout, samples) {
        (
            RawLayout::Bayer {
                float,
                colors,
                black,
                white,
                rect,
                wb,
                matrix,
            },
            SampleView::Bayer(samples),
        ) => {
            let n = match &samples {
                super::demosaic::Samples::U16(v) if !float => v.len(),
                super::demosaic::Samples::F32(v) if *float => v.len(),
                _ => return Err(bad("sample type")),
            };
            if n < w * h {
                return Err(bad("fewer samples than pixels"));
            }
            if colors.iter().flatten().any(|&c| c > 2) {
                return Err(bad("colour index"));
            }
            let [x, y, rw, rh] = *rect;
            if rw == 0
                || rh == 0
                || x.checked_add(rw).is_none_or(|r| r > w)
                || y.checked_add(rh).is_none_or(|b| b > h)
            {
                return Err(bad("crop"));
            }
            let bayer = super::demosaic::Bayer {
                samples,
                width: w,
                height: h,
                colors: *colors,
                black: black.map(f32::from_bits),
                white: white.map(f32::from_bits),
            };
            Ok(super::demosaic::develop(
                &bayer,
                (x, y, rw, rh),
                wb.map(f32::from_bits),
                matrix.map(|r| r.map(f32::from_bits)),
            ))
        }
        (RawLayout::Rgb, SampleView::Rgb(data)) => {
            if data.len() < w * h * 3 {
                return Err(bad("fewer samples than pixels"));
            }
            let mut data = data.into_owned();
            data.truncate(w * h * 3);
            Ok(RgbF32::new(w, h, data))
        }
        _ => Err(bad("layout")),
    }
}

/// The file's EXIF as our own reader sees it; a reader panic means none.
pub(crate) fn read_exif(path: &Path) -> SourceMeta {
    catch_unwind(|| metadata::read_exif(path)).unwrap_or_default()
}

/// Metadata of a decoded RAW: its EXIF, else rawler's (`rawler_meta` is asked only then).
pub(crate) fn raw_meta(
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
        #[cfg(unix)]
        RawDecoding::Process(exe) => super::decode_runner::decode(exe, path, limits, cancel),
        #[cfg(not(unix))]
        RawDecoding::Process(_) => {
            let _ = cancel;
            ingest_raw_in_process(path, limits, None)
        }
        RawDecoding::InProcess { budget } => {
            let _ = cancel;
            ingest_raw_in_process(path, limits, *budget)
        }
    }
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
            decode_raw(path, limits, &mut |pixels| {
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
        let t1 = std::time::Instant::now();
        let Decoded { header, data } = decoded;
        let image = match data {
            DecodedData::Raw(raw) => {
                let samples = match &raw.data {
                    rawler::RawImageData::Integer(v) => super::demosaic::Samples::U16(v),
                    rawler::RawImageData::Float(v) => super::demosaic::Samples::F32(v),
                };
                develop_decoded(path, &header, SampleView::Bayer(samples), limits)?
            }
            DecodedData::Rgb(v) => develop_decoded(
                path,
                &header,
                SampleView::Rgb(std::borrow::Cow::Owned(v)),
                limits,
            )?,
        };
        tracing::debug!("raw develop {:?}", t1.elapsed());
        Ok(Ingested {
            image: image.oriented(meta.orientation),
            meta,
            is_raw: true,
        })
    }));
    result.unwrap_or_else(|p| Err(decoder_panic(path, p, limit)))
}

/// 3×3 inverse; `None` when singular.
fn invert3(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let c = |a: usize, b: usize, d: usize, e: usize| m[a][b] * m[d][e] - m[a][e] * m[d][b];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// White balance (normalised so the least amplified channel is 1) and the camera → working
/// matrix of a RAW.
fn raw_colour(path: &Path, raw: &rawler::RawImage) -> Result<([f32; 3], [[f32; 3]; 3]), JobError> {
    let corrupt = |why: &str| JobError::file(ErrorCode::CorruptInput, path, why);
    let mut wb = if raw.wb_coeffs[0].is_finite() && raw.wb_coeffs[0] > 0.0 {
        [raw.wb_coeffs[0], raw.wb_coeffs[1], raw.wb_coeffs[2]]
    } else {
        [1.0, 1.0, 1.0]
    };
    let min = wb.iter().cloned().fold(f32::MAX, f32::min).max(1e-6);
    wb.iter_mut().for_each(|v| *v /= min);

    // camera → working: invert (XYZ→camera · working→XYZ), rows normalised so that the
    // white-balanced camera white maps to working white.
    let (_, xyz2cam) = raw
        .color_matrix_find_first([
            Illuminant::D65,
            Illuminant::D55,
            Illuminant::D50,
            Illuminant::A,
        ])
        .or_else(|| raw.color_matrix.iter().next().map(|(i, m)| (*i, m.clone())))
        .ok_or_else(|| corrupt("the RAW carries no colour matrix"))?;
    if xyz2cam.len() < 9 {
        return Err(corrupt("the RAW's colour matrix is incomplete"));
    }
    let wp = crate::color::working_profile().rgb_to_xyz_matrix();
    let mut rgb2cam = [[0f64; 3]; 3];
    for (i, row) in rgb2cam.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| xyz2cam[i * 3 + k] as f64 * wp.v[k][j]).sum();
        }
        let sum: f64 = row.iter().sum();
        if sum.abs() > 1e-9 {
            row.iter_mut().for_each(|v| *v /= sum);
        }
    }
    let m = invert3(rgb2cam).ok_or_else(|| corrupt("the RAW's colour matrix is singular"))?;
    Ok((wb, m.map(|r| r.map(|v| v as f32))))
}

/// Other sensors (X-Trans, linear DNGs, monochrome): rawler's levels, demosaic and crops.
fn develop_with_rawler(
    path: &Path,
    raw: &rawler::RawImage,
    wb: [f32; 3],
    m: [[f32; 3]; 3],
) -> Result<RgbF32, JobError> {
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let develop = RawDevelop::new_with(&[
        ProcessingStep::Rescale,
        ProcessingStep::Demosaic,
        ProcessingStep::CropActiveArea,
        ProcessingStep::CropDefault,
    ]);
    let inter = develop
        .develop_intermediate(raw)
        .map_err(|e| corrupt(format!("cannot develop the RAW ({e})")))?;
    let (w, h, cam) = match inter {
        Intermediate::ThreeColor(px) => (px.width, px.height, px.data.into_flattened()),
        Intermediate::Monochrome(px) => {
            let (w, h) = (px.width, px.height);
            (w, h, px.data.iter().flat_map(|&v| [v, v, v]).collect())
        }
        Intermediate::FourColor(_) => {
            return Err(JobError::file(
                ErrorCode::UnsupportedFormat,
                path,
                "four-colour (CYGM) sensors are not supported yet",
            ))
        }
    };
    let mut data = cam;
    data.par_chunks_mut(3 * 1024).for_each(|chunk| {
        for p in chunk.chunks_exact_mut(3) {
            let r = (p[0] * wb[0]).min(1.0);
            let g = (p[1] * wb[1]).min(1.0);
            let b = (p[2] * wb[2]).min(1.0);
            p[0] = m[0][0] * r + m[0][1] * g + m[0][2] * b;
            p[1] = m[1][0] * r + m[1][1] * g + m[1][2] * b;
            p[2] = m[2][0] * r + m[2][1] * g + m[2][2] * b;
        }
    });
    Ok(RgbF32::new(w, h, data))
}

fn ingest_raster(path: &Path, limits: &Limits) -> Result<Ingested, JobError> {
    use image::ImageDecoder;
    let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, path, why);
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Ingested, JobError> {
        let mut reader = image::ImageReader::open(path)
            .map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?
            .with_guessed_format()
            .map_err(|e| JobError::file(ErrorCode::NotFound, path, e))?;
        let mut lim = image::Limits::default();
        lim.max_alloc = Some((limits.max_pixels.saturating_mul(16)).max(1 << 20));
        reader.limits(lim);
        let mut decoder = reader.into_decoder().map_err(|e| match e {
            image::ImageError::Unsupported(u) => JobError::file(
                ErrorCode::UnsupportedFormat,
                path,
                format!("unsupported image: {u}"),
            ),
            other => corrupt(format!("cannot decode the image ({other})")),
        })?;
        let (w, h) = decoder.dimensions();
        check_pixels(path, w as usize, h as usize, limits)?;
        let icc = decoder.icc_profile().ok().flatten();
        let orientation = decoder
            .orientation()
            .map(|o| o.to_exif() as u16)
            .unwrap_or(1);
        let img = image::DynamicImage::from_decoder(decoder)
            .map_err(|e| corrupt(format!("the image data is damaged or truncated ({e})")))?;
        let encoded = img.into_rgb32f().into_raw();
        let linear = crate::color::to_working(w as usize, h as usize, encoded, icc.as_deref())
            .map_err(|e| JobError::file(ErrorCode::UnsupportedFormat, path, e))?;
        let mut meta = metadata::read_exif(path);
        meta.orientation = orientation;
        Ok(Ingested {
            image: linear.oriented(orientation),
            meta,
            is_raw: false,
        })
    }));
    result.unwrap_or_else(|p| {
        Err(corrupt(format!(
            "the decoder failed on this file ({})",
            panic_text(p)
        )))
    })
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
