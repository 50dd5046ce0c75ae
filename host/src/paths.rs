//! Where Luminary keeps things: config, data, cache, and the daemon's socket.
//!
//! Resolved through `directories`, so the XDG variables move them on Linux (tests point
//! them at temporary folders). Explicit overrides win: `--config`/`LUMINARY_CONFIG`,
//! `--socket`/`LUMINARY_SOCKET`.

use std::path::PathBuf;

use anyhow::Context;
use directories::ProjectDirs;

/// This program's own executable. `current_exe` needs /proc on Linux, which a chroot may
/// lack (GIMP 3 runs in one in our tests), so fall back to argv[0] and then to PATH.
pub fn self_exe() -> std::io::Result<PathBuf> {
    if let Ok(p) = std::env::current_exe() {
        return Ok(p);
    }
    let arg0 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_default();
    if arg0.components().count() > 1 {
        return std::path::absolute(&arg0);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&arg0);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "cannot find the luminary executable",
    ))
}

/// The resolved locations for one process.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `config.toml`.
    pub config_file: PathBuf,
    /// Persistent data: plugins, job journal, usage ledger. On Windows under
    /// `%LOCALAPPDATA%`, not the roaming profile: SQLite files must not be synced to a
    /// domain server at logoff, and they belong to this machine's daemon.
    pub data_dir: PathBuf,
    /// Cache: edited previews, daemon log.
    pub cache_dir: PathBuf,
    /// Unix socket path, or pipe name on Windows.
    pub socket: String,
}

fn project() -> anyhow::Result<ProjectDirs> {
    ProjectDirs::from("photo", "Luminary", "luminary").context("cannot determine the home folder")
}

/// Default socket location: the user's runtime dir, else a per-user folder in the temp dir.
fn default_socket(dirs: &ProjectDirs) -> String {
    #[cfg(windows)]
    {
        let _ = dirs;
        let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
        format!(r"\\.\pipe\luminary-{user}")
    }
    #[cfg(not(windows))]
    {
        let dir = match dirs.runtime_dir() {
            Some(d) => d.to_path_buf(),
            // macOS has no runtime dir; its temp dir is already per user. Elsewhere add
            // the uid so users never share a folder.
            None => std::env::temp_dir().join(format!("luminary-{}", unsafe { libc::geteuid() })),
        };
        dir.join("luminary.sock").to_string_lossy().into_owned()
    }
}

impl Paths {
    /// Resolves every location, applying the overrides given.
    pub fn resolve(config: Option<PathBuf>, socket: Option<String>) -> anyhow::Result<Paths> {
        let dirs = project()?;
        let config_file = config
            .or_else(|| std::env::var_os("LUMINARY_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| dirs.config_dir().join("config.toml"));
        let socket = socket
            .or_else(|| {
                std::env::var("LUMINARY_SOCKET")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| default_socket(&dirs));
        Ok(Paths {
            config_file,
            // data_local_dir is data_dir everywhere but Windows.
            data_dir: dirs.data_local_dir().to_path_buf(),
            cache_dir: dirs.cache_dir().to_path_buf(),
            socket,
        })
    }

    /// The daemon's log file (daemons started by a client have no terminal).
    pub fn log_file(&self) -> PathBuf {
        self.cache_dir.join("daemon.log")
    }
}
