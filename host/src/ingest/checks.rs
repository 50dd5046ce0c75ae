//! The checks every input passes before a decoder sees it, and the limits decoders run
//! under: file size, TIFF structure, pixel count, the RAW decoder process's memory.
//!
//! Decoders are third-party code fed untrusted files. rawler allocates what a header claims,
//! so TIFF-structured files are walked here first (`check_tiff_structure`), and the RAW
//! decoder process gets an address-space limit computed here (`decode_memory_limit`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, JobError};

/// `[limits]`: refuse inputs that would exhaust memory before decoding them.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest image, in pixels (default 200 MP: a 150 MP medium-format file fits).
    pub max_pixels: u64,
    /// Largest input file, in bytes (default 1 GiB).
    pub max_file_bytes: u64,
    /// Address space, in MB, of the process that decodes a camera RAW while it parses and
    /// decodes (0, the default: 384 MB + 8 MB per core + the file's size + 16 bytes per
    /// pixel of `max_pixels`, about 3.8 GB). A decoder asking for more is stopped and the
    /// job fails `too_large`.
    pub decode_memory_mb: u64,
    /// Seconds the RAW decoder process may take before it is stopped (`corrupt_input`).
    pub decode_timeout_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 200_000_000,
            max_file_bytes: 1 << 30,
            decode_memory_mb: 0,
            decode_timeout_s: 120.0,
        }
    }
}

/// The message of a decoder's panic.
pub(crate) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "decoder crashed".into())
}

/// File extensions handled as camera RAW (rawler decides in the end).
pub(crate) const RAW_EXTENSIONS: &[&str] = &[
    "dng", "cr2", "cr3", "crw", "nef", "nrw", "arw", "srf", "sr2", "raf", "orf", "rw2", "pef",
    "srw", "3fr", "fff", "iiq", "erf", "kdc", "dcr", "dcs", "mos", "mef", "mrw", "raw", "rwl",
    "x3f", "ari", "qtk", "gpr",
];

/// What a file is, by its name and first bytes.
pub(crate) enum Kind {
    /// A camera RAW (rawler decides in the end).
    Raw,
    /// TIFF, JPEG or PNG.
    Raster,
}

pub(crate) fn sniff(path: &Path, head: &[u8]) -> Option<Kind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if RAW_EXTENSIONS.contains(&ext.as_str()) {
        return Some(Kind::Raw);
    }
    let is_tiff = is_tiff(head);
    let is_jpeg = head.starts_with(&[0xFF, 0xD8, 0xFF]);
    let is_png = head.starts_with(b"\x89PNG\r\n\x1a\n");
    if is_tiff || is_jpeg || is_png {
        Some(Kind::Raster)
    } else {
        None
    }
}

/// Whether a file starts like a TIFF (TIFF, DNG and most camera RAWs).
pub(crate) fn is_tiff(head: &[u8]) -> bool {
    head.starts_with(b"II*\0") || head.starts_with(b"MM\0*")
}

/// The checks before any decoder: the file exists, is a file, is not empty, is within
/// `limits.max_file_bytes`, and (TIFF-structured) its entries fit in the file. Returns the
/// first bytes, for sniffing the format.
pub(crate) fn check_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, JobError> {
    use std::io::Read;
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
    let mut head = vec![0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| JobError::file(ErrorCode::NotFound, path, format!("cannot read: {e}")))?;
    head.truncate(n);
    if is_tiff(&head) {
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
    Ok(head)
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
    // IFDs to visit, each with whether it is a link of the main chain (IFD0 and its "next
    // IFD" pointers). The stack visits the whole chain before any sub-IFD, so a link to an
    // IFD already seen is a loop: rawler would follow it forever, collecting copies of the
    // same IFDs until the decoder's memory limit stopped it with a misleading "too large".
    let mut queue = vec![(u32_at(&head[4..8]) as u64, true)];
    let mut seen = std::collections::HashSet::new();
    while let Some((offset, link)) = queue.pop() {
        if offset == 0 {
            continue;
        }
        if !seen.insert(offset) {
            if link {
                return Err(format!(
                    "the chain of IFDs loops back to the IFD at offset {offset}"
                ));
            }
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
                    queue.push((value, false));
                } else if bytes <= len {
                    let mut offs = vec![0u8; bytes as usize];
                    f.seek(SeekFrom::Start(value))
                        .and_then(|_| f.read_exact(&mut offs))
                        .map_err(|e| e.to_string())?;
                    queue.extend(offs.chunks_exact(4).map(|o| (u32_at(o) as u64, false)));
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
        queue.push((u32_at(&entries[(count * 12) as usize..]) as u64, true));
    }
    Ok(())
}

pub(crate) fn check_pixels(
    path: &Path,
    w: usize,
    h: usize,
    limits: &Limits,
) -> Result<(), JobError> {
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
