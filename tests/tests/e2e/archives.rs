//! The archives `scripts/package` makes install and run as a photographer would use them:
//! unpacked anywhere, the program finds its plugins beside itself, and
//! `luminary install <editor>` finds each editor's folder and records where the unpacked
//! program is. The Linux archive is run here; the Windows archive under wine (its editors'
//! folders under `%APPDATA%` and `%LOCALAPPDATA%`); the macOS archives are checked for
//! what they hold (Mach-O files for the right CPU, as `scripts/check-macos` checks them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use luminary_tests::daemon::{json_lines, results, Env};
use luminary_tests::wine::WinEnv;

use super::fixtures;

/// `scripts/package --dev` into a folder shared by the tests here (it packs the builds the
/// test run already made).
fn archives() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package"))
            .arg("--dev")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/package --dev failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

fn archive(suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(archives())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{suffix}: {found:?}");
    found.into_iter().next().unwrap()
}

fn untar(file: &Path, into: &Path) -> PathBuf {
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(file)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success());
    only_child(into)
}

fn only_child(dir: &Path) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(v.len(), 1, "one folder per archive: {v:?}");
    v.into_iter().next().unwrap()
}

/// What every archive holds besides the program and its plugins.
fn assert_common_files(root: &Path, platform: &str) {
    for f in [
        "README.txt",
        "bridges/Luminary.lrplugin/Info.lua",
        "bridges/Luminary.lrplugin/LuminaryCore.lua",
        "bridges/darktable/luminary.lua",
        "bridges/gimp/luminary/luminary.py",
    ] {
        assert!(root.join(f).is_file(), "{platform}: no {f}");
    }
    let readme = std::fs::read_to_string(root.join("README.txt")).unwrap();
    assert!(
        !readme.contains('@'),
        "{platform}: placeholder left: {readme}"
    );
    assert!(readme.contains("install lightroom"), "{readme}");
}

fn plugin_files(root: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect();
    v.sort();
    v
}

/// The first-party plugin crates, as library names.
fn first_party(prefix: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
            .unwrap()
            .map(|e| {
                format!(
                    "{prefix}luminary_{}{ext}",
                    e.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
    v.sort();
    v
}

/// Linux: unpacked in a folder with a space, the program lists the first-party presets from
/// the plugins beside it, installs the darktable bridge recording its own path, and
/// enhances a photo.
#[test]
fn the_linux_archive_runs_unpacked_and_installs_its_bridges() {
    let f = fixtures();
    let env = Env::new();
    let apps = env.root.path().join("My Apps");
    std::fs::create_dir_all(&apps).unwrap();
    let root = untar(&archive("-linux-x86_64-dev.tar.gz"), &apps);
    assert_common_files(&root, "Linux");
    assert_eq!(plugin_files(&root, ".so"), first_party("lib", ".so"));
    let exe = root.join("luminary");
    // Only the plugins beside the program: no LUMINARY_PLUGIN_PATH.
    let run = |args: &[&str]| {
        env.cmd_of(&exe)
            .args(args)
            .env("HOME", env.root.path())
            .env_remove("LUMINARY_PLUGIN_PATH")
            .output()
            .unwrap()
    };
    let plugins = run(&["plugins", "--json"]);
    assert!(
        plugins.status.success(),
        "{}",
        String::from_utf8_lossy(&plugins.stderr)
    );
    let text = String::from_utf8_lossy(&plugins.stdout);
    for lib in first_party("lib", ".so") {
        let path = root.join(&lib);
        assert!(
            text.contains(path.to_str().unwrap()),
            "{lib} not loaded from the archive: {text}"
        );
    }
    // darktable has run here (its folder exists): install finds it.
    let dt = env.root.path().join("config/darktable");
    std::fs::create_dir_all(&dt).unwrap();
    let out = run(&["install", "darktable"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = std::fs::read_to_string(dt.join("lua/luminary.lua")).unwrap();
    assert!(
        script.contains(&format!("\"{}\"", exe.display())),
        "the bridge does not run the unpacked program"
    );
    let photo = env.work.join("Holiday Photo.tif");
    std::fs::copy(&f.tiff16, &photo).unwrap();
    let out = run(&[
        "enhance",
        "--json",
        "--preset",
        "vivid-landscape",
        photo.to_str().unwrap(),
    ]);
    let r = results(&out.stdout);
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert!(env
        .work
        .join("Holiday Photo-luminary-vivid-landscape.tif")
        .is_file());
    let _ = run(&["stop"]);
}

/// Windows, under wine: unzipped under `C:\Program Files`, `luminary.exe install` finds
/// Lightroom's Modules under `%APPDATA%`, darktable under `%LOCALAPPDATA%` and GIMP 3's
/// plug-ins under `%APPDATA%`, and each bridge runs the unzipped program by a path cmd.exe
/// can start.
#[test]
fn the_windows_archive_installs_into_each_editors_folder() {
    let env = WinEnv::new();
    let program_files = env.c_drive().join("Program Files");
    let zip = archive("-windows-x86_64-dev.zip");
    let st = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(&program_files)
        .status()
        .unwrap();
    assert!(st.success());
    let root = std::fs::read_dir(&program_files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("luminary-")
        })
        .expect("the unzipped folder");
    assert_common_files(&root, "Windows");
    assert_eq!(plugin_files(&root, ".dll"), first_party("", ".dll"));
    let readme = std::fs::read(root.join("README.txt")).unwrap();
    assert!(
        readme.windows(2).any(|w| w == b"\r\n"),
        "README.txt without CRLF"
    );
    let exe = env.win_path(&root.join("luminary.exe"));

    // Each editor has run once: its folder exists.
    let appdata = env.profile().join("AppData/Roaming");
    let lr = appdata.join("Adobe/Lightroom/Modules");
    let gimp = appdata.join("GIMP/3.0/plug-ins");
    let dt = env.local_app_data().join("darktable");
    for d in [&lr, &gimp, &dt] {
        std::fs::create_dir_all(d).unwrap();
    }
    let run = |args: &[&str]| env.program(&exe, args).output().unwrap();
    for editor in ["lightroom", "darktable", "gimp"] {
        let out = run(&["install", editor]);
        assert!(
            out.status.success(),
            "install {editor}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let recorded = |file: &Path| {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            !text.contains(r"\\?\") && !text.contains(r"\\\\?\\"),
            "{}: a verbatim path cmd.exe cannot start",
            file.display()
        );
        text
    };
    let lua_exe = exe.replace('\\', "\\\\");
    let lr_config = recorded(&lr.join("Luminary.lrplugin/LuminaryConfig.lua"));
    assert!(lr_config.contains(&lua_exe), "{lr_config}");
    assert!(lr.join("Luminary.lrplugin/Info.lua").is_file());
    let dt_script = recorded(&dt.join("lua/luminary.lua"));
    assert!(
        dt_script.contains(&lua_exe),
        "darktable script does not run {exe}"
    );
    assert!(std::fs::read_to_string(dt.join("luarc"))
        .unwrap()
        .contains("require \"luminary\""));
    let gimp_py = recorded(&gimp.join("luminary/luminary.py"));
    assert!(
        gimp_py.contains(&lua_exe),
        "GIMP plug-in does not run {exe}"
    );

    // The unzipped program serves from its own folder's plugins.
    let out = run(&["presets", "--json"]);
    let presets = json_lines(&out.stdout);
    assert!(
        presets.iter().any(|p| p.to_string().contains("warm-film")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// macOS: each archive holds a Mach-O executable and the plugin dylibs for its CPU.
#[test]
fn the_macos_archives_hold_the_program_and_plugins_for_their_cpu() {
    for (arch, cpu) in [("arm64", 0x0100_000Cu32), ("x86_64", 0x0100_0007)] {
        let dir = tempfile::tempdir().unwrap();
        let root = untar(&archive(&format!("-macos-{arch}-dev.tar.gz")), dir.path());
        assert_common_files(&root, arch);
        let readme = std::fs::read_to_string(root.join("README.txt")).unwrap();
        assert!(
            readme.contains("xattr -dr com.apple.quarantine"),
            "{readme}"
        );
        assert_eq!(plugin_files(&root, ".dylib"), first_party("lib", ".dylib"));
        let mut files = vec![root.join("luminary")];
        files.extend(plugin_files(&root, ".dylib").iter().map(|n| root.join(n)));
        for f in files {
            let b = std::fs::read(&f).unwrap();
            let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
            assert_eq!(word(0), 0xFEED_FACF, "{}: not Mach-O 64", f.display());
            assert_eq!(word(4), cpu, "{}: wrong CPU", f.display());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("luminary"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "luminary is not executable");
    }
}
