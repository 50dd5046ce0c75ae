//! Plugins: loaded in runner processes, misbehaving ones contained, old ones still loading,
//! incompatible and invalid ones refused with one clear line.

use std::path::{Path, PathBuf};

use luminary_tests::daemon::{build_external_plugin, dylib, results, Env};
use serde_json::{json, Value};

use super::{copy_into, fixtures};

fn plugins_json(env: &Env) -> Vec<Value> {
    let out = env.run(&["plugins", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["plugins"].as_array().unwrap().clone()
}

fn plugin<'a>(list: &'a [Value], file_part: &str) -> &'a Value {
    list.iter()
        .find(|p| p["file"].as_str().unwrap().contains(file_part))
        .unwrap_or_else(|| panic!("no plugin {file_part} in {list:?}"))
}

fn enhance(env: &Env, src: &Path, preset: &str) -> Value {
    let out = env.run(&[
        "enhance",
        "--json",
        src.to_str().unwrap(),
        "--preset",
        preset,
    ]);
    let r = results(&out.stdout);
    assert_eq!(r.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    r.into_iter().next().unwrap()
}

#[test]
fn a_plugin_that_panics_segfaults_exits_or_hangs_fails_only_its_own_job() {
    let f = fixtures();
    let env = Env::new();
    env.install_plugin(&dylib("misbehave"));
    env.write_config("[plugins]\ncall_timeout_s = 2\nmax_crashes = 3\n");
    let src = copy_into(&env, &f.tiff8);
    let big = copy_into(&env, &f.dng_grbg_12);

    // A panic is caught inside the plugin: the job fails, the runner lives on.
    let r = enhance(&env, &src, "panic");
    assert_eq!(r["code"], "plugin_failed");
    assert!(
        r["message"].as_str().unwrap().contains("deliberate panic"),
        "{r}"
    );
    assert_eq!(plugin(&plugins_json(&env), "misbehave")["crashes"], 0);

    // A segfault while another client's job from another plugin runs: that job completes.
    let other = env
        .cmd()
        .args([
            "enhance",
            "--json",
            big.to_str().unwrap(),
            "--preset",
            "warm-film",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let r = enhance(&env, &src, "segfault");
    assert_eq!(r["code"], "plugin_failed");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("test.misbehave") && msg.contains("SIGSEGV"),
        "{msg}"
    );
    let other = other.wait_with_output().unwrap();
    assert!(other.status.success(), "the other job failed too");
    assert_eq!(results(&other.stdout)[0]["ok"], true);

    // The runner is restarted for the next job.
    let r = enhance(&env, &src, "fine");
    assert_eq!(r["ok"], true, "{r}");

    let r = enhance(&env, &src, "exit");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("exited with status 3"),
        "{r}"
    );
    let t = std::time::Instant::now();
    let r = enhance(&env, &src, "hang");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{r}"
    );
    assert!(
        t.elapsed().as_secs() < 20,
        "a hung plugin held the job for {:?}",
        t.elapsed()
    );

    // Three crashes: quarantined, and `luminary plugins` says so.
    let list = plugins_json(&env);
    let m = plugin(&list, "misbehave");
    assert_eq!(m["state"], "quarantined", "{m}");
    assert_eq!(m["crashes"], 3);
    let r = enhance(&env, &src, "fine");
    assert!(
        r["message"].as_str().unwrap().contains("quarantined"),
        "{r}"
    );
    // Everything else still works, and the daemon never went down.
    assert_eq!(enhance(&env, &src, "auto")["ok"], true);
    let st: Value =
        serde_json::from_slice(&env.run(&["status", "--json", "--no-spawn"]).stdout).unwrap();
    assert_eq!(st["running"], true);
    // `plugins reload` gives the plugin a fresh start.
    assert!(env.run(&["plugins", "reload"]).status.success());
    assert_eq!(plugin(&plugins_json(&env), "misbehave")["state"], "loaded");
    assert_eq!(enhance(&env, &src, "fine")["ok"], true);
}

/// `enhance --json SRC --preset pixels-sepia --intensity 1`: its result, which must be a
/// success. With `debug`, a daemon this call starts logs at debug level.
fn sepia(env: &Env, src: &Path, debug: bool) -> Value {
    let mut cmd = env.cmd();
    if debug {
        cmd.env("LUMINARY_LOG", "debug");
    }
    let out = cmd
        .args([
            "enhance",
            "--json",
            src.to_str().unwrap(),
            "--preset",
            "pixels-sepia",
        ])
        .args(["--intensity", "1"])
        .output()
        .unwrap();
    let r = results(&out.stdout).remove(0);
    assert_eq!(r["ok"], true, "{r}");
    r
}

/// Of the pixels that are neither dark nor bright, the share with red above green above
/// blue: sepia's.
fn sepia_share(img: &image::Rgb32FImage) -> f64 {
    let (warm, n) = img
        .pixels()
        .filter(|p| p[1] > 0.1 && p[1] < 0.8)
        .fold((0u32, 0u32), |(w, n), p| {
            (w + (p[0] > p[1] && p[1] > p[2]) as u32, n + 1)
        });
    warm as f64 / n.max(1) as f64
}

#[test]
fn pixel_functions_run_in_the_runner_through_shared_memory() {
    let f = fixtures();
    let env = Env::new();
    env.install_plugin(&dylib("misbehave"));
    let src = copy_into(&env, &f.tiff16);
    // The daemon this starts logs where it puts its pixel buffers (checked at the end).
    let r = sepia(&env, &src, true);
    let share = sepia_share(
        &image::open(r["output"].as_str().unwrap())
            .unwrap()
            .into_rgb32f(),
    );
    assert!(share > 0.95, "{share} of the pixels sepia");
    let r = enhance(&env, &src, "pixels-panic");
    assert_eq!(r["code"], "plugin_failed");
    assert!(r["message"]
        .as_str()
        .unwrap()
        .contains("deliberate panic in process_pixels"));
    // No shared memory left behind once the daemon is idle (it keeps a large buffer
    // between photos until then). Only this daemon's files: other tests' daemons run
    // meanwhile.
    let log = env.daemon_log();
    let ours: Vec<PathBuf> = log
        .lines()
        .filter(|l| l.contains("pixel buffer") && l.contains(": new, "))
        .filter_map(|l| l.split(" MB in ").nth(1).map(PathBuf::from))
        .collect();
    assert!(!ours.is_empty(), "no pixel buffer in the log:\n{log}");
    let started = std::time::Instant::now();
    let left = || ours.iter().filter(|p| p.exists()).collect::<Vec<_>>();
    while !left().is_empty() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(left().is_empty(), "shared memory left: {:?}", left());
}

/// Pixel-buffer files mapped by process `pid` and its children (the plugin runners).
#[cfg(target_os = "linux")]
fn mapped_pixel_buffers(pid: i64) -> Vec<String> {
    let mut pids = vec![pid.to_string()];
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children"));
        pids.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from),
        );
    }
    let mut found: Vec<String> = pids
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/maps"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("luminary-pixels-"))
                .map(|l| {
                    format!(
                        "{p}: {}",
                        l.split_whitespace().skip(5).collect::<Vec<_>>().join(" ")
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    found.dedup();
    found
}

/// Issue #20: a pixel function's large shared buffer is kept between photos of one size.
/// Allocating and mapping it cost more than the plugin's own work (288 MB on 24 MP, about
/// 185 ms on a 2-core VM). A kept buffer must give exactly the picture a new one gives (no
/// trace of the photo before), a small photo gets a buffer of its own, and once
/// the daemon is idle no process maps one and no file is left.
#[cfg(target_os = "linux")]
#[test]
fn a_kept_pixel_buffer_gives_the_same_picture_and_is_given_back_when_idle() {
    let f = fixtures();
    let pixels = |r: &Value| {
        image::open(r["output"].as_str().unwrap())
            .unwrap()
            .into_rgb32f()
    };
    // The reference: the 8-bit scan in a daemon that never had a buffer.
    let fresh = Env::new();
    fresh.install_plugin(&dylib("misbehave"));
    let reference = pixels(&sepia(&fresh, &copy_into(&fresh, &f.tiff8), false));

    let env = Env::new();
    env.install_plugin(&dylib("misbehave"));
    // The 16-bit scan first (same size, other samples), then the 8-bit one.
    sepia(&env, &copy_into(&env, &f.tiff16), true);
    let pid = {
        let out = env.run(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["pid"]
            .as_i64()
            .unwrap()
    };
    let first = mapped_pixel_buffers(pid);
    let after_kept = sepia(&env, &copy_into(&env, &f.tiff8), false);
    let second = mapped_pixel_buffers(pid);
    let log = env.daemon_log();
    assert!(
        log.contains("kept from the last call") && !first.is_empty() && first == second,
        "the second photo should reuse the first one's buffer, mapped in the daemon and \
         its runner: {first:?} then {second:?}\n{log}"
    );
    assert!(
        pixels(&after_kept) == reference,
        "a kept buffer changed the picture"
    );
    // A small photo (under 16 MB of samples): a buffer of its own for the call only; the
    // kept one stays for the next large photo, and the plugin sees the right pixels.
    let other = pixels(&sepia(&env, &copy_into(&env, &f.jpeg_rot), false));
    assert_ne!(other.dimensions(), reference.dimensions());
    let third = mapped_pixel_buffers(pid);
    assert!(
        third == first,
        "a small photo should leave the kept buffer alone: {first:?} then {third:?}"
    );
    let share = sepia_share(&other);
    assert!(share > 0.95, "{share} of the pixels sepia");
    // Idle: given back by the daemon and its runner, the file gone.
    let files: Vec<String> = third
        .iter()
        .map(|m| m.split(": ").nth(1).unwrap().to_string())
        .collect();
    // The daemon unmaps its buffer a moment before it removes the file (the order
    // Windows needs: a mapped file cannot be deleted there), so wait for both.
    let left = || -> Vec<&String> { files.iter().filter(|f| Path::new(f).exists()).collect() };
    let started = std::time::Instant::now();
    let mut still = mapped_pixel_buffers(pid);
    while (!still.is_empty() || !left().is_empty())
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
        still = mapped_pixel_buffers(pid);
    }
    assert!(
        still.is_empty(),
        "still mapped 10 s after the last job: {still:?}"
    );
    assert!(left().is_empty(), "left behind: {:?}", left());
}

#[test]
fn old_plugins_load_incompatible_ones_are_refused_and_invalid_presets_are_reported() {
    let f = fixtures();
    let env = Env::new();
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let old = build_external_plugin(&compat.join("plugin-old"), "compat_old");
    let future = build_external_plugin(&compat.join("plugin-future"), "compat_future");
    env.install_plugin(&old);
    env.install_plugin(&future);
    env.install_plugin(&dylib("badschema"));
    std::fs::write(
        env.plugin_dir().join("libnotaplugin.so"),
        b"this is not a library",
    )
    .unwrap();

    let list = plugins_json(&env);
    // Built against 0.1.0 (a pinned copy of that release), loaded by this 0.1.x host.
    let o = plugin(&list, "compat_old");
    assert_eq!(o["state"], "loaded", "{o}");
    assert_eq!(o["presets"], serde_json::json!(["vintage-010"]));
    // Built against 0.2.0: one line naming the file's plugin-api and the host's.
    let fu = plugin(&list, "compat_future");
    assert_eq!(fu["state"], "failed");
    let why = fu["problems"][0].as_str().unwrap();
    assert!(
        why.contains("0.2.0") && why.contains("0.1.") && !why.contains('\n'),
        "{why}"
    );
    let junk = plugin(&list, "libnotaplugin");
    assert_eq!(junk["state"], "failed");
    assert!(!junk["problems"][0].as_str().unwrap().is_empty());
    // Invalid descriptors are refused one by one; the valid preset is offered.
    let b = plugin(&list, "badschema");
    assert_eq!(b["presets"], serde_json::json!(["valid-one"]));
    let problems = b["problems"].to_string();
    for needle in ["points", "Not An Id", "no-object"] {
        assert!(
            problems.contains(needle),
            "{needle} not reported: {problems}"
        );
    }
    // Three plugins' presets side by side in one daemon (abi_stable's easy loader would
    // have returned the first plugin three times).
    let src = copy_into(&env, &f.tiff8);
    for preset in ["vintage-010", "valid-one", "auto"] {
        let r = enhance(&env, &src, preset);
        assert_eq!(r["ok"], true, "{preset}: {r}");
    }
    let presets: Value = serde_json::from_slice(&env.run(&["presets", "--json"]).stdout).unwrap();
    let plugins: std::collections::BTreeSet<&str> = presets["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    assert!(
        plugins.contains("test.compat.old")
            && plugins.contains("test.badschema")
            && plugins.contains("photo.luminary.essentials")
    );
}

#[test]
fn the_example_third_party_plugin_builds_on_its_own_passes_check_and_enhances() {
    let f = fixtures();
    let env = Env::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/teal-orange");
    let lib = build_external_plugin(&example, "teal_orange");
    let check = env.run(&["plugins", "check", lib.to_str().unwrap(), "--json"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["presets"][0]["ms_per_megapixel"].as_f64().unwrap() > 0.0);

    env.install_plugin(&lib);
    let src = copy_into(&env, &f.tiff8);
    let out = env.run(&[
        "enhance",
        "--json",
        src.to_str().unwrap(),
        "--preset",
        "teal-orange",
        "--param",
        "look=blockbuster",
    ]);
    let r = results(&out.stdout).remove(0);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["plugin"], "com.example.teal-orange");
    let out = env.run(&[
        "enhance",
        "--json",
        src.to_str().unwrap(),
        "--preset",
        "teal-orange",
        "--param",
        "look=loud",
    ]);
    let r = results(&out.stdout).remove(0);
    assert_eq!(r["code"], "bad_request");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("subtle, blockbuster"),
        "{r}"
    );
}

#[test]
fn plugins_check_reports_every_failing_preset_and_exits_non_zero() {
    let env = Env::new();
    env.write_config("[plugins]\ncall_timeout_s = 1\nmax_crashes = 10\n");
    let out = env.run(&[
        "plugins",
        "check",
        dylib("misbehave").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| {
        v["presets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["preset"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("fine")["ok"], true);
    assert_eq!(by_id("pixels-sepia")["ok"], true);
    for bad in ["panic", "segfault", "exit", "hang", "pixels-panic"] {
        assert_eq!(by_id(bad)["ok"], false, "{bad}");
    }
}

#[test]
fn the_first_party_library_has_distinct_presets_with_everything_bridges_need() {
    let env = Env::new();
    let out = env.run(&["presets", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let presets = v["presets"].as_array().unwrap();
    let plugins: std::collections::BTreeSet<&str> = presets
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    assert!(
        presets.len() >= 16 && plugins.len() >= 4,
        "{} presets in {} plugins",
        presets.len(),
        plugins.len()
    );
    for p in presets {
        for key in [
            "id",
            "plugin",
            "name",
            "description",
            "kind",
            "default_intensity",
            "params_schema",
        ] {
            assert!(!p[key].is_null(), "{} lacks {key}", p["id"]);
        }
        assert!(["look", "content", "cutout", "upscale"].contains(&p["kind"].as_str().unwrap()));
        assert_eq!(p["params_schema"]["type"], "object");
    }
    for kind in ["content", "cutout", "upscale"] {
        assert!(
            presets.iter().any(|p| p["kind"] == kind),
            "no {kind} preset"
        );
    }

    // The contact sheet: every preset on one photo, and each visibly different.
    let photo = luminary_tests::photos_dir().unwrap().join("flower.png");
    let sheet_path = env.work.join("sheet.png");
    let out = env.run(&[
        "presets",
        "--sheet",
        sheet_path.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sheet = image::open(&sheet_path).unwrap().into_rgb32f();
    // Layout of host/src/sheet.rs: 480×320 thumbnails, 28 px labels, 8 px gaps. Presets
    // only an AI engine can do have nothing to show offline and are left out.
    let offline = presets.iter().filter(|p| p["ai_only"] != true).count();
    assert!(
        offline < presets.len(),
        "no AI-only preset (virtual-staging) listed"
    );
    let n = offline + 1;
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    assert_eq!(
        (sheet.width(), sheet.height()),
        (8 + cols * 488, 8 + rows * (320 + 28 + 8))
    );
    let sheet = &sheet;
    let tile = |i: u32| -> Vec<f32> {
        let (x0, y0) = (8 + (i % cols) * 488, 8 + (i / cols) * 356);
        (0..320)
            .step_by(4)
            .flat_map(|y| {
                (0..480)
                    .step_by(4)
                    .flat_map(move |x| sheet.get_pixel(x0 + x, y0 + y).0)
            })
            .collect()
    };
    let tiles: Vec<Vec<f32>> = (0..n as u32).map(tile).collect();
    for i in 0..n {
        for j in i + 1..n {
            let d = tiles[i]
                .iter()
                .zip(&tiles[j])
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / tiles[i].len() as f32;
            assert!(
                d > 0.004,
                "tiles {i} and {j} look the same (mean difference {d})"
            );
        }
    }
}

/// An AI-only preset (`virtual-staging`) has nothing to run offline: `plugins check` builds
/// its request, says so, and still passes the plugin.
#[test]
fn plugins_check_builds_an_ai_only_presets_request_instead_of_running_it() {
    let env = Env::new();
    let lib = dylib("luminary_interiors");
    let out = env.run(&["plugins", "check", lib.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{v}");
    let staging = v["presets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["preset"] == "virtual-staging")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (staging["ok"].clone(), staging["ai_only"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    assert!(staging.get("ms_per_megapixel").is_none(), "{v}");
    let human = env.run(&["plugins", "check", lib.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("request built (AI engines only)"), "{text}");
}
