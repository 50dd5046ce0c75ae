//! The job journal: temporary files a job creates are recorded before they exist, so that
//! a daemon killed mid-job (power cut, SIGKILL, crash) leaves nothing behind once the next
//! daemon has started.
//!
//! Each entry is a small file `<pid>-<n>` in the data folder's `journal/` holding one path.
//! It is written the moment the temporary file exists (its random name is not known
//! before) and removed after the file was published or deleted. At start-up the daemon removes the files of entries whose process
//! is gone — but only files whose names Luminary itself generates (`.luminary-*.part`
//! outputs, `luminary-pixels-*` shared memory), so a corrupted entry can never delete a
//! photo.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Sets the journal folder for this process (the daemon does at start-up). Without it,
/// entries are not recorded (one-off commands clean up after themselves).
pub fn init(data_dir: &Path) {
    let dir = data_dir.join("journal");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = DIR.set(dir);
    }
}

/// One recorded temporary file; dropping it forgets the record.
pub struct Entry(Option<PathBuf>);

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Records that `temp` exists and must not outlive its job.
pub fn record(temp: &Path) -> Entry {
    let Some(dir) = DIR.get() else {
        return Entry(None);
    };
    let entry = dir.join(format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    match std::fs::write(&entry, temp.to_string_lossy().as_bytes()) {
        Ok(()) => Entry(Some(entry)),
        Err(_) => Entry(None),
    }
}

/// Whether `path` is a name Luminary generates for temporary files.
fn is_ours(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.starts_with(".luminary-") && name.ends_with(".part"))
        || name.starts_with("luminary-pixels-")
}

fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped by its parent) is dead for our purposes.
        return !stat.rsplit(") ").next().unwrap_or("").starts_with('Z');
    }
    #[cfg(unix)]
    {
        // Signal 0: does the process exist (EPERM also means it does).
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Removes what processes that died left behind. Returns the files removed.
pub fn recover() -> Vec<PathBuf> {
    let Some(dir) = DIR.get() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: u32 = name
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid != 0 && alive(pid) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            let temp = PathBuf::from(text.trim());
            if is_ours(&temp) && std::fs::remove_file(&temp).is_ok() {
                removed.push(temp);
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_luminary_temporary_names_are_ever_removed() {
        assert!(is_ours(Path::new("/photos/.luminary-abc.part")));
        assert!(is_ours(Path::new("/dev/shm/luminary-pixels-x1")));
        assert!(!is_ours(Path::new("/photos/IMG_0042.dng")));
        assert!(!is_ours(Path::new("/photos/.luminary-abc.tif")));
    }
}
