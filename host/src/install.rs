//! `luminary install <editor>`: put a bridge where its editor looks for it.
//!
//! Each bridge records the absolute path of the `luminary` binary that installed it,
//! because editors started from a desktop menu or the macOS Dock do not get the shell's
//! PATH.

use std::path::{Path, PathBuf};

use anyhow::Context;

const DARKTABLE_SCRIPT: &str = include_str!("../../darktable-lua/luminary.lua");
const GIMP_PLUGIN: &str = include_str!("../../gimp-bridge/luminary/luminary.py");

/// The Lightroom plug-in folder's files, compiled in so the binary installs its own bridge.
const LIGHTROOM_FILES: &[(&str, &str)] = &[
    (
        "Info.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/Info.lua"),
    ),
    (
        "LuminaryConfig.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/LuminaryConfig.lua"),
    ),
    (
        "JSON.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/JSON.lua"),
    ),
    (
        "LuminaryCore.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/LuminaryCore.lua"),
    ),
    (
        "LuminaryDialog.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/LuminaryDialog.lua"),
    ),
    (
        "EnhanceMenuItem.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/EnhanceMenuItem.lua"),
    ),
    (
        "ExportServiceProvider.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/ExportServiceProvider.lua"),
    ),
    (
        "PluginInfoProvider.lua",
        include_str!("../../lr-bridge/Luminary.lrplugin/PluginInfoProvider.lua"),
    ),
];

/// The binary to record: this executable, canonical.
fn this_binary() -> anyhow::Result<PathBuf> {
    let exe = crate::paths::self_exe().context("cannot find the luminary executable")?;
    Ok(exe.canonicalize().unwrap_or(exe))
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

/// darktable's config folder for this OS.
fn darktable_configdir() -> anyhow::Result<PathBuf> {
    if cfg!(windows) {
        let base = std::env::var_os("LOCALAPPDATA").context("LOCALAPPDATA is not set")?;
        return Ok(PathBuf::from(base).join("darktable"));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("darktable"));
    }
    let home = directories::BaseDirs::new().context("cannot find the home folder")?;
    Ok(home.home_dir().join(".config").join("darktable"))
}

/// Installs the darktable script; returns what was done, for the user.
pub fn darktable(configdir: Option<&Path>) -> anyhow::Result<String> {
    let dir = match configdir {
        Some(d) => d.to_path_buf(),
        None => darktable_configdir()?,
    };
    let binary = this_binary()?;
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
    said += &format!(
        "the script runs {}\nrestart darktable: the \"Luminary\" panel is in the lighttable's right column, \
         \"Luminary\" in the export module's target storage list",
        binary.display()
    );
    Ok(said)
}

/// GIMP 3's user plug-ins folder for this OS.
fn gimp_plugins_dir() -> anyhow::Result<PathBuf> {
    let base = directories::BaseDirs::new().context("cannot find the home folder")?;
    Ok(if cfg!(target_os = "macos") {
        base.home_dir()
            .join("Library/Application Support/GIMP/3.0/plug-ins")
    } else if cfg!(windows) {
        base.config_dir().join("GIMP").join("3.0").join("plug-ins")
    } else {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| base.home_dir().join(".config"));
        config.join("GIMP").join("3.0").join("plug-ins")
    })
}

/// Installs the GIMP 3 plug-in as `DIR/luminary/luminary.py` (GIMP ignores a plug-in whose
/// folder and file names differ, or without the run bit).
pub fn gimp(dest: Option<&Path>) -> anyhow::Result<String> {
    let dir = match dest {
        Some(d) => d.to_path_buf(),
        None => gimp_plugins_dir()?,
    };
    let binary = this_binary()?;
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
        "installed {}\nthe plug-in runs {}\nrestart GIMP 3: Filters > Enhance > Luminary...",
        path.display(),
        binary.display()
    ))
}

/// Lightroom Classic's Modules folder for this OS.
fn lightroom_modules_dir() -> anyhow::Result<PathBuf> {
    let base = directories::BaseDirs::new().context("cannot find the home folder")?;
    if cfg!(target_os = "macos") {
        Ok(base
            .home_dir()
            .join("Library/Application Support/Adobe/Lightroom/Modules"))
    } else if cfg!(windows) {
        Ok(base
            .config_dir()
            .join("Adobe")
            .join("Lightroom")
            .join("Modules"))
    } else {
        anyhow::bail!("Lightroom Classic runs on macOS and Windows; name a folder with --dest")
    }
}

/// Installs `Luminary.lrplugin` into Lightroom's Modules folder (or `dest`).
pub fn lightroom(dest: Option<&Path>) -> anyhow::Result<String> {
    let dir = match dest {
        Some(d) => d.to_path_buf(),
        None => lightroom_modules_dir()?,
    };
    let plugin = dir.join("Luminary.lrplugin");
    let binary = this_binary()?;
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
        "installed {}\nthe plug-in runs {}\nin Lightroom Classic: File > Plug-in Manager shows \"Luminary\" (restart Lightroom \
         if it was running); then Library > Plug-in Extras > Enhance with Luminary..., or choose \"Luminary\" in the Export dialog",
        plugin.display(),
        binary.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_records_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("luarc"), "require \"other\"").unwrap();
        darktable(Some(dir.path())).unwrap();
        darktable(Some(dir.path())).unwrap();
        let luarc = std::fs::read_to_string(dir.path().join("luarc")).unwrap();
        assert_eq!(luarc, "require \"other\"\nrequire \"luminary\"\n");
        let script = std::fs::read_to_string(dir.path().join("lua/luminary.lua")).unwrap();
        assert!(!script.contains("@LUMINARY_BINARY@"));
        assert!(script.contains(&lua_escape(&this_binary().unwrap().to_string_lossy())));
    }

    #[test]
    fn gimp_plugin_lands_in_a_folder_of_its_own_name_and_is_executable() {
        let dir = tempfile::tempdir().unwrap();
        gimp(Some(dir.path())).unwrap();
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
