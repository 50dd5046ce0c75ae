//! The Windows build, run for real under wine 10 (Debian 13, in the chroot that
//! `scripts/wine-chroot` caches): a private Windows user per test, with its own wine prefix
//! (so `%LOCALAPPDATA%`, where Luminary keeps its cache and ledger, starts empty), the
//! `luminary.exe` and plugin DLLs that `scripts/windows-build` made, and photos on its C:
//! drive.
//!
//! Every run goes through `scripts/wine-run`, which binds the test's folder into the chroot
//! at the same path. Wine gives every process it starts the standard error of the first
//! one, the daemon too, so standard error always goes to a file here: a test that waits on
//! a pipe waits only on standard output, as an editor does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// Runs a script that prints one path, or says why it could not.
fn script_path(var: &str, script: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(scripts().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{script} failed (the Windows tests need it; scripts/test runs it first)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The folder with the Windows build (`LUMINARY_WINDOWS_BUILD`, else `scripts/windows-build`).
pub fn windows_build() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = script_path("LUMINARY_WINDOWS_BUILD", "windows-build");
        assert!(
            dir.join("luminary.exe").is_file(),
            "no luminary.exe in {}",
            dir.display()
        );
        dir
    })
}

/// The wine chroot (`LUMINARY_WINE_ROOT`, else `scripts/wine-chroot`).
pub fn wine_root() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| script_path("LUMINARY_WINE_ROOT", "wine-chroot"))
}

/// A prefix made once per test run (`wineboot`, ~10 s) and copied for each test (~1 s).
fn template_prefix() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // A static is never dropped, so each run's template outlives it (~0.8 GB): the
        // templates of test processes that are gone are removed here.
        for e in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("luminary-wine-template-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir =
            std::env::temp_dir().join(format!("luminary-wine-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("prefix");
        let out = wine_command(&dir, &prefix, &[])
            .args(["wineboot", "-i"])
            .stdin(Stdio::null())
            .output()
            .expect("wine-run");
        // wineboot starts wineserver, which lives on for a few seconds: stop it so the
        // copies start from a quiet prefix.
        kill_wineserver(&prefix);
        assert!(
            prefix.join("drive_c/users").is_dir(),
            "wineboot made no prefix: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        prefix
    })
}

/// `scripts/wine-run --bind DIR --env … --` with `prefix`; the program and its arguments
/// are added by the caller.
fn wine_command(bind: &Path, prefix: &Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new("bash");
    c.arg(scripts().join("wine-run"))
        .arg("--bind")
        .arg(bind)
        .env("WINEPREFIX", prefix)
        .env("LUMINARY_WINE_ROOT", wine_root());
    for (k, v) in env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    c.arg("--");
    c
}

fn kill_wineserver(prefix: &Path) {
    let _ = Command::new("chroot")
        .arg(wine_root())
        .args(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin"])
        .arg(format!("WINEPREFIX={}", prefix.display()))
        .args(["wineserver", "-k"])
        .output();
}

/// One Windows user: a wine prefix of its own, `luminary.exe` and the first-party plugin
/// DLLs in `C:\Program Files\Luminary`, and a C: drive for photos.
pub struct WinEnv {
    /// Holds everything; removed on drop, after wineserver and its processes are gone.
    pub root: tempfile::TempDir,
    prefix: PathBuf,
    /// Extra variables for every run (`LUMINARY_PLUGIN_PATH`, …).
    pub env: Vec<(&'static str, String)>,
}

// No `Default`: each `WinEnv` makes a temporary user, which a default should not.
#[allow(clippy::new_without_default)]
impl WinEnv {
    /// A fresh user (no daemon yet: the first client starts it).
    pub fn new() -> WinEnv {
        let root = tempfile::Builder::new()
            .prefix("luminary-wine-")
            .tempdir()
            .unwrap();
        let prefix = root.path().join("prefix");
        let status = Command::new("cp")
            .arg("-a")
            .arg(template_prefix())
            .arg(&prefix)
            .status()
            .unwrap();
        assert!(status.success(), "copying the wine prefix");
        let env = WinEnv {
            root,
            prefix,
            env: Vec::new(),
        };
        let bin = env.c_drive().join("Program Files/Luminary");
        std::fs::create_dir_all(&bin).unwrap();
        for entry in std::fs::read_dir(windows_build()).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let first_party =
                name == "luminary.exe" || (name.starts_with("luminary_") && name.ends_with(".dll"));
            if first_party {
                std::fs::copy(&p, bin.join(&name)).unwrap();
            }
        }
        env
    }

    /// The C: drive, as a Linux path.
    pub fn c_drive(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }

    /// The Windows user's profile folder (`C:\users\root`), as a Linux path.
    pub fn profile(&self) -> PathBuf {
        self.c_drive().join("users/root")
    }

    /// `%LOCALAPPDATA%`, as a Linux path.
    pub fn local_app_data(&self) -> PathBuf {
        self.profile().join("AppData/Local")
    }

    /// A Linux path under the C: drive as Windows writes it (`C:\…`).
    pub fn win_path(&self, linux: &Path) -> String {
        let rel = linux
            .strip_prefix(self.c_drive())
            .unwrap_or_else(|_| panic!("{} is not on C:", linux.display()));
        let mut s = String::from("C:");
        for part in rel.components() {
            s.push('\\');
            s.push_str(&part.as_os_str().to_string_lossy());
        }
        if s == "C:" {
            s.push('\\');
        }
        s
    }

    /// `luminary.exe ARGS…`, not yet started. Standard error goes to a file of this test
    /// (see the module documentation); standard input is empty.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.program(r"C:\Program Files\Luminary\luminary.exe", args)
    }

    /// Like [`WinEnv::cmd`], for the Windows program at `exe` (a `C:\…` path).
    pub fn program(&self, exe: &str, args: &[&str]) -> Command {
        let mut c = wine_command(self.root.path(), &self.prefix, &self.env);
        c.arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stderr(self.stderr_file());
        c
    }

    fn stderr_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("stderr.txt"))
            .unwrap()
    }

    /// What every run wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.root.path().join("stderr.txt")).unwrap_or_default()
    }

    /// Runs `luminary.exe ARGS…` with standard output read through a pipe, as an editor
    /// does; fails the test if it does not end within `within`.
    pub fn run(&self, args: &[&str], within: Duration) -> Output {
        let mut child = self.cmd(args).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
            v
        });
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let stdout = reader.join().unwrap();
                return Output {
                    status,
                    stdout,
                    stderr: self.stderr().into_bytes(),
                };
            }
            if t.elapsed() > within {
                let _ = child.kill();
                panic!(
                    "luminary.exe {args:?} did not end within {within:?}; stderr:\n{}\ndaemon log:\n{}",
                    self.stderr(),
                    self.daemon_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log (`%LOCALAPPDATA%\luminary\cache\daemon.log` or wherever
    /// `luminary status` says it is).
    pub fn daemon_log(&self) -> String {
        let mut found = String::new();
        for dir in [
            self.local_app_data(),
            self.profile().join("AppData/Roaming"),
        ] {
            for entry in walk(&dir) {
                if entry.file_name().is_some_and(|n| n == "daemon.log") {
                    found.push_str(&std::fs::read_to_string(&entry).unwrap_or_default());
                }
            }
        }
        found
    }
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

impl Drop for WinEnv {
    fn drop(&mut self) {
        // `stop` lets the daemon remove its own files; wineserver -k ends whatever is left
        // (and wineserver itself) before the folder goes.
        let _ = self.cmd(&["stop"]).stdout(Stdio::null()).status();
        kill_wineserver(&self.prefix);
    }
}
