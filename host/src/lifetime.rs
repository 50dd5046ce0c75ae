//! What a daemon owns and what ends it: the per-user lock, the socket file it created,
//! and idleness.
//!
//! A daemon must never outlive its purpose. logind removes `XDG_RUNTIME_DIR` at logout,
//! and a test may delete its sandbox, taking the socket and the lock file with them. Such
//! a daemon can no longer be reached, and a second daemon can take a fresh lock beside it.
//! So the daemon watches both files: when either is gone or is no longer the one it
//! created, it stops. And it never removes a socket or lock file that is not its own,
//! so a stopping daemon cannot pull the floor from under its successor.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another daemon holds it (it may be stopping).
    #[error("another Luminary daemon (pid {pid}) already serves {socket}")]
    Held {
        /// The holder's process id, as it wrote it.
        pid: String,
        /// The socket it serves.
        socket: String,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot use the daemon lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The exit code of `luminary serve` when another daemon holds the lock, so that a client
/// that started this one knows to connect to that daemon (or wait for it to stop).
pub const EXIT_ALREADY_SERVING: i32 = 75;

/// A file's identity: the same path may later name another file. Device and inode, plus
/// the status-change time, because a file system hands a freed inode number straight to
/// the next file created (ext4 does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
    #[cfg(unix)]
    ctime: (i64, i64),
}

impl Identity {
    /// The identity of the file at `path` now, if there is one.
    pub fn of_path(path: &Path) -> Option<Identity> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| Identity::of(&m))
    }

    fn of(meta: &std::fs::Metadata) -> Identity {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Identity {
                dev: meta.dev(),
                ino: meta.ino(),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Identity {}
        }
    }
}

/// The per-user daemon lock: a second daemon for the same socket refuses to start.
pub struct DaemonLock {
    file: File,
    path: PathBuf,
    id: Identity,
}

impl DaemonLock {
    /// Takes the lock next to the socket (on Windows, where a pipe name is no file path,
    /// in the temporary folder), or says which process already serves.
    pub fn take(socket: &str) -> Result<DaemonLock, LockError> {
        #[cfg(not(windows))]
        let path = PathBuf::from(format!("{socket}.lock"));
        #[cfg(windows)]
        let path =
            std::env::temp_dir().join(format!("{}.lock", socket.trim_start_matches(r"\\.\pipe\")));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LockError::Held {
                    pid: pid.trim().to_string(),
                    socket: socket.to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        (&file)
            .write_all(std::process::id().to_string().as_bytes())
            .map_err(io)?;
        let id = Identity::of(&file.metadata().map_err(io)?);
        Ok(DaemonLock { file, path, id })
    }

    /// Whether the lock file at its path is still the one this daemon holds. On Windows
    /// an open file cannot be deleted, so it always is.
    pub fn still_ours(&self) -> bool {
        cfg!(not(unix)) || Identity::of_path(&self.path) == Some(self.id)
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// The socket file this daemon created (on Windows a pipe, which ends with the process).
pub struct OwnedSocket {
    #[cfg(unix)]
    path: PathBuf,
    #[cfg(unix)]
    id: Option<Identity>,
}

impl OwnedSocket {
    /// Remembers the socket just created at `socket`.
    pub fn created(socket: &str) -> OwnedSocket {
        #[cfg(unix)]
        {
            let path = PathBuf::from(socket);
            let id = Identity::of_path(&path);
            OwnedSocket { path, id }
        }
        #[cfg(not(unix))]
        {
            let _ = socket;
            OwnedSocket {}
        }
    }

    /// Whether the socket file is still there and still ours.
    pub fn still_ours(&self) -> bool {
        #[cfg(unix)]
        {
            self.id.is_some() && Identity::of_path(&self.path) == self.id
        }
        #[cfg(not(unix))]
        {
            true
        }
    }

    /// Removes the socket file, if it is still ours.
    pub fn remove(&self) {
        #[cfg(unix)]
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why a daemon decided to stop by itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Reason {
    /// The socket file was removed or replaced: nobody can reach this daemon.
    SocketGone,
    /// The lock file was removed or replaced: another daemon may take (or hold) it.
    LockGone,
    /// No client and no job for `[daemon] idle_exit_s`.
    Idle,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::SocketGone => "its socket file was removed or replaced",
            Reason::LockGone => "its lock file was removed or replaced",
            Reason::Idle => "it was idle for [daemon] idle_exit_s",
        })
    }
}

/// Whether the daemon should stop: `idle_for` is how long it has had no connection and
/// no job (`None` while it has some), `idle_exit_s` the configured limit (0: never).
pub fn should_stop(
    lock: &DaemonLock,
    socket: &OwnedSocket,
    idle_for: Option<std::time::Duration>,
    idle_exit_s: f64,
) -> Option<Reason> {
    if !socket.still_ours() {
        return Some(Reason::SocketGone);
    }
    if !lock.still_ours() {
        return Some(Reason::LockGone);
    }
    match idle_for {
        Some(t) if idle_exit_s > 0.0 && t.as_secs_f64() >= idle_exit_s => Some(Reason::Idle),
        _ => None,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock").to_string_lossy().into_owned();
        let first = DaemonLock::take(&socket).unwrap();
        match DaemonLock::take(&socket) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {:?}", other.map(|_| ())),
        }
        drop(first);
        assert!(!Path::new(&format!("{socket}.lock")).exists());
        DaemonLock::take(&socket).unwrap();
    }

    #[test]
    fn a_replaced_lock_or_socket_is_noticed_and_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let s = socket.to_string_lossy().into_owned();
        std::fs::write(&socket, b"").unwrap();
        let lock = DaemonLock::take(&s).unwrap();
        let owned = OwnedSocket::created(&s);
        assert_eq!(should_stop(&lock, &owned, None, 0.0), None);
        assert_eq!(
            should_stop(&lock, &owned, Some(Duration::from_secs(5)), 4.0),
            Some(Reason::Idle)
        );
        assert_eq!(
            should_stop(&lock, &owned, Some(Duration::from_secs(5)), 0.0),
            None
        );

        // Another daemon's lock in its place: noticed, and left alone on drop.
        let lock_path = dir.path().join("s.sock.lock");
        std::fs::remove_file(&lock_path).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let other = DaemonLock::take(&s).unwrap();
        assert_eq!(
            should_stop(&lock, &owned, None, 0.0),
            Some(Reason::LockGone)
        );
        drop(lock);
        assert!(lock_path.exists(), "the successor's lock file was removed");
        assert!(other.still_ours());

        // Another daemon's socket in its place: noticed, and left alone. (Time stamps are
        // coarse: a file made in the same few milliseconds, in the same inode, would look
        // the same; a successor daemon takes far longer to start.)
        std::fs::remove_file(&socket).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(&socket, b"").unwrap();
        assert_eq!(
            should_stop(&other, &owned, None, 0.0),
            Some(Reason::SocketGone)
        );
        owned.remove();
        assert!(socket.exists(), "the successor's socket was removed");
    }
}
