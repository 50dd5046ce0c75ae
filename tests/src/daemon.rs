//! A private Luminary environment per test: temporary XDG folders, the real binary, a real
//! daemon on a real socket, stopped when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A library built by this workspace (target/<profile>/), e.g. `dylib("misbehave")`.
pub fn dylib(name: &str) -> PathBuf {
    let bin = luminary_bin();
    let path = bin.parent().unwrap().join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Builds a plugin crate that lives outside the workspace (as a third party would build
/// it) and returns its library. All such builds share one target folder, so abi_stable is
/// compiled once.
pub fn build_external_plugin(manifest_dir: &Path, lib_name: &str) -> PathBuf {
    let target = luminary_bin()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("plugin-builds");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "-j2", "--manifest-path"])
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building {} failed:\n{}",
        manifest_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("debug").join(format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// The `luminary` binary built next to the test executable (target/<profile>/luminary).
pub fn luminary_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join(format!("luminary{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Temporary config, data, cache and runtime folders, and the daemon using them.
pub struct Env {
    /// Holds every folder; removed on drop.
    pub root: tempfile::TempDir,
    /// A folder for the test's photos and outputs.
    pub work: PathBuf,
}

// No `Default`: each `Env` makes temporary directories, which a default should not.
#[allow(clippy::new_without_default)]
impl Env {
    /// A fresh environment (no daemon yet: the first client starts it).
    pub fn new() -> Env {
        let root = tempfile::tempdir().expect("tempdir");
        for d in ["config", "data", "cache", "runtime", "work", "plugins"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.path().join("runtime"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
        }
        let work = root.path().join("work");
        Env { root, work }
    }

    /// The socket the daemon listens on.
    pub fn socket(&self) -> PathBuf {
        self.root.path().join("runtime/luminary/luminary.sock")
    }

    /// The config file the daemon reads.
    pub fn config_file(&self) -> PathBuf {
        self.root.path().join("config/luminary/config.toml")
    }

    /// The folder on `LUMINARY_PLUGIN_PATH` (empty unless a test installs plugins).
    pub fn plugin_dir(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// Copies a plugin library into the plugin folder (before the daemon starts).
    pub fn install_plugin(&self, lib: &Path) {
        std::fs::copy(lib, self.plugin_dir().join(lib.file_name().unwrap())).unwrap();
    }

    /// Writes config.toml (before the daemon starts).
    pub fn write_config(&self, text: &str) {
        let f = self.config_file();
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    /// A `luminary` command inside this environment.
    pub fn cmd(&self) -> Command {
        self.cmd_of(&luminary_bin())
    }

    /// Like [`Env::cmd`], for another `luminary` executable (an unpacked archive's).
    pub fn cmd_of(&self, exe: &Path) -> Command {
        let mut c = Command::new(exe);
        let r = self.root.path();
        c.env("XDG_CONFIG_HOME", r.join("config"))
            .env("XDG_DATA_HOME", r.join("data"))
            .env("XDG_CACHE_HOME", r.join("cache"))
            .env("XDG_RUNTIME_DIR", r.join("runtime"))
            .env_remove("LUMINARY_SOCKET")
            .env_remove("GEMINI_API_KEY")
            .env_remove("OPENAI_API_KEY")
            .env_remove("FAL_KEY")
            .env_remove("REPLICATE_API_TOKEN")
            .env_remove("LUMINARY_CONFIG")
            .env("LUMINARY_PLUGIN_PATH", r.join("plugins"))
            .current_dir(&self.work);
        c
    }

    /// Runs `luminary ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run luminary")
    }

    /// The daemon log.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("cache/luminary/daemon.log"))
            .unwrap_or_default()
    }

    /// Files in the work folder whose names start with `.` (temporary outputs).
    pub fn hidden_files(&self, dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cmd().arg("stop").output();
    }
}

/// Parses JSON lines printed by `--json`.
pub fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// The result lines (not progress) of `--json` output.
pub fn results(out: &[u8]) -> Vec<serde_json::Value> {
    json_lines(out)
        .into_iter()
        .filter(|v| v["type"] == "result")
        .collect()
}
