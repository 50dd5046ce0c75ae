//! Hardening: signals, kills at every stage, limits, and many clients at once.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::linux_helpers::{frame, wait_gone};
use luminary_tests::daemon::{results, Env};
use luminary_tests::fingerprint;
use serde_json::{json, Value};

use super::{copy_into, fixtures};

fn event(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn connect(env: &Env) -> UnixStream {
    let mut s = UnixStream::connect(env.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    frame(
        &mut s,
        &json!({"type": "hello", "protocol": "1.0", "client": "hardening-test"}),
    );
    assert_eq!(event(&mut s).unwrap()["type"], "welcome");
    s
}

fn daemon_pid(env: &Env) -> i32 {
    let out = env.run(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.split(") ")
                        .nth(1)
                        .and_then(|r| r.split(' ').nth(1))
                        .and_then(|pp| pp.parse::<i32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

fn visible_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Starts a job on its own connection and waits until it reports `stage`.
fn start_job(env: &Env, src: &Path, out: &Path, stage: &str) -> UnixStream {
    let mut s = connect(env);
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "k", "source": src, "preset": "auto", "output": {"dir": out}}),
    );
    loop {
        let ev = event(&mut s).expect("job events");
        assert_ne!(ev["type"], "error", "{ev}");
        if ev["type"] == "progress" && ev["stage"] == stage {
            return s;
        }
        assert_ne!(
            ev["type"], "done",
            "the job finished before reaching {stage}"
        );
    }
}

#[test]
fn sigterm_lets_running_jobs_finish_and_then_removes_the_socket_and_runners() {
    let f = fixtures();
    let env = Env::new();
    env.write_config("[daemon]\nshutdown_grace_s = 60\n");
    let src = copy_into(&env, &f.dng_grbg_12);
    let pid = daemon_pid(&env);
    let runners = children(pid);
    assert!(!runners.is_empty(), "no plugin runners found");
    let mut s = start_job(&env, &src, &env.work, "ingest");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The job still completes.
    let done = loop {
        let ev = event(&mut s).expect("the job was dropped at SIGTERM");
        if ev["type"] == "done" || ev["type"] == "error" {
            break ev;
        }
    };
    assert_eq!(done["type"], "done", "{done}");
    assert!(Path::new(done["output"].as_str().unwrap()).exists());
    assert!(
        wait_gone(pid, Duration::from_secs(20)),
        "daemon did not exit after SIGTERM"
    );
    assert!(!env.socket().exists(), "socket left behind");
    for r in runners {
        assert!(
            wait_gone(r, Duration::from_secs(10)),
            "plugin runner {r} outlived the daemon"
        );
    }
}

#[test]
fn stop_with_no_grace_cancels_running_jobs_and_leaves_nothing() {
    let f = fixtures();
    let env = Env::new();
    env.write_config("[daemon]\nshutdown_grace_s = 0\n");
    let src = copy_into(&env, &f.dng_rggb_14);
    let out = env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let pid = daemon_pid(&env);
    let mut s = start_job(&env, &src, &out, "ingest");
    assert!(env.run(&["stop"]).status.success());
    let end = loop {
        match event(&mut s) {
            Some(ev) if ev["type"] == "error" || ev["type"] == "done" => break ev,
            Some(_) => continue,
            None => break Value::Null,
        }
    };
    assert!(end.is_null() || end["code"] == "cancelled", "{end}");
    assert!(wait_gone(pid, Duration::from_secs(20)));
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "a cancelled job left files"
    );
}

#[test]
fn sigkill_at_every_stage_loses_nothing_and_the_next_daemon_cleans_up_and_completes_the_job() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.dng_rggb_14);
    let before = fingerprint(&src);
    for stage in ["ingest", "engine", "encode"] {
        let out = env.work.join(format!("out-{stage}"));
        std::fs::create_dir(&out).unwrap();
        let pid = daemon_pid(&env);
        let s = start_job(&env, &src, &out, stage);
        if stage == "encode" {
            // Let the encoder get its temporary file going.
            std::thread::sleep(Duration::from_millis(150));
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(wait_gone(pid, Duration::from_secs(10)));
        drop(s);
        assert!(
            visible_files(&out).is_empty(),
            "{stage}: a partial output is visible: {:?}",
            visible_files(&out)
        );
        // Unnamed files (ext4): nothing at all, before any new daemon starts.
        assert!(
            env.hidden_files(&out).is_empty(),
            "{stage}: the kill left {:?}",
            env.hidden_files(&out)
        );
        assert_eq!(fingerprint(&src), before, "{stage}: the original changed");
        // The next daemon starts cleanly (the stale socket is replaced) and removes what
        // the killed one left.
        rerun_leaves_only_the_result(&env, &src, &out, stage);
    }
}

/// The last moment of a job: the output written and synced, not yet given its name. A
/// debug-build hook holds the daemon exactly there. On a file system with unnamed files
/// (ext4 here) the folder shows nothing at that moment and is exactly as it was after the
/// kill, before any new daemon starts.
#[test]
fn sigkill_at_the_rename_leaves_the_folder_as_it_was() {
    let env = Env::new();
    let out = env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), b"the photographer's").unwrap();
    kill_at_the_rename(&env, &out, true);
}

/// Where the file system has no unnamed files (a FUSE folder here, like NFS, SMB or
/// exFAT), the output waits under a hidden temporary name, and the next daemon removes it.
#[test]
fn sigkill_at_the_rename_without_unnamed_files_and_the_next_daemon_removes_the_temporary_file() {
    let env = Env::new();
    let backing = env.work.join("backing");
    let out = env.work.join("fuse");
    let _mount = Mount::bindfs(&backing, &out);
    kill_at_the_rename(&env, &out, false);
}

fn kill_at_the_rename(env: &Env, out: &Path, unnamed: bool) {
    let f = fixtures();
    let src = copy_into(env, &f.dng_rggb_14);
    let before = fingerprint(&src);
    let folder_before = listing(out);
    let marker = env.work.join("held-at-rename");
    // The daemon the status command starts inherits the hook.
    let st = env
        .cmd()
        .args(["status", "--json"])
        .env("LUMINARY_TEST_HOLD", "rename")
        .env("LUMINARY_TEST_HOLD_FILE", &marker)
        .output()
        .unwrap();
    let pid = serde_json::from_slice::<Value>(&st.stdout).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    let s = start_job(env, &src, out, "encode");
    let until = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < until, "the job never reached the rename");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = listing(out);
    if unnamed {
        assert_eq!(held, folder_before, "the unwritten output has a name");
    } else {
        let new: Vec<&String> = held.iter().filter(|n| !folder_before.contains(n)).collect();
        assert!(
            new.len() == 1 && new[0].starts_with(".luminary-") && new[0].ends_with(".part"),
            "expected only the temporary output, found {held:?}"
        );
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_gone(pid, Duration::from_secs(10)));
    drop(s);
    assert!(
        visible_files(out).len() == folder_before.iter().filter(|n| !n.starts_with('.')).count(),
        "a result became visible without its rename: {:?}",
        visible_files(out)
    );
    if unnamed {
        assert_eq!(
            listing(out),
            folder_before,
            "the kill left something behind"
        );
    }
    assert_eq!(fingerprint(&src), before, "the original changed");
    // The next daemon (no hook) removes any orphan and the job completes.
    std::fs::remove_file(&marker).unwrap();
    for name in &folder_before {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    rerun_leaves_only_the_result(env, &src, out, "rename");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// After a kill: the job re-run by a fresh daemon succeeds, and the folder then holds just
/// its result — whatever the killed daemon left (a temporary file) is gone.
fn rerun_leaves_only_the_result(env: &Env, src: &Path, out: &Path, what: &str) {
    let r = env.run(&[
        "enhance",
        "--json",
        src.to_str().unwrap(),
        "--preset",
        "auto",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    let res = results(&r.stdout);
    assert!(
        res.len() == 1 && res[0]["ok"] == true,
        "{what}: re-run failed: {res:?}\nstatus {:?}\nstderr: {}\ndaemon log:\n{}",
        r.status,
        String::from_utf8_lossy(&r.stderr),
        env.daemon_log()
    );
    let left: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "{what}: expected just the result, found {left:?}"
    );
    assert!(!left[0].starts_with('.'), "{what}: {left:?}");
}

#[test]
fn too_many_jobs_get_a_clear_busy_error_and_the_rest_complete() {
    let f = fixtures();
    let env = Env::new();
    env.write_config("[daemon]\nmax_jobs = 1\nmax_jobs_per_client = 2\n");
    let src = copy_into(&env, &f.tiff8);
    assert!(env.run(&["status"]).status.success());
    let mut s = connect(&env);
    for id in ["a", "b", "c"] {
        frame(
            &mut s,
            &json!({"type": "enhance", "id": id, "source": src, "preset": "auto", "output": {"format": "jpeg"}}),
        );
    }
    let mut ends = std::collections::BTreeMap::new();
    while ends.len() < 3 {
        let ev = event(&mut s).unwrap();
        if ev["type"] == "done" || ev["type"] == "error" {
            ends.insert(ev["id"].as_str().unwrap().to_string(), ev);
        }
    }
    assert_eq!(ends["a"]["type"], "done");
    assert_eq!(ends["b"]["type"], "done");
    assert_eq!(ends["c"]["code"], "busy", "{}", ends["c"]);
    assert_eq!(ends["c"]["retryable"], true);
    assert!(ends["c"]["message"]
        .as_str()
        .unwrap()
        .contains("max_jobs_per_client"));
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Issue #9's load test: 200 clients at once, each asking for status and presets; a
/// quarter also run a job on the offline engine and a quarter a job on an AI engine (the
/// Gemini mock, 250 ms per call, every job a different photo so the edit cache cannot
/// answer). Every job completes or gets a clear `busy`; none is lost; the daemon's memory
/// stays bounded. Prints p50 / p99 latency of the small requests and jobs per second.
#[test]
fn two_hundred_clients_at_once_are_all_answered_and_memory_stays_bounded() {
    use luminary_engines::mock::{Fault, MockKind, MockServer, TEST_KEY};
    let env = Env::new();
    let mock = MockServer::start(
        MockKind::Gemini,
        vec![Fault::Latency(Duration::from_millis(250)); 200],
    );
    env.write_config(&format!(
        "[engines.gemini]\nbase_url = \"{}\"\nprice_per_image = 0.04\nconnect_timeout_s = 2\n\
         request_timeout_s = 30\ntotal_timeout_s = 120\n",
        mock.base_url
    ));
    let photo = image::open(luminary_tests::photos_dir().unwrap().join("blossom.png"))
        .unwrap()
        .to_rgb8();
    // 50 different small photos (crops of one), so 50 different engine calls.
    let srcs: Vec<std::path::PathBuf> = (0..50u32)
        .map(|i| {
            let crop = image::imageops::crop_imm(&photo, i * 3, i * 2, 360, 300).to_image();
            let p = env.work.join(format!("crop-{i:02}.png"));
            crop.save(&p).unwrap();
            p
        })
        .collect();
    let out = env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    // The daemon inherits the key from the command that starts it.
    let st = env
        .cmd()
        .args(["status", "--json"])
        .env("GEMINI_API_KEY", TEST_KEY)
        .output()
        .unwrap();
    let pid = serde_json::from_slice::<Value>(&st.stdout).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    let rss_before = rss_kb(pid);
    let started = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let (sock, out) = (env.socket(), out.clone());
            let src = srcs[i / 4].clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
                frame(
                    &mut s,
                    &json!({"type": "hello", "protocol": "1.0", "client": format!("load-{i}")}),
                );
                assert_eq!(event(&mut s).unwrap()["type"], "welcome");
                let mut latencies = Vec::new();
                for round in 0..3 {
                    let t = Instant::now();
                    let kind = if round == 1 { "presets" } else { "status" };
                    frame(&mut s, &json!({"type": kind, "id": format!("q{round}")}));
                    let ev = event(&mut s).expect("answer");
                    assert_eq!(ev["type"], "done", "{ev}");
                    latencies.push(t.elapsed());
                }
                // (offline jobs, AI jobs, busy refusals)
                let mut tally = (0, 0, 0);
                let engine = match i % 4 {
                    0 => Some("local"),
                    2 => Some("gemini"),
                    _ => None,
                };
                if let Some(engine) = engine {
                    frame(
                        &mut s,
                        &json!({"type": "enhance", "id": "j", "source": src, "preset": "warm-film",
                                "engine": engine, "output": {"dir": out, "format": "jpeg"}}),
                    );
                    loop {
                        let ev = event(&mut s).expect("a job was lost: the connection ended");
                        if ev["type"] == "done" {
                            assert_eq!(ev["engine"], engine, "{ev}");
                            if engine == "local" {
                                tally.0 += 1;
                            } else {
                                tally.1 += 1;
                            }
                            break;
                        }
                        if ev["type"] == "error" {
                            // Allowed only as a clear, retryable refusal.
                            assert_eq!(ev["code"], "busy", "{ev}");
                            tally.2 += 1;
                            break;
                        }
                    }
                }
                (latencies, tally)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut local, mut ai, mut busy) = (0, 0, 0);
    for h in handles {
        let (l, t) = h.join().expect("a client failed");
        latencies.extend(l);
        local += t.0;
        ai += t.1;
        busy += t.2;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let jobs = local + ai;
    println!(
        "200 clients: {} small requests p50 {:?} p99 {:?}; {jobs} jobs ({local} offline, {ai} AI, \
         {busy} busy) in {:?} ({:.1} jobs/s); engine calls {}, at most {} at once",
        latencies.len(),
        p(0.5),
        p(0.99),
        elapsed,
        jobs as f64 / elapsed.as_secs_f64(),
        mock.requests().len(),
        mock.max_in_flight()
    );
    assert_eq!(
        (local, ai, busy),
        (50, 50, 0),
        "every job should complete (none refused at these limits)"
    );
    // Each AI job paid exactly once, and the per-engine concurrency limit held.
    assert_eq!(mock.billed(), 50, "engine calls billed");
    assert!(
        mock.max_in_flight() <= 2,
        "{} calls at once",
        mock.max_in_flight()
    );
    assert_eq!(visible_files(&out).len(), 100);
    let rss_after = rss_kb(pid);
    println!(
        "daemon RSS: {} MB before, {} MB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < 1_500_000,
        "daemon uses {} MB after the load",
        rss_after / 1024
    );
    assert!(env.run(&["status", "--no-spawn"]).status.success());
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount(std::path::PathBuf);

impl Mount {
    /// `src` seen through FUSE at `dir` (bindfs, which `.ci/run` installs).
    fn bindfs(src: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(src).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("bindfs")
            .arg(src)
            .arg(dir)
            .output()
            .expect("bindfs is missing: .ci/run installs it (apt-get install bindfs)");
        assert!(
            out.status.success(),
            "bindfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(dir.to_path_buf())
    }

    fn tmpfs(dir: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_or_read_only_target_folder_gives_a_clear_error_and_leaves_nothing() {
    // Permissions do not stop root, so the folders are real filesystems: a 256 KiB tmpfs
    // and a read-only one. Mounting needs root, which CI has.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.tiff8);
    let before = fingerprint(&src);
    let full = env.work.join("full");
    let _full = Mount::tmpfs(&full, "size=256k");
    let ro = env.work.join("ro");
    let _ro = Mount::tmpfs(&ro, "ro,size=64k");
    for (dir, words) in [(&full, "the disk is full"), (&ro, "read-only")] {
        let out = env.run(&[
            "enhance",
            "--json",
            src.to_str().unwrap(),
            "--preset",
            "auto",
            "--out-dir",
            dir.to_str().unwrap(),
        ]);
        let r = &results(&out.stdout)[0];
        assert_eq!(r["code"], "output_failed", "{r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.contains(dir.to_str().unwrap()) && msg.contains(words),
            "{msg}"
        );
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "left behind in {}: {left:?}",
            dir.display()
        );
    }
    assert_eq!(fingerprint(&src), before);
    assert!(env.run(&["status", "--no-spawn"]).status.success());
}

#[test]
fn large_photos_wait_for_memory_instead_of_running_side_by_side() {
    let f = fixtures();
    let env = Env::new();
    // Room for two jobs by count, but not for two 12 MP RAWs by memory.
    env.write_config("[daemon]\nmax_jobs = 2\nmemory_budget_mb = 300\n");
    let a = copy_into(&env, &f.dng_grbg_12);
    let b = env.work.join("second.dng");
    std::fs::copy(&a, &b).unwrap();
    let st: Value = serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st["memory_budget_mb"], 300);
    let mut s = connect(&env);
    for (id, src) in [("a", &a), ("b", &b)] {
        frame(
            &mut s,
            &json!({"type": "enhance", "id": id, "source": src, "preset": "auto", "output": {"format": "jpeg"}}),
        );
    }
    let mut order = Vec::new();
    let mut done = 0;
    while done < 2 {
        let ev = event(&mut s).unwrap();
        assert_ne!(ev["type"], "error", "{ev}");
        if ev["type"] == "done" {
            done += 1;
            order.push(format!("{}:done", ev["id"].as_str().unwrap()));
        } else if ev["type"] == "progress" && ev["stage"] == "ingest" {
            order.push(format!("{}:ingest", ev["id"].as_str().unwrap()));
        }
    }
    // One ran to the end before the other began.
    assert!(
        order == ["a:ingest", "a:done", "b:ingest", "b:done"]
            || order == ["b:ingest", "b:done", "a:ingest", "a:done"],
        "{order:?}"
    );
}
