//! The `.look` file: small, versioned, self-checking.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `\x89LOOK\r\n\x1a` (PNG's trick: a text-mode copy or a truncated upload breaks it) |
//! | 4 | format version (1) |
//! | 4 | length of the header |
//! | … | header: UTF-8 JSON, [`Header`] (what the look is and where it came from, its global part) |
//! | n³·3·2 | the LUT: `u16` values (× 1/65535) of the `sqrt` of linear Rec. 2020 (D65), red index fastest |
//! | 32 | SHA-256 of everything before |
//!
//! A 33³ look is about 220 KB. A file of a newer format version is refused with a message
//! that says to update Luminary, never half-read.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{Global, Look, LookInfo, Lut};

/// The magic bytes.
pub const MAGIC: &[u8; 8] = b"\x89LOOK\r\n\x1a";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// What the LUT's numbers mean.
pub const ENCODING: &str = "sqrt(linear Rec.2020 D65), 0..1, u16";

#[derive(Serialize, Deserialize)]
struct Header {
    encoding: String,
    lut_size: usize,
    #[serde(flatten)]
    info: LookInfo,
    global: Global,
}

/// Why a `.look` file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    /// The file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a look file at all.
    #[error("{path}: not a Luminary look file")]
    NotALook {
        /// The file.
        path: PathBuf,
    },
    /// Made by a newer Luminary.
    #[error("{path}: a look of format version {version}; this Luminary reads version {VERSION} — update Luminary to use it")]
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// Cut short or damaged.
    #[error("{path}: the look file is damaged ({why})")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl LookError {
    fn damaged(path: &Path, why: impl Into<String>) -> LookError {
        LookError::Damaged {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

impl From<LookError> for crate::error::JobError {
    fn from(e: LookError) -> Self {
        use crate::error::ErrorCode;
        let code = match &e {
            LookError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            LookError::Io { .. } => ErrorCode::BadRequest,
            LookError::NotALook { .. } | LookError::FutureVersion { .. } => {
                ErrorCode::UnsupportedFormat
            }
            LookError::Damaged { .. } => ErrorCode::CorruptInput,
        };
        crate::error::JobError::new(code, e.to_string())
    }
}

/// The file's bytes.
pub fn to_bytes(look: &Look) -> Vec<u8> {
    let header = Header {
        encoding: ENCODING.into(),
        lut_size: look.lut.n,
        info: look.info.clone(),
        global: look.global.clone(),
    };
    let json = serde_json::to_vec(&header).expect("a look's header serialises");
    let mut out = Vec::with_capacity(16 + json.len() + look.lut.values.len() * 2 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    for v in &look.lut.values {
        let q = (v.clamp(0.0, 1.0) * 65535.0).round() as u16;
        out.extend_from_slice(&q.to_le_bytes());
    }
    let digest = sha2::Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Reads a look from `bytes` (`path` only names it in errors).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Look, LookError> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(LookError::NotALook {
            path: path.to_path_buf(),
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version > VERSION {
        return Err(LookError::FutureVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    if version == 0 {
        return Err(LookError::damaged(path, "format version 0"));
    }
    if bytes.len() < 16 + 32 {
        return Err(LookError::damaged(path, "cut short"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header_end = 16usize
        .checked_add(header_len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| LookError::damaged(path, "cut short"))?;
    let header: Header = serde_json::from_slice(&bytes[16..header_end])
        .map_err(|e| LookError::damaged(path, format!("unreadable header: {e}")))?;
    let n = header.lut_size;
    if !(2..=129).contains(&n) {
        return Err(LookError::damaged(
            path,
            format!("a LUT of {n} nodes per axis"),
        ));
    }
    let lut_bytes = n * n * n * 3 * 2;
    if body.len() - header_end != lut_bytes {
        return Err(LookError::damaged(
            path,
            format!(
                "cut short: {} bytes of LUT where {n}³ nodes need {lut_bytes}",
                body.len() - header_end
            ),
        ));
    }
    if sha2::Sha256::digest(body).as_slice() != digest {
        return Err(LookError::damaged(path, "its checksum does not match"));
    }
    if header.encoding != ENCODING {
        return Err(LookError::damaged(
            path,
            format!("unknown encoding '{}'", header.encoding),
        ));
    }
    let g = &header.global;
    if g.tone.len() < 2
        || g.tone
            .iter()
            .chain(g.matrix.iter().flatten())
            .any(|v| !v.is_finite())
    {
        return Err(LookError::damaged(path, "its global part is not a mapping"));
    }
    let values = body[header_end..]
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 / 65535.0)
        .collect();
    Ok(Look {
        info: header.info,
        global: header.global,
        lut: Lut { n, values },
    })
}

/// Reads a `.look` file.
pub fn read(path: &Path) -> Result<Look, LookError> {
    let bytes = std::fs::read(path).map_err(|source| LookError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Writes `look` to `path`, or to the first free `name-2.look`, `name-3.look`, … when
/// `path` exists. Returns the name used.
pub fn write(look: &Look, path: &Path) -> Result<PathBuf, LookError> {
    write_bytes(&to_bytes(look), path, "look")
}

/// Writes `bytes` as `path`, or as the first free `name-2.ext`, `name-3.ext`, … when
/// `path` exists (a user's file is never replaced). The file appears whole or not at all:
/// it is written under a temporary name in the same folder, synced, then given its name
/// without replacing anything. Returns the name used.
pub fn write_bytes(bytes: &[u8], path: &Path, default_ext: &str) -> Result<PathBuf, LookError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LookError::Io { path, source }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".luminary-").suffix(".part");
    // A look or a LUT is a file to share, readable like any the user saves (tempfile's
    // default is owner-only); the umask still applies.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(io(path))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "look".into());
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| default_ext.into());
    let mut target = path.to_path_buf();
    for k in 2.. {
        match tmp.persist_noclobber(&target) {
            Ok(_) => return Ok(target),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists && k < 1000 => {
                tmp = e.file;
                target = dir.join(format!("{stem}-{k}.{ext}"));
            }
            Err(e) => {
                return Err(LookError::Io {
                    path: target,
                    source: e.error,
                })
            }
        }
    }
    unreachable!("the loop returns")
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::look::Reference;
    use serde_json::Map;

    fn sample() -> Look {
        let mut lut = Lut::identity(33);
        for v in lut.values.iter_mut() {
            *v = (*v * 0.9 + 0.05).min(1.0);
        }
        Look {
            info: LookInfo {
                preset: "warm-film".into(),
                preset_version: 2,
                params: Map::new(),
                engine: "gemini".into(),
                model: "gemini-2.5-flash-image".into(),
                references: vec![Reference {
                    name: "IMG_0001.dng".into(),
                    sha256: "ab".repeat(32),
                    cache_key: Some("cd".repeat(32)),
                }],
                coverage: 0.12,
                created: 1_790_000_000,
            },
            global: Global::identity(),
            lut,
        }
    }

    #[test]
    fn round_trips_within_a_16_bit_step() {
        let look = sample();
        let bytes = to_bytes(&look);
        assert!(bytes.len() < 240_000, "{} bytes", bytes.len());
        let back = from_bytes(&bytes, Path::new("x.look")).unwrap();
        assert_eq!(back.info, look.info);
        assert_eq!(back.global, look.global);
        let worst = back
            .lut
            .values
            .iter()
            .zip(&look.lut.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 0.5 / 65535.0 + 1e-7, "{worst}");
    }

    #[test]
    fn damaged_truncated_foreign_and_future_files_are_named_and_refused() {
        let bytes = to_bytes(&sample());
        let p = Path::new("/shoots/wedding.look");
        let msg = |b: &[u8]| from_bytes(b, p).unwrap_err().to_string();
        let cut = msg(&bytes[..bytes.len() / 2]);
        assert!(
            cut.contains("/shoots/wedding.look") && cut.contains("damaged"),
            "{cut}"
        );
        let mut flipped = bytes.clone();
        let mid = bytes.len() - 5000;
        flipped[mid] ^= 0x40;
        assert!(msg(&flipped).contains("checksum"), "{}", msg(&flipped));
        assert!(msg(b"P6\n640 480\n255\n....................").contains("not a Luminary look"));
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        let m = msg(&future);
        assert!(
            m.contains("version 2") && m.contains("update Luminary"),
            "{m}"
        );
        assert!(msg(&[]).contains("not a Luminary look"));
    }

    #[test]
    fn writing_never_replaces_an_existing_look() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shoot.look");
        let first = write(&sample(), &p).unwrap();
        let second = write(&sample(), &p).unwrap();
        assert_eq!(first, p);
        assert_eq!(second, dir.path().join("shoot-2.look"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        read(&second).unwrap();
    }
}
