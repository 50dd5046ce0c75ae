//! The Windows build (x86_64-pc-windows-gnu), run for real under wine 10 (Debian 13): the
//! daemon starting itself behind a pipe, a file and a console; enhancing in folders with
//! every character cmd.exe and Windows make hard, and past MAX_PATH; plugin DLLs crashing in
//! their runners; the RAW decoder's Job Object; the named pipe's access list; `stop`; the
//! cache and ledger under `%LOCALAPPDATA%`.
//!
//! What wine cannot show is said in the test's output, not passed over: wine runs every
//! process as one user, so a refusal by the pipe's access list cannot happen here (the test
//! reads the access list back instead); and wine does not enforce a Job Object's memory
//! limit (the test checks that the decoder runs in a job with the limit set). Console
//! windows do not exist without a display, so "no console flashes" is held by the
//! creation flags (`spawn.rs`, `process::no_console_window`), not observed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use luminary_engines::mock::{MockKind, MockServer, TEST_KEY};
use luminary_tests::daemon::{json_lines, results};
use luminary_tests::wine::{walk, WinEnv};
use luminary_tests::*;
use serde_json::Value;

use super::fixtures;

/// Long enough for a first wine start in a fresh prefix plus the daemon's, on a busy
/// two-core machine.
const START: Duration = Duration::from_secs(120);
/// An enhance of a few photos under wine.
const JOB: Duration = Duration::from_secs(300);

fn status(env: &WinEnv) -> Value {
    let out = env.run(&["status", "--json"], START);
    assert!(
        out.status.success(),
        "status failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        env.stderr()
    );
    json_lines(&out.stdout).pop().expect("a status line")
}

fn daemon_pid(env: &WinEnv) -> u64 {
    status(env)["pid"].as_u64().expect("pid")
}

/// `luminary status --no-spawn` fails: no daemon serves.
fn no_daemon(env: &WinEnv) -> bool {
    !env.run(&["status", "--json", "--no-spawn"], START)
        .status
        .success()
}

fn stop(env: &WinEnv) {
    let out = env.run(&["stop"], START);
    assert!(out.status.success(), "stop failed: {}", env.stderr());
    // `stop` returns once the daemon said it is stopping; it then exits within its grace.
    let t = std::time::Instant::now();
    while !no_daemon(env) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the daemon still answers after stop"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `luminary.exe enhance --json --preset PRESET SRC --out OUT` (Windows paths).
fn enhance_to(env: &WinEnv, preset: &str, src: &str, out: &str) -> std::process::Output {
    env.run(
        &["enhance", "--json", "--preset", preset, src, "--out", out],
        JOB,
    )
}

fn copy(src: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

/// Point 1 and 2: the client that starts the daemon returns whether its standard output is
/// a pipe (GIMP, darktable), a file, or a console; `stop` ends the daemon each time.
#[test]
fn windows_the_starting_call_returns_behind_a_pipe_a_file_and_a_console() {
    let env = WinEnv::new();
    // A pipe: `run` reads standard output to its end, as an editor does.
    let s = status(&env);
    assert!(
        s["socket"]
            .as_str()
            .unwrap()
            .starts_with(r"\\.\pipe\luminary-"),
        "{s}"
    );
    let pid = s["pid"].as_u64().unwrap();
    assert_eq!(
        daemon_pid(&env),
        pid,
        "a second call started a second daemon"
    );
    let log = env.daemon_log();
    assert!(log.contains(r"serving on \\.\pipe\luminary-"), "{log}");
    stop(&env);

    // A file.
    let file = env.root.path().join("status.json");
    let status_out = env
        .cmd(&["status", "--json"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(status_out.success(), "{}", env.stderr());
    let v = json_lines(&std::fs::read(&file).unwrap()).pop().unwrap();
    assert!(v["pid"].as_u64().unwrap() != pid, "{v}");
    stop(&env);

    // A console: standard input, output and error a terminal (`script` gives a pty; wine
    // then runs the program on a console), read through `script`'s own pipe.
    let mut inner = env.cmd(&["status", "--json"]);
    let line = shell_line(&inner);
    inner.stdin(Stdio::null());
    let out = run_with_deadline(
        std::process::Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        START,
    );
    assert!(
        out.status.success(),
        "on a console: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"pid\""), "{text}");
    stop(&env);
    assert!(
        env.daemon_log().matches("stopped").count() >= 3,
        "{}",
        env.daemon_log()
    );
    println!(
        "no console window: held by the creation flags (DETACHED_PROCESS | CREATE_NO_WINDOW for \
         the daemon, CREATE_NO_WINDOW for plugin runners and RAW decoders); wine without a \
         display shows no windows, so a flash cannot be observed here"
    );
}

/// A command as one `sh -c` line, every word quoted.
fn shell_line(cmd: &std::process::Command) -> String {
    let q = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut line = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            line.push_str(&format!("{}={} ", k.to_string_lossy(), q(v)));
        }
    }
    line.push_str(&q(cmd.get_program()));
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&q(a));
    }
    line
}

fn run_with_deadline(cmd: &mut std::process::Command, within: Duration) -> std::process::Output {
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: a plain kill of our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("did not end within {within:?}");
        }
    }
}

/// Points 1 and 6: a DNG, a TIFF and a JPEG enhanced in a folder whose name has spaces,
/// unicode, `&`, `%`, `^` and `!`, and one past 260 characters; output names keep the
/// originals' stems as written, `--out` is honoured, and the originals are untouched.
#[test]
fn windows_enhances_in_folders_with_awkward_names_and_keeps_names_as_written() {
    let f = fixtures();
    let env = WinEnv::new();
    let photos = env
        .profile()
        .join("Pictures/Hochzeit 100%USERNAME% & Co ^ (1)! Ωmega");
    let dng = copy(
        &f.dng_grbg_12,
        &photos,
        "Braut & Bräutigam 2024.05.01 (1).dng",
    );
    let tiff = copy(&f.tiff16, &photos, "IMG_0042.edit.v2.tif");
    let jpeg = copy(&f.jpeg_rot, &photos, "Handy 50% ^Kopie^!.jpg");
    // Past MAX_PATH: nested folders, the whole path over 260 characters.
    let mut deep = env.profile().join("Pictures");
    while deep.to_string_lossy().len() < 280 {
        deep = deep.join("Ein sehr langer Ordnername für das Archiv 2024");
    }
    let deep_dng = copy(&f.dng_grbg_12, &deep, "DSC_1234.dng");
    assert!(env.win_path(&deep_dng).len() > 260);
    let originals: Vec<(PathBuf, (u64, u64))> = [&dng, &tiff, &jpeg, &deep_dng]
        .iter()
        .map(|p| (p.to_path_buf(), fingerprint(p)))
        .collect();

    let args: Vec<String> = [&dng, &tiff, &jpeg, &deep_dng]
        .iter()
        .map(|p| env.win_path(p))
        .collect();
    let mut all = vec!["enhance", "--json", "--preset", "warm-film"];
    all.extend(args.iter().map(String::as_str));
    let out = env.run(&all, JOB);
    let res = results(&out.stdout);
    assert!(
        out.status.success() && res.len() == 4,
        "{}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        env.stderr(),
        env.daemon_log()
    );
    let expect = [
        (
            &photos,
            "Braut & Bräutigam 2024.05.01 (1)-luminary-warm-film.tif",
        ),
        (&photos, "IMG_0042.edit.v2-luminary-warm-film.tif"),
        (&photos, "Handy 50% ^Kopie^!-luminary-warm-film.tif"),
        (&deep, "DSC_1234-luminary-warm-film.tif"),
    ];
    for (dir, name) in expect {
        let p = dir.join(name);
        assert!(
            p.is_file(),
            "{} was not written; results: {res:?}",
            p.display()
        );
        let img = image::open(&p).unwrap();
        assert!(
            img.width() >= 1200,
            "{name}: {}×{}",
            img.width(),
            img.height()
        );
        // Each result names its output as Windows writes it.
        assert!(
            res.iter()
                .any(|r| r["output"].as_str() == Some(env.win_path(&p).as_str())),
            "{name} not among {res:?}"
        );
    }
    // The JPEG was stored sideways (EXIF orientation 6): its result is upright.
    let j = image::open(photos.join("Handy 50% ^Kopie^!-luminary-warm-film.tif")).unwrap();
    let up = &f.jpeg_upright;
    assert_eq!(
        (j.width() as usize, j.height() as usize),
        (up.width, up.height),
        "not upright"
    );

    // --out as given, with characters Windows cannot hold replaced: `:` and `?`.
    let out_name = photos.join("final 0.5 (v2).tif");
    let out = enhance_to(
        &env,
        "bw-classic",
        &env.win_path(&dng),
        &env.win_path(&out_name),
    );
    assert!(out.status.success(), "{}", env.stderr());
    assert!(out_name.is_file(), "{:?}", results(&out.stdout));
    let out = enhance_to(
        &env,
        "bw-classic",
        &env.win_path(&dng),
        &env.win_path(&out_name),
    );
    assert!(out.status.success(), "{}", env.stderr());
    assert!(
        photos.join("final 0.5 (v2)-2.tif").is_file(),
        "no-clobber name: {:?}",
        results(&out.stdout)
    );
    // A reserved device name would open the console, not a file: it gets an underscore.
    let con = format!(r"{}\CON.tif", env.win_path(&photos));
    let out = enhance_to(&env, "bw-classic", &env.win_path(&tiff), &con);
    assert!(out.status.success(), "{}", env.stderr());
    assert!(
        photos.join("CON_.tif").is_file(),
        "{:?}",
        results(&out.stdout)
    );
    for (p, print) in originals {
        assert_eq!(fingerprint(&p), print, "{} changed", p.display());
    }
    // Nothing half-written is left beside the results.
    let leftovers: Vec<_> = walk(&photos)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Point 1: a plugin DLL that crashes in its runner fails only its own job; the daemon
/// and the other plugins go on.
#[test]
fn windows_a_crashing_plugin_dll_fails_only_its_own_job() {
    let f = fixtures();
    let mut env = WinEnv::new();
    let plugins = env.c_drive().join("Luminary Plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        luminary_tests::wine::windows_build().join("misbehave.dll"),
        plugins.join("misbehave.dll"),
    )
    .unwrap();
    env.env
        .push(("LUMINARY_PLUGIN_PATH", env.win_path(&plugins)));
    env.env.push(("LUMINARY_LOG", "debug".into()));
    let dir = env.profile().join("Pictures");
    let tiff = copy(&f.tiff16, &dir, "scan.tif");
    let pid = daemon_pid(&env);
    let presets = env.run(&["presets", "--json"], START);
    let text = String::from_utf8_lossy(&presets.stdout);
    assert!(
        text.contains("\"segfault\"") && text.contains("\"warm-film\""),
        "{text}"
    );

    for bad in ["segfault", "exit", "panic"] {
        let out = env.run(
            &["enhance", "--json", "--preset", bad, &env.win_path(&tiff)],
            JOB,
        );
        let r = &results(&out.stdout)[0];
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["code"], "plugin_failed", "{r}");
        let msg = r["message"].as_str().unwrap();
        assert!(msg.contains("test.misbehave"), "{msg}");
        if bad == "segfault" {
            // The access violation, in the words the runner's exit code gives.
            assert!(
                msg.contains("crashed (access violation, 0xc0000005)"),
                "{msg}"
            );
        }
    }
    // The daemon is the same, and the first-party plugins still work.
    assert_eq!(daemon_pid(&env), pid);
    let out = env.run(
        &[
            "enhance",
            "--json",
            "--preset",
            "warm-film",
            &env.win_path(&tiff),
        ],
        JOB,
    );
    assert_eq!(results(&out.stdout)[0]["ok"], true, "{}", env.daemon_log());
    let fine = env.run(
        &[
            "enhance",
            "--json",
            "--preset",
            "fine",
            &env.win_path(&tiff),
        ],
        JOB,
    );
    assert_eq!(
        results(&fine.stdout)[0]["ok"],
        true,
        "the plugin's runner was not restarted"
    );

    // A pixel function's shared buffer, kept between photos, goes once the daemon is idle:
    // the runner unmaps it before the daemon deletes the file, which Windows refuses while
    // a view of it is open. Nothing may be left in the temp folder.
    let tiff8 = copy(&f.tiff8, &dir, "scan8.tif");
    for src in [&tiff, &tiff8] {
        let out = env.run(
            &[
                "enhance",
                "--json",
                "--preset",
                "pixels-sepia",
                &env.win_path(src),
            ],
            JOB,
        );
        assert_eq!(results(&out.stdout)[0]["ok"], true, "{}", env.daemon_log());
    }
    let pixel_files = || -> Vec<PathBuf> {
        walk(&env.c_drive())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("luminary-pixels-"))
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let released = |log: &str| log.contains("idle: released 1 plugin pixel buffer");
    while !(released(&env.daemon_log()) && pixel_files().is_empty())
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = env.daemon_log();
    assert!(
        released(&log),
        "the kept pixel buffer was not released:\n{log}"
    );
    assert!(
        pixel_files().is_empty(),
        "left in the temp folder: {:?}",
        pixel_files()
    );
}

/// Point 1: RAWs decode in a decoder process inside a Job Object with the memory limit of
/// `limits.decode_memory_mb` (and without a console window); a crafted RAW whose header
/// claims a huge image fails its own job only.
#[test]
fn windows_the_raw_decoder_runs_in_a_job_object_with_its_memory_limit() {
    let f = fixtures();
    let env = WinEnv::new();
    let config = env
        .profile()
        .join("AppData/Roaming/Luminary/luminary/config/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        "[limits]\ndecode_memory_mb = 16\ndecode_timeout_s = 60\n",
    )
    .unwrap();
    let mut env = env;
    env.env.push(("LUMINARY_LOG", "info,luminary=debug".into()));
    let dir = env.profile().join("Pictures");
    let dng = copy(&f.dng_grbg_12, &dir, "DSC_1234.dng");
    let pid = daemon_pid(&env);
    let out = env.run(
        &["enhance", "--json", "--preset", "auto", &env.win_path(&dng)],
        JOB,
    );
    let r = results(&out.stdout).pop().expect("a result");
    let log = env.daemon_log();
    // The decoder waits until it is inside its job before it reads the file, so a decode
    // that finished ran confined; the log names the job and the limit set on it.
    assert!(
        log.contains("runs in job Local\\luminary-decoder-")
            && log.contains("memory limit 16 MB set"),
        "the decoder did not run in a job with the configured limit:\n{log}"
    );
    assert!(log.contains("raw decode in a child"), "{log}");
    if r["ok"] == false {
        // A system that enforces the limit: 12 MP of 16-bit samples alone are 24 MB.
        assert_eq!(r["code"], "too_large", "{r}");
        assert!(
            r["message"]
                .as_str()
                .unwrap()
                .contains("limits.decode_memory_mb"),
            "{r}"
        );
    } else {
        assert!(
            log.contains("the system reports no memory limit"),
            "the system reports the limit but did not enforce it:\n{log}"
        );
        println!(
            "wine 10 neither keeps nor enforces a Job Object's limits (it reports none back): \
             checked that the decoder runs inside its job with 16 MB set, not that the limit \
             stops it"
        );
    }
    assert_eq!(daemon_pid(&env), pid, "the daemon was restarted");
    // No decoder is left: the job ends with its decoder.
    let s = status(&env);
    assert_eq!(s["jobs_running"], 0, "{s}");
}

/// Points 1 and 7 (Windows): the pipe's access list names only the current user; a client
/// killed in the middle of a call does not stop the daemon from serving the next ones.
#[test]
fn windows_the_pipe_admits_only_its_user_and_survives_a_killed_client() {
    let f = fixtures();
    let env = WinEnv::new();
    let s = status(&env);
    let access = s["socket_access"].as_str().unwrap_or_default().to_string();
    // D:P — protected, nothing inherited; one allow entry (full access) for one SID.
    assert!(access.starts_with("D:P(A;;"), "{s}");
    assert_eq!(access.matches("(A;").count(), 1, "{access}");
    assert!(access.contains(";;;S-1-5-21-"), "not a user SID: {access}");
    println!(
        "pipe access list: {access}; wine runs every process as the same user, so a refusal \
         of another user cannot be shown here"
    );

    // A client killed while its job runs, twice; then the daemon still serves.
    let pid = s["pid"].as_u64().unwrap();
    let dir = env.profile().join("Pictures");
    // A name no other test uses: the clients are found by it below.
    let dng = copy(&f.dng_grbg_12, &dir, "Killed Client.dng");
    for _ in 0..2 {
        let mut child = env
            .cmd(&["enhance", "--json", "--preset", "auto", &env.win_path(&dng)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Wait for its first progress line: it is connected and its job runs.
        let mut first = [0u8; 1];
        let _ = std::io::Read::read(&mut stdout, &mut first);
        // SAFETY: a plain kill of our own child (wine-run → wine → luminary.exe, one
        // process group under unshare's exec chain).
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        kill_windows_clients("Killed Client.dng");
        drop(stdout);
    }
    for _ in 0..3 {
        assert_eq!(daemon_pid(&env), pid, "the daemon stopped serving");
    }
    stop(&env);
}

/// Ends every `luminary.exe enhance` client whose command line names `photo` (a client
/// whose wine-run was killed lives on as a wine process until its pipe breaks). Tests run
/// in parallel: the photo's name is this test's own.
fn kill_windows_clients(photo: &str) {
    let mut sys = std::process::Command::new("ps");
    sys.args(["-eo", "pid=,args="]);
    let out = sys.output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.contains("luminary.exe") && line.contains("enhance") && line.contains(photo) {
            if let Some(pid) = line
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
            {
                // SAFETY: a kill of a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Point 1: the edit cache and the usage ledger live under `%LOCALAPPDATA%`, and an AI
/// edit is paid once.
#[test]
fn windows_cache_and_ledger_live_under_localappdata() {
    let f = fixtures();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let mut env = WinEnv::new();
    let config = env
        .profile()
        .join("AppData/Roaming/Luminary/luminary/config/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[engines.gemini]\nbase_url = \"{}\"\nprice_per_image = 0.04\nconnect_timeout_s = 5\n",
            mock.base_url
        ),
    )
    .unwrap();
    env.env.push(("GEMINI_API_KEY", TEST_KEY.into()));
    let dir = env.profile().join("Pictures");
    let tiff = copy(&f.tiff16, &dir, "scan.tif");
    let mut costs = Vec::new();
    for intensity in ["1", "0.5"] {
        let out = env.run(
            &[
                "enhance",
                "--json",
                "--preset",
                "warm-film",
                "--engine",
                "gemini",
                "--intensity",
                intensity,
                &env.win_path(&tiff),
            ],
            JOB,
        );
        let r = results(&out.stdout).pop().expect("a result");
        assert_eq!(r["ok"], true, "{r}\n{}", env.daemon_log());
        costs.push((r["cached"].clone(), r["cost"].as_f64().unwrap()));
    }
    assert_eq!(
        mock.billed(),
        1,
        "the second intensity called the engine again"
    );
    assert_eq!(costs[0].0, false);
    assert_eq!(costs[1], (Value::Bool(true), 0.0));
    let local = env.local_app_data();
    let files: Vec<String> = walk(&local.join("Luminary"))
        .iter()
        .map(|p| {
            p.strip_prefix(&local)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        files.iter().any(|p| p.ends_with("usage.sqlite"))
            && files.iter().any(|p| p.contains("cache")),
        "cache and ledger not under %LOCALAPPDATA%: {files:?}"
    );
    let roaming: Vec<PathBuf> = walk(&env.profile().join("AppData/Roaming/Luminary"))
        .into_iter()
        .filter(|p| !p.ends_with("config.toml"))
        .collect();
    assert!(
        roaming.is_empty(),
        "state in the roaming profile: {roaming:?}"
    );
    let usage = env.run(&["usage", "--json"], START);
    let text = String::from_utf8_lossy(&usage.stdout);
    assert!(text.contains("gemini"), "{text}");
}
