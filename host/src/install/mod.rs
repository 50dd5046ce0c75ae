//! `luminary install <editor>`: put a bridge where its editor looks for it.
//!
//! Each bridge records the absolute path of the `luminary` binary that installed it,
//! because editors started from a desktop menu or the macOS Dock do not get the shell's
//! PATH.

pub mod flatpak;
pub mod places;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub use places::Editor;
use places::{Home, Os, Place};

const DARKTABLE_SCRIPT: &str = include_str!("../../../darktable-lua/luminary.lua");
const GIMP_PLUGIN: &str = include_str!("../../../gimp-bridge/luminary/luminary.py");

/// The Lightroom plug-in folder's files, compiled in so the binary installs its own bridge.
const LIGHTROOM_FILES: &[(&str, &str)] = &[
    (
        "Info.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/Info.lua"),
    ),
    (
        "LuminaryConfig.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/LuminaryConfig.lua"),
    ),
    (
        "JSON.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/JSON.lua"),
    ),
    (
        "LuminaryCore.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/LuminaryCore.lua"),
    ),
    (
        "LuminaryDialog.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/LuminaryDialog.lua"),
    ),
    (
        "LuminaryPreview.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/LuminaryPreview.lua"),
    ),
    (
        "EnhanceMenuItem.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/EnhanceMenuItem.lua"),
    ),
    (
        "ExportServiceProvider.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/ExportServiceProvider.lua"),
    ),
    (
        "PluginInfoProvider.lua",
        include_str!("../../../lr-bridge/Luminary.lrplugin/PluginInfoProvider.lua"),
    ),
];

/// The binary to record: this executable, canonical.
fn this_binary() -> anyhow::Result<PathBuf> {
    let exe = crate::paths::self_exe().context("cannot find the luminary executable")?;
    Ok(without_verbatim_prefix(&exe.canonicalize().unwrap_or(exe)))
}

/// Windows' canonical paths are verbatim (`\\?\C:\…`), which cmd.exe (Lightroom's
/// `LrTasks.execute`, darktable's `io.popen`) cannot start; the plain form names the same
/// file. A path that needs the prefix (past 260 characters) keeps it.
fn without_verbatim_prefix(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    if let Some(rest) = s.strip_prefix(r"\\?\") {
        if let Some(unc) = rest.strip_prefix(r"UNC\") {
            return PathBuf::from(format!(r"\\{unc}"));
        }
        let drive = rest.as_bytes();
        if rest.len() < 260 && drive.len() > 2 && drive[1] == b':' && drive[2] == b'\\' {
            return PathBuf::from(rest);
        }
    }
    path.to_path_buf()
}

/// A Lua string literal body for `s` (the script keeps it in double quotes).
fn lua_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("no parent folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Installs `editor`'s bridge into `dest`, or, without one, into every install of the
/// editor found on this computer (native and Flatpak; the native default folder when none
/// is found). Returns what was done, for the user.
pub fn install(editor: Editor, dest: Option<&Path>) -> anyhow::Result<String> {
    let binary = this_binary()?;
    if let Some(dir) = dest {
        let said = write_bridge(editor, dir, &binary)?;
        return Ok(format!("{said}{}", next_step(editor)));
    }
    let home = Home::from_env()?;
    let all = places::places(editor, Os::current(), &home)?;
    let Some(default) = all.first() else {
        bail!(
            "{} runs on macOS and Windows; name a folder with --dest",
            editor.name()
        );
    };
    let mut said = String::new();
    let mut chosen: Vec<&Place> = all.iter().filter(|p| p.found).collect();
    if chosen.is_empty() {
        said += &format!(
            "found no {} settings on this computer (has it run yet?), so the bridge goes to its \
             default folder\n",
            editor.name()
        );
        chosen.push(default);
    }
    for place in chosen {
        said += &format!("{}:\n", place.label);
        let runs = match place.flatpak {
            Some(app) => {
                let (copy, plugins) = flatpak::install_copy(&home.home, app, &binary)?;
                said += &format!(
                    "  copied luminary and {plugins} plugin libraries to {} (inside the sandbox the \
                     editor runs this copy, with a daemon of its own)\n",
                    flatpak::bin_dir(&home.home, app).display()
                );
                copy
            }
            None => binary.clone(),
        };
        for line in write_bridge(editor, &place.dir, &runs)?.lines() {
            said += &format!("  {line}\n");
        }
    }
    said += next_step(editor);
    Ok(said)
}

fn next_step(editor: Editor) -> &'static str {
    match editor {
        Editor::Darktable => {
            "restart darktable: the \"Luminary\" panel is in the lighttable's right column, \
             \"Luminary\" in the export module's target storage list"
        }
        Editor::Gimp => "restart GIMP 3: Filters > Enhance > Luminary...",
        Editor::Lightroom => {
            "in Lightroom Classic: File > Plug-in Manager shows \"Luminary\" (restart Lightroom \
             if it was running); then Library > Plug-in Extras > Enhance with Luminary..., or choose \
             \"Luminary\" in the Export dialog"
        }
    }
}

/// Writes one bridge into `dir`, recording `binary` as the program it runs; returns one
/// line per thing done.
fn write_bridge(editor: Editor, dir: &Path, binary: &Path) -> anyhow::Result<String> {
    match editor {
        Editor::Darktable => write_darktable(dir, binary),
        Editor::Gimp => write_gimp(dir, binary),
        Editor::Lightroom => write_lightroom(dir, binary),
    }
}

/// The darktable script into `dir/lua/`, loaded from `dir/luarc`.
fn write_darktable(dir: &Path, binary: &Path) -> anyhow::Result<String> {
    let script = DARKTABLE_SCRIPT.replace(
        "local INSTALLED_BINARY = \"@LUMINARY_BINARY@\"",
        &format!(
            "local INSTALLED_BINARY = \"{}\"",
            lua_escape(&binary.to_string_lossy())
        ),
    );
    let script_path = dir.join("lua").join("luminary.lua");
    write_atomically(&script_path, &script)?;
    let luarc = dir.join("luarc");
    let existing = std::fs::read_to_string(&luarc).unwrap_or_default();
    let already = existing.lines().any(|l| {
        let l = l.trim();
        !l.starts_with("--")
            && l.contains("require")
            && (l.contains("\"luminary\"") || l.contains("'luminary'"))
    });
    let mut said = format!("installed {}\n", script_path.display());
    if already {
        said += &format!("{} already loads it\n", luarc.display());
    } else {
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("require \"luminary\"\n");
        write_atomically(&luarc, &text)?;
        said += &format!("added require \"luminary\" to {}\n", luarc.display());
    }
    said += &format!("the script runs {}\n", binary.display());
    Ok(said)
}

/// The GIMP 3 plug-in as `dir/luminary/luminary.py` (GIMP ignores a plug-in whose folder
/// and file names differ, or without the run bit).
fn write_gimp(dir: &Path, binary: &Path) -> anyhow::Result<String> {
    let py_literal = binary
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let script = GIMP_PLUGIN.replace(
        "INSTALLED_BINARY = \"@LUMINARY_BINARY@\"",
        &format!("INSTALLED_BINARY = \"{py_literal}\""),
    );
    let path = dir.join("luminary").join("luminary.py");
    write_atomically(&path, &script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(format!(
        "installed {}\nthe plug-in runs {}\n",
        path.display(),
        binary.display()
    ))
}

/// `Luminary.lrplugin` into `dir` (Lightroom's Modules folder).
fn write_lightroom(dir: &Path, binary: &Path) -> anyhow::Result<String> {
    let plugin = dir.join("Luminary.lrplugin");
    for (name, text) in LIGHTROOM_FILES {
        let text = if *name == "LuminaryConfig.lua" {
            text.replace(
                "INSTALLED_BINARY = \"@LUMINARY_BINARY@\"",
                &format!(
                    "INSTALLED_BINARY = \"{}\"",
                    lua_escape(&binary.to_string_lossy())
                ),
            )
        } else {
            text.to_string()
        };
        write_atomically(&plugin.join(name), &text)?;
    }
    Ok(format!(
        "installed {}\nthe plug-in runs {}\n",
        plugin.display(),
        binary.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_verbatim_paths_are_recorded_plain_where_they_can_be() {
        let plain = |s: &str| {
            without_verbatim_prefix(Path::new(s))
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(
            plain(r"\\?\C:\Program Files\Luminary\luminary.exe"),
            r"C:\Program Files\Luminary\luminary.exe"
        );
        assert_eq!(
            plain(r"\\?\UNC\nas\tools\luminary.exe"),
            r"\\nas\tools\luminary.exe"
        );
        let long = format!(r"\\?\D:\{}\luminary.exe", "x".repeat(300));
        assert_eq!(plain(&long), long, "a path past MAX_PATH needs its prefix");
        assert_eq!(plain("/usr/local/bin/luminary"), "/usr/local/bin/luminary");
    }

    #[test]
    fn install_is_idempotent_and_records_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("luarc"), "require \"other\"").unwrap();
        install(Editor::Darktable, Some(dir.path())).unwrap();
        install(Editor::Darktable, Some(dir.path())).unwrap();
        let luarc = std::fs::read_to_string(dir.path().join("luarc")).unwrap();
        assert_eq!(luarc, "require \"other\"\nrequire \"luminary\"\n");
        let script = std::fs::read_to_string(dir.path().join("lua/luminary.lua")).unwrap();
        assert!(!script.contains("@LUMINARY_BINARY@"));
        assert!(script.contains(&lua_escape(&this_binary().unwrap().to_string_lossy())));
    }

    #[test]
    fn gimp_plugin_lands_in_a_folder_of_its_own_name_and_is_executable() {
        let dir = tempfile::tempdir().unwrap();
        install(Editor::Gimp, Some(dir.path())).unwrap();
        let path = dir.path().join("luminary/luminary.py");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("@LUMINARY_BINARY@") && text.contains("python-fu-luminary-enhance"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o111,
                0o111
            );
        }
    }
}
