//! `luminary install` finds every install of an editor on the computer, Flatpak ones
//! included, says what it did for each, and what it installs runs: the copy made for a
//! Flatpak sandbox works with nothing but the app's own folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use luminary_tests::daemon::{luminary_bin, Env};
use serde_json::Value;

use super::fixtures;

/// `luminary ARGS` with `home` as the user's home and its `.config`.
fn install(env: &Env, home: &Path, args: &[&str]) -> Output {
    let out = env
        .cmd()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "luminary {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The program a bridge file records (`INSTALLED_BINARY = "…"`).
fn recorded_binary(bridge: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(bridge).unwrap_or_else(|e| panic!("{}: {e}", bridge.display()));
    let at = text
        .find("INSTALLED_BINARY = \"")
        .expect("no INSTALLED_BINARY")
        + 20;
    let end = text[at..].find('"').unwrap();
    PathBuf::from(&text[at..at + end])
}

/// A command as the Flatpak app would run it: only the app's own folders.
fn in_sandbox(program: &Path, app: &Path, runtime: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env(
            "HOME",
            app.parent().unwrap().parent().unwrap().parent().unwrap(),
        )
        .env("XDG_CONFIG_HOME", app.join("config"))
        .env("XDG_DATA_HOME", app.join("data"))
        .env("XDG_CACHE_HOME", app.join("cache"))
        .env("XDG_RUNTIME_DIR", runtime);
    c
}

struct StopOnDrop(Command);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.arg("stop").output();
    }
}

#[test]
fn install_finds_native_and_flatpak_editors_and_the_sandbox_copy_runs() {
    let f = fixtures();
    let env = Env::new();
    let home = env.root.path().join("home");
    std::fs::create_dir_all(home.join(".config/darktable")).unwrap();
    let dt_app = home.join(".var/app/org.darktable.Darktable");
    std::fs::create_dir_all(&dt_app).unwrap();
    // GIMP only as a Flatpak.
    let gimp_app = home.join(".var/app/org.gimp.GIMP");
    std::fs::create_dir_all(gimp_app.join("config")).unwrap();

    let out = install(&env, &home, &["install", "darktable"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("darktable:\n")
            && said.contains("darktable (Flatpak org.darktable.Darktable):\n"),
        "{said}"
    );
    let ours = luminary_bin().canonicalize().unwrap();
    assert_eq!(
        recorded_binary(&home.join(".config/darktable/lua/luminary.lua")),
        ours
    );
    let copy = recorded_binary(&dt_app.join("config/darktable/lua/luminary.lua"));
    assert_eq!(copy, dt_app.join("data/luminary/bin/luminary"), "{said}");
    let luarc = std::fs::read_to_string(dt_app.join("config/darktable/luarc")).unwrap();
    assert_eq!(luarc, "require \"luminary\"\n");
    let libs: Vec<String> = std::fs::read_dir(copy.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("libluminary_") && n.ends_with(".so"))
        .collect();
    assert!(libs.len() >= 5, "plugins copied: {libs:?}");

    // The copy runs with only the sandbox's folders: its own daemon, its plugins, a photo
    // read through --filesystem=host (the same path inside and out).
    let runtime = tempfile::tempdir().unwrap();
    let _stop = StopOnDrop(in_sandbox(&copy, &dt_app, runtime.path()));
    let presets = in_sandbox(&copy, &dt_app, runtime.path())
        .args(["presets", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&presets.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&presets.stderr)));
    let ids: Vec<&str> = v["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 20 && ids.contains(&"warm-film"), "{ids:?}");
    let photo = env.work.join("Hochzeit Ω.tif");
    std::fs::copy(&f.tiff8, &photo).unwrap();
    let job = in_sandbox(&copy, &dt_app, runtime.path())
        .args([
            "enhance",
            photo.to_str().unwrap(),
            "--preset",
            "warm-film",
            "--format",
            "jpeg",
        ])
        .output()
        .unwrap();
    assert!(
        job.status.success(),
        "{}",
        String::from_utf8_lossy(&job.stderr)
    );
    assert!(env.work.join("Hochzeit Ω-luminary-warm-film.jpg").is_file());
    assert!(
        dt_app.join("cache/luminary").is_dir(),
        "the sandboxed daemon keeps its cache in the app's folder"
    );

    // GIMP: only the Flatpak install is there, so only it gets the plug-in.
    let out = install(&env, &home, &["install", "gimp"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("GIMP 3:\n"), "{said}");
    let plugin = gimp_app.join("config/GIMP/3.0/plug-ins/luminary/luminary.py");
    assert_eq!(
        recorded_binary(&plugin),
        gimp_app.join("data/luminary/bin/luminary")
    );
    assert!(!home.join(".config/GIMP").exists(), "{said}");
}

#[test]
fn with_no_install_found_the_bridge_goes_to_the_default_folder_and_says_so() {
    let env = Env::new();
    let home = env.root.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = install(&env, &home, &["install", "darktable"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("found no darktable settings on this computer"),
        "{said}"
    );
    assert!(home.join(".config/darktable/lua/luminary.lua").is_file());
    assert!(!home.join(".var").exists());
    // Lightroom Classic has no Linux folder: --dest is asked for.
    let out = env
        .cmd()
        .env("HOME", &home)
        .args(["install", "lightroom"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name a folder with --dest"));
}
