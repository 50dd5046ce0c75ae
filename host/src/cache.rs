//! The edit cache: what an AI engine returned for a preview, kept on disk so that the same
//! preset on the same photo never pays for a second engine call.
//!
//! Intensity is deliberately absent from the key. The engine always produces the *full*
//! edit; intensity is applied afterwards by the blend stage
//! (`out = base + intensity · (edited − base)`). A photographer dragging the slider from 40 %
//! to 70 % must reuse the same edited preview — a key that included intensity would bill them
//! once per slider position.
//!
//! Layout: each result is a file `<dir>/<aa>/<key>.<ext>` (`aa` = the key's first two hex
//! digits, so no folder grows huge), indexed by `<dir>/index.sqlite` (WAL). The daemon and
//! CLI commands open the same folder from different processes, and the daemon may be killed
//! at any moment. What keeps that safe:
//!
//! - A file appears at its final path only by renaming a complete, fsynced temporary file,
//!   so a file at a final path is never half-written, whatever was killed when.
//! - Every change to final paths (publish, evict, clear, sweep) happens while holding
//!   SQLite's write lock, inside the transaction that changes the index. A clear in one
//!   process and a put in another are therefore ordered: either the put's row and file both
//!   survive, or both go.
//! - A reader checks the file's size against its row; a missing or short file is a miss and
//!   the row is dropped. A crash can leave a row without its file (a miss, never wrong bytes)
//!   or a file without a row (swept at the next open), never a torn file that is served.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, JobError};

/// Bumped with each schema change; `open` migrates older indexes and refuses newer ones.
const SCHEMA_VERSION: i64 = 2;

/// Long enough to wait out another process's put or clear, short enough that a wedged
/// process surfaces as an error instead of a hung job.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Temporary files start with this; nothing else in the cache does, so the sweep can tell
/// them apart from results.
const TEMP_PREFIX: &str = ".tmp-";

/// A put writes its temporary file in milliseconds. One this old belongs to a process that
/// died (or to a pid that was since reused, which the liveness check cannot tell).
const STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// Hashed first, so a future key layout (v2) can never collide with this one.
const KEY_DOMAIN: &[u8] = b"luminary edit-cache key v1";

/// Makes temporary names unique among the handles and threads of one process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Everything that shapes an engine's answer, hashed — except intensity (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// Hashes every input of the engine call. Each field is length-prefixed, so moving bytes
    /// from one field to its neighbour (`"ab" + "c"` vs `"a" + "bc"`) changes the key.
    ///
    /// `params` is hashed in a canonical form (object keys sorted at every depth), so the
    /// order a client happened to send them in cannot cause a paid miss. Numbers keep their
    /// spelling (`1` and `1.0` differ): a spurious miss costs one call, never a wrong image.
    pub fn new(
        preview: &[u8],
        preset_id: &str,
        preset_version: u32,
        params: &serde_json::Map<String, Value>,
        prompt: &str,
        engine: &str,
        model: &str,
    ) -> CacheKey {
        let mut canonical = Vec::new();
        write_canonical_object(params, &mut canonical);
        let mut h = Sha256::new();
        for field in [
            KEY_DOMAIN,
            preview,
            preset_id.as_bytes(),
            &preset_version.to_le_bytes(),
            &canonical,
            prompt.as_bytes(),
            engine.as_bytes(),
            model.as_bytes(),
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
        let digest = h.finalize();
        let mut hex = String::with_capacity(64);
        for b in digest.iter() {
            hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        CacheKey(hex)
    }

    /// The key as 64 lowercase hex digits, as stored in the index and in file names.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

// serde_json's Map is only sorted without its `preserve_order` feature, which any crate in
// the build could switch on; sorting here keeps the key stable either way.
fn write_canonical_object(map: &serde_json::Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(k, out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// An engine result served from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedEdit {
    /// The encoded image exactly as the engine returned it.
    pub bytes: Vec<u8>,
    /// Its type (`image/png`, …), so the decoder need not sniff.
    pub mime: String,
    /// Pixel width, so the transfer stage can plan before decoding.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

/// What a clear removed, for `luminary cache clear` to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClearStats {
    /// Results removed.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Why the cache could not do its job. Callers usually log it and go on without the cache:
/// a broken cache should cost money, not fail the photographer's job.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The index could not be read or written: locked by another process for too long,
    /// damaged, or the disk is full.
    #[error(
        "edit cache index {}: {error}. The cache only holds engine results: deleting its \
         folder starts it afresh",
        path.display()
    )]
    Index {
        /// The index file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// A cached file or folder could not be written, read or removed.
    #[error("edit cache file {}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The index was written by a newer Luminary whose layout this one does not know.
    #[error(
        "edit cache index {}: written by a newer Luminary (schema {found}, this one knows up \
         to {known}). Update Luminary, or delete the cache folder to start afresh",
        path.display()
    )]
    NewerSchema {
        /// The index file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build understands.
        known: i64,
    },
}

impl From<CacheError> for JobError {
    fn from(e: CacheError) -> JobError {
        JobError::new(ErrorCode::Internal, e.to_string())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |error| CacheError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The on-disk cache of engine results, shared by the daemon's threads and by CLI processes.
pub struct EditCache {
    /// The cache folder; every result file lives below it.
    dir: PathBuf,
    /// `<dir>/index.sqlite`, kept for error messages.
    index: PathBuf,
    /// Eviction keeps the results' total size at or under this.
    max_bytes: u64,
    /// One connection serialises this process's threads; SQLite's file locks serialise
    /// processes. Nothing is held across engine calls, so the lock is only ever brief.
    conn: Mutex<Connection>,
}

impl EditCache {
    /// Opens (creating if needed) the cache in `dir`, keeping results under `max_bytes`.
    ///
    /// Also removes what a killed process left behind: temporary files of puts that never
    /// finished, and result files whose row was never committed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<EditCache, CacheError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let index = dir.join("index.sqlite");
        let db = |error| CacheError::Index {
            path: index.clone(),
            error,
        };
        let mut conn = Connection::open(&index).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // WAL lets `luminary cache clear` or `stats` read while the daemon writes. Some file
        // systems refuse it; SQLite then keeps its rollback journal, which is slower but safe.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(db)?;
        // In WAL mode NORMAL never corrupts; a power cut may forget the last few results,
        // which only costs a repeat engine call.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        migrate(&mut conn).map_err(|e| match e {
            Migrate::Db(error) => CacheError::Index {
                path: index.clone(),
                error,
            },
            Migrate::Newer(found) => CacheError::NewerSchema {
                path: index.clone(),
                found,
                known: SCHEMA_VERSION,
            },
        })?;
        let cache = EditCache {
            dir: dir.to_path_buf(),
            index: index.clone(),
            max_bytes,
            conn: Mutex::new(conn),
        };
        cache.sweep()?;
        Ok(cache)
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached result for `key`, or `None` on a miss.
    ///
    /// A row whose file is missing or has the wrong size (deleted by hand, or a crash between
    /// a deletion and its commit) is dropped and reported as a miss: paying for one more
    /// engine call beats handing the transfer stage a broken image.
    pub fn get(&self, key: &CacheKey) -> Result<Option<CachedEdit>, CacheError> {
        let row = self
            .lock()
            .query_row(
                "SELECT file, mime, bytes, width, height FROM entries WHERE key = ?1",
                [key.as_str()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, u32>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(self.db())?;
        let Some((file, mime, len, width, height)) = row else {
            return Ok(None);
        };
        // The file is read without holding the connection, so one large read does not stall
        // every other job's lookup. That is safe: files at final paths are always complete,
        // and a concurrent clear only makes the read fail (a miss) or succeed (valid bytes).
        let Some(path) = self.blob_path(key.as_str(), &file) else {
            self.drop_broken(key, &file, len)?;
            return Ok(None);
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) if bytes.len() as u64 == len as u64 => bytes,
            Ok(_) => {
                self.drop_broken(key, &file, len)?;
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.drop_broken(key, &file, len)?;
                return Ok(None);
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        self.lock()
            .execute(
                &format!("UPDATE entries SET last_used = {NEXT_USE} WHERE key = ?1"),
                params![key.as_str(), now_millis()],
            )
            .map_err(self.db())?;
        Ok(Some(CachedEdit {
            bytes,
            mime,
            width,
            height,
        }))
    }

    /// Stores an engine result under `key`, then evicts the least recently used results
    /// until the total fits `max_bytes` again — never this one, even if it alone is larger:
    /// the job about to read it back must find it.
    #[allow(clippy::too_many_arguments)] // The fields of one row; a struct would only rename them.
    pub fn put(
        &self,
        key: &CacheKey,
        bytes: &[u8],
        mime: &str,
        width: u32,
        height: u32,
        engine: &str,
        model: &str,
    ) -> Result<(), CacheError> {
        let rel = format!("{}/{}.{}", &key.0[..2], key.0, extension(mime));
        let path = self.dir.join(&rel);
        let folder = self.dir.join(&key.0[..2]);
        fs::create_dir_all(&folder).map_err(io_err(&folder))?;
        // Written and fsynced before taking any lock: the slow part must not block other jobs.
        let temp = folder.join(format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed),
            key.0
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut f| {
                f.write_all(bytes)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err(&temp)(e));
        }
        let published = self.publish(
            key,
            &rel,
            &temp,
            &path,
            bytes.len() as u64,
            mime,
            width,
            height,
            engine,
            model,
        );
        if published.is_err() {
            // If the rename happened the file stays (complete, swept if its row never came).
            let _ = fs::remove_file(&temp);
        }
        published?;
        // Makes the rename durable across a power cut; without it the row may outlive the
        // file, which a later get handles as a miss, so a failure here is not an error.
        sync_dir(&folder);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        key: &CacheKey,
        rel: &str,
        temp: &Path,
        path: &Path,
        len: u64,
        mime: &str,
        width: u32,
        height: u32,
        engine: &str,
        model: &str,
    ) -> Result<(), CacheError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        // The same key stored earlier with another type would leave its old file orphaned.
        let previous: Option<String> = tx
            .query_row(
                "SELECT file FROM entries WHERE key = ?1",
                [key.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())?;
        fs::rename(temp, path).map_err(io_err(path))?;
        let now = now_millis();
        tx.execute(
            &format!(
                "INSERT INTO entries (key, file, mime, bytes, width, height, engine, model, \
                 created, last_used) VALUES (?1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?2, {NEXT_USE}) \
                 ON CONFLICT (key) DO UPDATE SET file = excluded.file, mime = excluded.mime, \
                 bytes = excluded.bytes, width = excluded.width, height = excluded.height, \
                 engine = excluded.engine, model = excluded.model, created = excluded.created, \
                 last_used = excluded.last_used"
            ),
            params![
                key.as_str(),
                now,
                rel,
                mime,
                len as i64,
                width,
                height,
                engine,
                model
            ],
        )
        .map_err(self.db())?;
        if let Some(previous) = previous.filter(|p| p != rel) {
            if let Some(old) = self.blob_path(key.as_str(), &previous) {
                remove_quietly(&old);
            }
        }
        self.evict(&tx, key)?;
        tx.commit().map_err(self.db())
    }

    /// Drops least recently used rows and their files until the total fits the budget.
    fn evict(&self, tx: &Transaction<'_>, keep: &CacheKey) -> Result<(), CacheError> {
        let total: i64 = tx
            .query_row("SELECT COALESCE(SUM(bytes), 0) FROM entries", [], |r| {
                r.get(0)
            })
            .map_err(self.db())?;
        let total = total.max(0) as u64;
        if total <= self.max_bytes {
            return Ok(());
        }
        let mut excess = total - self.max_bytes;
        let mut victims = Vec::new();
        {
            let mut stmt = tx
                .prepare("SELECT key, file, bytes FROM entries WHERE key <> ?1 ORDER BY last_used")
                .map_err(self.db())?;
            let mut rows = stmt.query([keep.as_str()]).map_err(self.db())?;
            while excess > 0 {
                let Some(row) = rows.next().map_err(self.db())? else {
                    break;
                };
                let (key, file, len): (String, String, i64) = (
                    row.get(0).map_err(self.db())?,
                    row.get(1).map_err(self.db())?,
                    row.get(2).map_err(self.db())?,
                );
                excess = excess.saturating_sub(len.max(0) as u64);
                victims.push((key, file));
            }
        }
        for (key, file) in victims {
            tx.execute("DELETE FROM entries WHERE key = ?1", [&key])
                .map_err(self.db())?;
            if let Some(path) = self.blob_path(&key, &file) {
                remove_quietly(&path);
            }
        }
        Ok(())
    }

    /// Removes every cached result. Puts still writing their temporary file are not
    /// disturbed: they publish after the clear, complete, as if they had started after it.
    pub fn clear(&self) -> Result<ClearStats, CacheError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let stats = totals(&tx).map_err(self.db())?;
        tx.execute("DELETE FROM entries", []).map_err(self.db())?;
        tx.execute("DELETE FROM sources", []).map_err(self.db())?;
        // Every result file goes, rows' files and orphans alike; under the write lock no
        // other process is publishing one.
        for (path, name) in shard_files(&self.dir)? {
            if !name.starts_with(TEMP_PREFIX) {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
        }
        tx.commit().map_err(self.db())?;
        Ok(stats)
    }

    /// Notes that `key` answers the edit `edit` of the photo `photo` (opaque strings the
    /// pipeline makes), for [`EditCache::has_answer_for`].
    pub fn note_source(&self, photo: &str, edit: &str, key: &CacheKey) -> Result<(), CacheError> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO sources (photo, edit, key) VALUES (?1, ?2, ?3)",
                params![photo, edit, key.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Whether the cache still holds an answer for the edit `edit` of `photo` (as noted by
    /// [`EditCache::note_source`]): what `estimate` asks, without decoding the photo.
    pub fn has_answer_for(&self, photo: &str, edit: &str) -> Result<bool, CacheError> {
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM sources s JOIN entries e ON e.key = s.key \
                 WHERE s.photo = ?1 AND s.edit = ?2",
                params![photo, edit],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.db())
    }

    /// How many results the cache holds and their total size in bytes.
    pub fn stats(&self) -> Result<ClearStats, CacheError> {
        totals(&self.lock()).map_err(self.db())
    }

    /// Start-up cleanup of what killed processes left: temporary files whose writer is gone,
    /// and result files with no row (killed between the rename and the commit).
    fn sweep(&self) -> Result<(), CacheError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        for (path, name) in shard_files(&self.dir)? {
            let remove = if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
                let stale = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP_AGE);
                let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                stale || owner.is_some_and(|pid| !alive(pid))
            } else {
                let key = name.split('.').next().unwrap_or("");
                let folder = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                    .unwrap_or("");
                let rel = format!("{folder}/{name}");
                let file: Option<String> = tx
                    .query_row("SELECT file FROM entries WHERE key = ?1", [key], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(self.db())?;
                file.as_deref() != Some(rel.as_str())
            };
            if remove {
                tracing::info!("edit cache: removing leftover {}", path.display());
                remove_quietly(&path);
            }
        }
        tx.commit().map_err(self.db())
    }

    /// Drops a row whose file turned out missing or torn — after checking again under the
    /// write lock, since a concurrent put may have replaced both in the meantime.
    fn drop_broken(&self, key: &CacheKey, file: &str, len: i64) -> Result<(), CacheError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT file, bytes FROM entries WHERE key = ?1",
                [key.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())?;
        if row.as_ref().is_some_and(|(f, l)| f == file && *l == len) {
            let path = self.blob_path(key.as_str(), file);
            let intact = path
                .as_ref()
                .and_then(|p| fs::metadata(p).ok())
                .is_some_and(|m| m.len() == len as u64);
            if !intact {
                tracing::warn!("edit cache: dropping {key}: its file {file} is missing or torn");
                tx.execute("DELETE FROM entries WHERE key = ?1", [key.as_str()])
                    .map_err(self.db())?;
                if let Some(path) = path {
                    remove_quietly(&path);
                }
            }
        }
        tx.commit().map_err(self.db())
    }

    /// The path of a row's file — or `None` if the row names anything but `<aa>/<key>.<ext>`,
    /// so a damaged index can never make the cache read or delete a file outside it.
    fn blob_path(&self, key: &str, file: &str) -> Option<PathBuf> {
        let valid_key =
            key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid_key {
            return None;
        }
        let ext = file
            .strip_prefix(&key[..2])?
            .strip_prefix('/')?
            .strip_prefix(key)?
            .strip_prefix('.')?;
        let valid_ext = !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric());
        valid_ext.then(|| self.dir.join(&key[..2]).join(format!("{key}.{ext}")))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere cannot leave the connection mid-transaction: rusqlite rolls back
        // on drop. So a poisoned lock is still a usable connection.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |error| CacheError::Index {
            path: self.index.clone(),
            error,
        }
    }
}

/// Every file in the `<aa>` folders of a cache folder, with its name. Other files (the
/// index, anything a person put there) are never touched.
fn shard_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, CacheError> {
    let mut out = Vec::new();
    for folder in fs::read_dir(dir).map_err(io_err(dir))? {
        let folder = folder.map_err(io_err(dir))?;
        let name = folder.file_name();
        let is_shard = name.len() == 2
            && name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if !is_shard || !folder.file_type().map_err(io_err(&folder.path()))?.is_dir() {
            continue;
        }
        let folder = folder.path();
        for file in fs::read_dir(&folder).map_err(io_err(&folder))? {
            let file = file.map_err(io_err(&folder))?;
            if let Ok(name) = file.file_name().into_string() {
                out.push((file.path(), name));
            }
        }
    }
    Ok(out)
}

/// `last_used` is a logical clock: wall-clock milliseconds, but always past every other
/// entry's, so LRU order is exact even for uses within one millisecond or across processes
/// (SQLite serialises the writes). `?2` is the current time.
const NEXT_USE: &str = "MAX(?2, (SELECT COALESCE(MAX(last_used), 0) + 1 FROM entries))";

enum Migrate {
    Db(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for Migrate {
    fn from(e: rusqlite::Error) -> Migrate {
        Migrate::Db(e)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), Migrate> {
    // Immediate: two processes opening a fresh cache at once must not both create it.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Migrate::Newer(version));
    }
    if version < 1 {
        tx.execute_batch(
            "CREATE TABLE entries (
                key       TEXT PRIMARY KEY,  -- CacheKey, 64 hex digits
                file      TEXT NOT NULL,     -- '<aa>/<key>.<ext>', relative to the cache folder
                mime      TEXT NOT NULL,
                bytes     INTEGER NOT NULL,  -- the file's size, checked on every read
                width     INTEGER NOT NULL,
                height    INTEGER NOT NULL,
                engine    TEXT NOT NULL,
                model     TEXT NOT NULL,
                created   INTEGER NOT NULL,  -- unix milliseconds
                last_used INTEGER NOT NULL   -- logical clock, see NEXT_USE
            );
            CREATE INDEX entries_last_used ON entries (last_used);",
        )?;
    }
    if version < 2 {
        // Which photo (path, size, modification time, preview size) and edit (preset,
        // version, parameters, engine, model) an entry answered, so `estimate` can tell
        // what is cached without decoding a photo. Rows whose entry was evicted are
        // ignored by the join that reads them.
        tx.execute_batch(
            "CREATE TABLE sources (
                photo TEXT NOT NULL,
                edit  TEXT NOT NULL,
                key   TEXT NOT NULL,
                PRIMARY KEY (photo, edit)
            );",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn totals(conn: &Connection) -> rusqlite::Result<ClearStats> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM entries",
        [],
        |r| {
            Ok(ClearStats {
                entries: r.get::<_, i64>(0)?.max(0) as u64,
                bytes: r.get::<_, i64>(1)?.max(0) as u64,
            })
        },
    )
}

/// File extensions only help people browsing the folder; unknown types get `bin`.
fn extension(mime: &str) -> &'static str {
    let essence = mime.split(';').next().unwrap_or("").trim();
    match essence.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/webp" => "webp",
        "image/tiff" => "tif",
        "image/avif" => "avif",
        "image/heic" => "heic",
        _ => "bin",
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Removal that tolerates the file being gone already; other failures are logged, not
/// raised, because the caller's own work (a put, an eviction) has already succeeded.
fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("edit cache: cannot remove {}: {e}", path.display()),
    }
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Whether the process that wrote a temporary file may still be writing it.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped) writes nothing more.
        return !stat.rsplit(") ").next().unwrap_or("").starts_with('Z');
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // Signal 0 only asks whether the process exists; EPERM means it does.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        // No cheap check here: the age rule alone removes such files.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    fn params(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("params must be an object"),
        }
    }

    /// A key as the engine stage builds one, varying only what the test names.
    fn key_for(preview: &[u8], params_: Value) -> CacheKey {
        CacheKey::new(
            preview,
            "essentials.golden-hour",
            3,
            &params(params_),
            "warm late-afternoon light",
            "gemini",
            "gemini-2.5-flash-image",
        )
    }

    /// What an engine sends back for a 1024-px preview: a real photo from the developer's
    /// photo cache, resized to 1024×683, or a smooth gradient where there is none. PNG.
    fn engine_result() -> Vec<u8> {
        let photo = std::env::var_os("HOME")
            .map(PathBuf::from)
            .map(|h| h.join(".cache/luminary-dev/photos/flower.png"));
        let img = match photo.and_then(|p| ::image::open(p).ok()) {
            Some(img) => img
                .resize_exact(1024, 683, ::image::imageops::FilterType::Triangle)
                .to_rgb8(),
            None => ::image::RgbImage::from_fn(1024, 683, |x, y| {
                ::image::Rgb([(x / 4) as u8, (y * 255 / 682) as u8, ((x + y) / 7) as u8])
            }),
        };
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ::image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A distinct blob of exactly `len` bytes, for tests that count bytes.
    fn blob(seed: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u64 * 31 + seed * 7) as u8).collect()
    }

    fn key(n: u64) -> CacheKey {
        key_for(&n.to_le_bytes(), json!({}))
    }

    fn put_blob(cache: &EditCache, k: &CacheKey, bytes: &[u8]) {
        cache
            .put(
                k,
                bytes,
                "image/png",
                1024,
                683,
                "gemini",
                "gemini-2.5-flash-image",
            )
            .unwrap();
    }

    fn cached_bytes(cache: &EditCache, k: &CacheKey) -> Option<Vec<u8>> {
        cache.get(k).unwrap().map(|e| e.bytes)
    }

    /// Result files actually on disk (temporary files excluded).
    fn files_on_disk(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = shard_files(dir)
            .unwrap()
            .into_iter()
            .filter(|(_, n)| !n.starts_with(TEMP_PREFIX))
            .map(|(p, _)| p)
            .collect();
        files.sort();
        files
    }

    fn file_of(dir: &Path, k: &CacheKey) -> PathBuf {
        dir.join(&k.as_str()[..2])
            .join(format!("{}.png", k.as_str()))
    }

    #[test]
    fn round_trip_of_a_real_engine_result() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let png = engine_result();
        let k = key_for(&png, json!({"warmth": 0.4}));
        assert_eq!(cache.get(&k).unwrap(), None);
        cache
            .put(
                &k,
                &png,
                "image/png",
                1024,
                683,
                "gemini",
                "gemini-2.5-flash-image",
            )
            .unwrap();
        let hit = cache.get(&k).unwrap().expect("a hit right after the put");
        assert_eq!(hit.mime, "image/png");
        assert_eq!((hit.width, hit.height), (1024, 683));
        assert!(
            hit.bytes == png,
            "the cached bytes differ from what was put"
        );
        let decoded = ::image::load_from_memory(&hit.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1024, 683));
        assert_eq!(
            cache.stats().unwrap(),
            ClearStats {
                entries: 1,
                bytes: png.len() as u64
            }
        );
        let file = file_of(dir.path(), &k);
        assert_eq!(
            fs::read(&file).unwrap().len(),
            png.len(),
            "stored at <aa>/<key>.png"
        );
    }

    #[test]
    fn key_is_stable_and_ignores_param_order() {
        let preview = engine_result();
        let a = key_for(
            &preview,
            json!({"warmth": 0.4, "tone": {"lift": 1, "gamma": [1, {"b": 2, "a": 1}]}}),
        );
        let b = key_for(
            &preview,
            json!({"warmth": 0.4, "tone": {"lift": 1, "gamma": [1, {"b": 2, "a": 1}]}}),
        );
        assert_eq!(
            a, b,
            "identical inputs (there is no intensity input) give one key"
        );
        assert_eq!(a.as_str().len(), 64);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

        // Same params inserted in the opposite order, nested objects included.
        let mut inner = serde_json::Map::new();
        inner.insert("a".into(), json!(1));
        inner.insert("b".into(), json!(2));
        let mut tone = serde_json::Map::new();
        tone.insert("gamma".into(), json!([1, Value::Object(inner)]));
        tone.insert("lift".into(), json!(1));
        let mut reordered = serde_json::Map::new();
        reordered.insert("tone".into(), Value::Object(tone));
        reordered.insert("warmth".into(), json!(0.4));
        let c = CacheKey::new(
            &preview,
            "essentials.golden-hour",
            3,
            &reordered,
            "warm late-afternoon light",
            "gemini",
            "gemini-2.5-flash-image",
        );
        assert_eq!(a, c, "param order must not cause a paid miss");

        let changed_value = key_for(
            &preview,
            json!({"warmth": 0.5, "tone": {"lift": 1, "gamma": [1, {"b": 2, "a": 1}]}}),
        );
        assert_ne!(a, changed_value);
        let changed_nested = key_for(
            &preview,
            json!({"warmth": 0.4, "tone": {"lift": 1, "gamma": [1, {"b": 3, "a": 1}]}}),
        );
        assert_ne!(a, changed_nested);
        let reordered_array = key_for(
            &preview,
            json!({"warmth": 0.4, "tone": {"lift": 1, "gamma": [{"b": 2, "a": 1}, 1]}}),
        );
        assert_ne!(a, reordered_array, "array order is meaningful");
    }

    #[test]
    fn key_changes_with_every_field() {
        let preview = engine_result();
        let p = params(json!({"warmth": 0.4}));
        let base = (
            "essentials.golden-hour",
            3,
            "warm light",
            "gemini",
            "gemini-2.5-flash-image",
        );
        let k =
            |preview: &[u8],
             (preset, version, prompt, engine, model): (&str, u32, &str, &str, &str)| {
                CacheKey::new(preview, preset, version, &p, prompt, engine, model)
            };
        let reference = k(&preview, base);
        let mut other_preview = preview.clone();
        *other_preview.last_mut().unwrap() ^= 1;
        let variants = [
            ("preview", k(&other_preview, base)),
            (
                "preset",
                k(
                    &preview,
                    (
                        "essentials.blue-hour",
                        3,
                        "warm light",
                        "gemini",
                        "gemini-2.5-flash-image",
                    ),
                ),
            ),
            (
                "preset version",
                k(
                    &preview,
                    (
                        "essentials.golden-hour",
                        4,
                        "warm light",
                        "gemini",
                        "gemini-2.5-flash-image",
                    ),
                ),
            ),
            (
                "prompt",
                k(
                    &preview,
                    (
                        "essentials.golden-hour",
                        3,
                        "warm light.",
                        "gemini",
                        "gemini-2.5-flash-image",
                    ),
                ),
            ),
            (
                "engine",
                k(
                    &preview,
                    (
                        "essentials.golden-hour",
                        3,
                        "warm light",
                        "openai",
                        "gemini-2.5-flash-image",
                    ),
                ),
            ),
            (
                "model",
                k(
                    &preview,
                    (
                        "essentials.golden-hour",
                        3,
                        "warm light",
                        "gemini",
                        "gemini-2.5-flash-image-preview",
                    ),
                ),
            ),
            (
                "params",
                CacheKey::new(
                    &preview,
                    base.0,
                    base.1,
                    &params(json!({"warmth": 0.41})),
                    base.2,
                    base.3,
                    base.4,
                ),
            ),
        ];
        for (field, key) in &variants {
            assert_ne!(&reference, key, "changing the {field} must change the key");
        }
        // Field boundaries: the same bytes split differently between neighbours.
        let empty = serde_json::Map::new();
        assert_ne!(
            CacheKey::new(b"", "p", 1, &empty, "ab", "c", "m"),
            CacheKey::new(b"", "p", 1, &empty, "a", "bc", "m")
        );
        assert_ne!(
            CacheKey::new(b"", "p", 1, &empty, "", "gemini", "x"),
            CacheKey::new(b"", "p", 1, &empty, "", "gemin", "ix")
        );
    }

    #[test]
    fn survives_a_daemon_restart() {
        let dir = tempfile::tempdir().unwrap();
        let png = engine_result();
        let k = key_for(&png, json!({}));
        {
            let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
            put_blob(&cache, &k, &png);
        } // dropped like a daemon that exits
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        assert!(cached_bytes(&cache, &k) == Some(png.clone()));
        assert_eq!(cache.stats().unwrap().entries, 1);
        assert_eq!(
            files_on_disk(dir.path()),
            vec![file_of(dir.path(), &k)],
            "the sweep kept it"
        );
    }

    #[test]
    fn a_cache_of_the_first_schema_opens_and_keeps_its_answers() {
        let dir = tempfile::tempdir().unwrap();
        let a = key(1);
        {
            let cache = EditCache::open(dir.path(), 10 * MIB).unwrap();
            put_blob(&cache, &a, &blob(1, 1000));
        }
        // Back to how schema 1 left it: no `sources` table.
        let conn = Connection::open(dir.path().join("index.sqlite")).unwrap();
        conn.execute_batch("DROP TABLE sources; PRAGMA user_version = 1;")
            .unwrap();
        drop(conn);
        let cache = EditCache::open(dir.path(), 10 * MIB).unwrap();
        assert_eq!(cached_bytes(&cache, &a), Some(blob(1, 1000)));
        cache.note_source("photo", "edit", &a).unwrap();
        assert!(cache.has_answer_for("photo", "edit").unwrap());
    }

    #[test]
    fn a_photos_answer_is_known_without_decoding_until_evicted_or_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 2000).unwrap();
        let (photo, edit) = (
            "/p/a.dng\u{0}100\u{0}7\u{0}1024",
            "warm-film\u{0}1\u{0}{}\u{0}gemini\u{0}m",
        );
        assert!(!cache.has_answer_for(photo, edit).unwrap());
        let (a, b, c) = (key(1), key(2), key(3));
        put_blob(&cache, &a, &blob(1, 1000));
        cache.note_source(photo, edit, &a).unwrap();
        assert!(cache.has_answer_for(photo, edit).unwrap());
        assert!(!cache
            .has_answer_for(photo, "other\u{0}1\u{0}{}\u{0}gemini\u{0}m")
            .unwrap());
        // Two newer answers push A out: the photo's edit is no longer cached.
        put_blob(&cache, &b, &blob(2, 1000));
        put_blob(&cache, &c, &blob(3, 1000));
        assert!(
            !cache.has_answer_for(photo, edit).unwrap(),
            "evicted answer still counted"
        );
        cache.note_source(photo, edit, &c).unwrap();
        assert!(cache.has_answer_for(photo, edit).unwrap());
        cache.clear().unwrap();
        assert!(!cache.has_answer_for(photo, edit).unwrap());
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 3000).unwrap();
        let (a, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
        put_blob(&cache, &a, &blob(1, 1000));
        put_blob(&cache, &b, &blob(2, 1000));
        put_blob(&cache, &c, &blob(3, 1000));
        assert_eq!(
            cache.stats().unwrap().bytes,
            3000,
            "exactly at the budget: nothing goes"
        );

        // The oldest entry is used again; the newer B is now the least recently used.
        assert!(cache.get(&a).unwrap().is_some());
        put_blob(&cache, &d, &blob(4, 1000));
        assert!(
            cached_bytes(&cache, &a).is_some(),
            "recently used A survives"
        );
        assert!(cached_bytes(&cache, &b).is_none(), "untouched B is evicted");
        assert!(!file_of(dir.path(), &b).exists(), "and its file is gone");
        assert!(cached_bytes(&cache, &c).is_some());
        assert!(cached_bytes(&cache, &d).is_some());

        // The checks above used A, then C, then D: A is now the least recently used.
        put_blob(&cache, &e, &blob(5, 1000));
        assert!(cached_bytes(&cache, &a).is_none());
        assert_eq!(
            cache.stats().unwrap(),
            ClearStats {
                entries: 3,
                bytes: 3000
            }
        );
        assert_eq!(files_on_disk(dir.path()).len(), 3);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_kept_and_pushes_out_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 2000).unwrap();
        put_blob(&cache, &key(1), &blob(1, 1000));
        put_blob(&cache, &key(2), &blob(2, 1000));
        put_blob(&cache, &key(3), &blob(3, 5000));
        assert!(
            cached_bytes(&cache, &key(3)).is_some(),
            "the job about to read it finds it"
        );
        assert_eq!(
            cache.stats().unwrap(),
            ClearStats {
                entries: 1,
                bytes: 5000
            }
        );
    }

    #[test]
    fn a_truncated_file_is_a_miss_and_its_row_goes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let png = engine_result();
        let k = key_for(&png, json!({}));
        put_blob(&cache, &k, &png);
        let file = file_of(dir.path(), &k);
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(png.len() as u64 / 2)
            .unwrap();
        assert_eq!(cache.get(&k).unwrap(), None, "a torn file is never served");
        assert_eq!(
            cache.stats().unwrap(),
            ClearStats::default(),
            "its row is gone"
        );
        assert!(!file.exists(), "and so is the torn file");
        // The next engine call can store it again.
        put_blob(&cache, &k, &png);
        assert!(cached_bytes(&cache, &k) == Some(png));
    }

    #[test]
    fn a_missing_file_is_a_miss_and_its_row_goes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let k = key(1);
        put_blob(&cache, &k, &blob(1, 4096));
        fs::remove_file(file_of(dir.path(), &k)).unwrap();
        assert_eq!(cache.get(&k).unwrap(), None);
        assert_eq!(cache.stats().unwrap().entries, 0);
    }

    #[test]
    fn a_damaged_index_cannot_reach_files_outside_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("photo.jpg");
        fs::write(&outside, b"not the cache's").unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = EditCache::open(&cache_dir, 512 * MIB).unwrap();
        let k = key(1);
        put_blob(&cache, &k, &blob(1, 100));
        cache
            .lock()
            .execute("UPDATE entries SET file = '../photo.jpg', bytes = 15", [])
            .unwrap();
        assert_eq!(cache.get(&k).unwrap(), None);
        assert_eq!(cache.stats().unwrap().entries, 0);
        assert_eq!(fs::read(&outside).unwrap(), b"not the cache's");
    }

    #[test]
    fn putting_a_key_again_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let k = key(1);
        put_blob(&cache, &k, &blob(1, 100));
        cache
            .put(
                &k,
                &blob(2, 200),
                "image/jpeg",
                10,
                20,
                "openai",
                "gpt-image-1",
            )
            .unwrap();
        let hit = cache.get(&k).unwrap().unwrap();
        assert_eq!(
            (hit.bytes, hit.mime.as_str(), hit.width, hit.height),
            (blob(2, 200), "image/jpeg", 10, 20)
        );
        assert_eq!(
            cache.stats().unwrap(),
            ClearStats {
                entries: 1,
                bytes: 200
            }
        );
        assert_eq!(
            files_on_disk(dir.path()).len(),
            1,
            "the old .png file went with its row"
        );
    }

    #[test]
    fn clear_removes_every_result() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        for n in 0..10 {
            put_blob(&cache, &key(n), &blob(n, 1000 + n as usize));
        }
        let stats = cache.clear().unwrap();
        assert_eq!(
            stats,
            ClearStats {
                entries: 10,
                bytes: 10 * 1000 + 45
            }
        );
        assert_eq!(cache.stats().unwrap(), ClearStats::default());
        assert!(files_on_disk(dir.path()).is_empty());
        for n in 0..10 {
            assert!(cache.get(&key(n)).unwrap().is_none());
        }
        put_blob(&cache, &key(1), &blob(1, 10));
        assert!(
            cached_bytes(&cache, &key(1)).is_some(),
            "usable after a clear"
        );
        assert_eq!(
            cache.clear().unwrap(),
            ClearStats {
                entries: 1,
                bytes: 10
            }
        );
    }

    #[test]
    fn four_threads_put_and_get_concurrently() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EditCache>();

        let dir = tempfile::tempdir().unwrap();
        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let k = |t: u64, i: u64| key(t * 1000 + i);
        let b = |t: u64, i: u64| blob(t * 1000 + i, 2000 + (t * 97 + i * 13) as usize % 5000);
        std::thread::scope(|s| {
            for t in 0..4 {
                let cache = &cache;
                s.spawn(move || {
                    for i in 0..40 {
                        put_blob(cache, &k(t, i), &b(t, i));
                        assert_eq!(cached_bytes(cache, &k(t, i)), Some(b(t, i)));
                        // Another thread's entry: absent so far, or exactly what it put.
                        let other = (t + 1) % 4;
                        if let Some(bytes) = cached_bytes(cache, &k(other, i)) {
                            assert_eq!(bytes, b(other, i));
                        }
                    }
                });
            }
        });
        for t in 0..4 {
            for i in 0..40 {
                assert_eq!(cached_bytes(&cache, &k(t, i)), Some(b(t, i)));
            }
        }
        assert_eq!(cache.stats().unwrap().entries, 160);
        assert_eq!(files_on_disk(dir.path()).len(), 160);
    }

    #[test]
    fn daemon_and_cli_handles_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let cli = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let png = engine_result();
        let k = key_for(&png, json!({}));
        put_blob(&daemon, &k, &png);
        assert_eq!(cli.stats().unwrap().entries, 1);
        assert!(cached_bytes(&cli, &k) == Some(png.clone()));
        put_blob(&cli, &key(2), &blob(2, 10));
        assert!(cached_bytes(&daemon, &key(2)).is_some());
        assert_eq!(cli.clear().unwrap().entries, 2);
        assert_eq!(
            daemon.get(&k).unwrap(),
            None,
            "the daemon sees the CLI's clear"
        );
    }

    #[test]
    fn puts_racing_clears_never_serve_wrong_bytes_or_leave_strays() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let cli = EditCache::open(dir.path(), 512 * MIB).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 0..120 {
                    put_blob(&daemon, &key(n % 30), &blob(n % 30, 3000));
                }
                done.store(true, Ordering::SeqCst);
            });
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if let Some(bytes) = cached_bytes(&daemon, &key(7)) {
                        assert_eq!(bytes, blob(7, 3000), "served bytes are always whole");
                    }
                }
            });
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    cli.clear().unwrap();
                    // Someone typing `luminary cache clear` in a loop, not a lock-hogging spin.
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        });
        // Whatever survived: every row has its whole file and every file has its row.
        let entries = daemon.stats().unwrap().entries;
        assert_eq!(files_on_disk(dir.path()).len() as u64, entries);
        for n in 0..30 {
            if let Some(bytes) = cached_bytes(&daemon, &key(n)) {
                assert_eq!(bytes, blob(n, 3000));
            }
        }
        assert_eq!(
            daemon.stats().unwrap().entries,
            entries,
            "no row lost its file"
        );
    }

    #[test]
    fn open_removes_what_a_killed_process_left() {
        let dir = tempfile::tempdir().unwrap();
        let kept = key(1);
        {
            let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
            put_blob(&cache, &kept, &blob(1, 100));
        }
        let shard = dir.path().join(&kept.as_str()[..2]);
        let me = std::process::id();
        // Written by a process that no longer exists (a pid above any pid_max).
        let dead = shard.join(format!("{TEMP_PREFIX}{}-0-{}", i32::MAX, kept.as_str()));
        // An old one whose pid may have been reused since.
        let old = shard.join(format!("{TEMP_PREFIX}{me}-900-{}", kept.as_str()));
        // A put still in flight in this very process (another handle): must survive.
        let live = shard.join(format!("{TEMP_PREFIX}{me}-901-{}", kept.as_str()));
        // A published file whose row was never committed (killed between rename and commit).
        let orphan = key(2);
        let orphan_file = file_of(dir.path(), &orphan);
        fs::create_dir_all(orphan_file.parent().unwrap()).unwrap();
        for f in [&dead, &old, &live, &orphan_file] {
            fs::write(f, b"half").unwrap();
        }
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();

        let cache = EditCache::open(dir.path(), 512 * MIB).unwrap();
        #[cfg(unix)]
        assert!(!dead.exists(), "temp file of a dead process is removed");
        assert!(!old.exists(), "stale temp file is removed");
        assert!(live.exists(), "a live writer's temp file is left alone");
        assert!(!orphan_file.exists(), "a file without a row is removed");
        assert!(cached_bytes(&cache, &kept) == Some(blob(1, 100)));
        assert!(cache.get(&orphan).unwrap().is_none());
    }

    #[test]
    fn a_newer_index_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        drop(EditCache::open(dir.path(), MIB).unwrap());
        Connection::open(dir.path().join("index.sqlite"))
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = EditCache::open(dir.path(), MIB)
            .err()
            .expect("newer schema refused");
        assert!(matches!(
            err,
            CacheError::NewerSchema {
                found: 99,
                known: SCHEMA_VERSION,
                ..
            }
        ));
        let message = err.to_string();
        assert!(
            message.contains("index.sqlite") && message.contains("Update Luminary"),
            "{message}"
        );
    }
}
