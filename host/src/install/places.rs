//! Where each editor reads bridges from, on each operating system, and which of those
//! places exist here. Pure functions of [`Home`], so every OS's rules are tested on any.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
    Windows,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Editor {
    Darktable,
    Gimp,
    Lightroom,
}

impl Editor {
    pub fn name(self) -> &'static str {
        match self {
            Editor::Darktable => "darktable",
            Editor::Gimp => "GIMP 3",
            Editor::Lightroom => "Lightroom Classic",
        }
    }

    /// The Flathub app id, for editors published there.
    fn flatpak_app(self) -> Option<&'static str> {
        match self {
            Editor::Darktable => Some("org.darktable.Darktable"),
            Editor::Gimp => Some("org.gimp.GIMP"),
            Editor::Lightroom => None,
        }
    }
}

/// The folders the rules depend on.
#[derive(Debug, Clone)]
pub struct Home {
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME` when set (darktable honours it on macOS too).
    pub xdg_config: Option<PathBuf>,
    /// Windows' `%APPDATA%` (roaming).
    pub appdata: Option<PathBuf>,
    /// Windows' `%LOCALAPPDATA%`.
    pub local_appdata: Option<PathBuf>,
}

impl Home {
    pub fn from_env() -> anyhow::Result<Home> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = directories::BaseDirs::new()
            .map(|b| b.home_dir().to_path_buf())
            .context("cannot find the home folder")?;
        Ok(Home {
            home,
            xdg_config: var("XDG_CONFIG_HOME"),
            appdata: var("APPDATA"),
            local_appdata: var("LOCALAPPDATA"),
        })
    }

    fn config(&self) -> PathBuf {
        self.xdg_config
            .clone()
            .unwrap_or_else(|| self.home.join(".config"))
    }

    fn windows(&self, dir: &Option<PathBuf>, var: &str) -> anyhow::Result<PathBuf> {
        dir.clone().with_context(|| format!("%{var}% is not set"))
    }
}

/// One place an editor install reads bridges from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// For the user: "darktable", "darktable (Flatpak)".
    pub label: String,
    /// darktable: its config folder; GIMP: its plug-ins folder; Lightroom: Modules.
    pub dir: PathBuf,
    /// The Flatpak app id, when the editor runs in a Flatpak sandbox.
    pub flatpak: Option<&'static str>,
    /// The editor's own folder exists (it has run here), so the bridge belongs there.
    pub found: bool,
}

/// Every place `editor` may read bridges from on `os`, the native one first. Which exist
/// is read from the file system under `home`.
pub fn places(editor: Editor, os: Os, home: &Home) -> anyhow::Result<Vec<Place>> {
    let native = |dir: PathBuf, marker: &Path| Place {
        label: editor.name().to_string(),
        found: marker.is_dir(),
        dir,
        flatpak: None,
    };
    let support = home.home.join("Library/Application Support");
    let mut v = Vec::new();
    match (editor, os) {
        (Editor::Darktable, Os::Windows) => {
            let dir = home
                .windows(&home.local_appdata, "LOCALAPPDATA")?
                .join("darktable");
            v.push(native(dir.clone(), &dir));
        }
        (Editor::Darktable, _) => {
            let dir = home.config().join("darktable");
            v.push(native(dir.clone(), &dir));
        }
        (Editor::Gimp, os) => {
            let version = match os {
                Os::Windows => home
                    .windows(&home.appdata, "APPDATA")?
                    .join("GIMP")
                    .join("3.0"),
                Os::MacOs => support.join("GIMP/3.0"),
                Os::Linux => home.config().join("GIMP").join("3.0"),
            };
            v.push(native(version.join("plug-ins"), &version));
        }
        (Editor::Lightroom, Os::Linux) => {}
        (Editor::Lightroom, os) => {
            let lightroom = match os {
                Os::Windows => home
                    .windows(&home.appdata, "APPDATA")?
                    .join("Adobe")
                    .join("Lightroom"),
                _ => support.join("Adobe/Lightroom"),
            };
            v.push(native(lightroom.join("Modules"), &lightroom));
        }
    }
    if let (Os::Linux, Some(app)) = (os, editor.flatpak_app()) {
        let root = home.home.join(".var/app").join(app);
        let dir = match editor {
            Editor::Darktable => root.join("config/darktable"),
            _ => root.join("config/GIMP/3.0/plug-ins"),
        };
        v.push(Place {
            label: format!("{} (Flatpak {app})", editor.name()),
            found: root.is_dir(),
            dir,
            flatpak: Some(app),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(root: &Path) -> Home {
        Home {
            home: root.join("home"),
            xdg_config: None,
            appdata: Some(root.join("home/AppData/Roaming")),
            local_appdata: Some(root.join("home/AppData/Local")),
        }
    }

    fn dirs(v: &[Place]) -> Vec<(PathBuf, bool)> {
        v.iter().map(|p| (p.dir.clone(), p.found)).collect()
    }

    #[test]
    fn each_os_has_its_editors_folders() {
        let t = tempfile::tempdir().unwrap();
        let h = home(t.path());
        let at = |rel: &str| h.home.join(rel);
        let cases = [
            (
                Editor::Darktable,
                Os::Windows,
                vec![at("AppData/Local/darktable")],
            ),
            (
                Editor::Gimp,
                Os::Windows,
                vec![at("AppData/Roaming/GIMP/3.0/plug-ins")],
            ),
            (
                Editor::Lightroom,
                Os::Windows,
                vec![at("AppData/Roaming/Adobe/Lightroom/Modules")],
            ),
            (Editor::Darktable, Os::MacOs, vec![at(".config/darktable")]),
            (
                Editor::Gimp,
                Os::MacOs,
                vec![at("Library/Application Support/GIMP/3.0/plug-ins")],
            ),
            (
                Editor::Lightroom,
                Os::MacOs,
                vec![at("Library/Application Support/Adobe/Lightroom/Modules")],
            ),
            (
                Editor::Darktable,
                Os::Linux,
                vec![
                    at(".config/darktable"),
                    at(".var/app/org.darktable.Darktable/config/darktable"),
                ],
            ),
            (
                Editor::Gimp,
                Os::Linux,
                vec![
                    at(".config/GIMP/3.0/plug-ins"),
                    at(".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"),
                ],
            ),
            (Editor::Lightroom, Os::Linux, vec![]),
        ];
        for (editor, os, want) in cases {
            let got: Vec<PathBuf> = places(editor, os, &h)
                .unwrap()
                .into_iter()
                .map(|p| p.dir)
                .collect();
            assert_eq!(got, want, "{editor:?} on {os:?}");
        }
    }

    #[test]
    fn an_install_is_found_by_the_folder_the_editor_made() {
        let t = tempfile::tempdir().unwrap();
        let mut h = home(t.path());
        let got = places(Editor::Darktable, Os::Linux, &h).unwrap();
        assert!(got.iter().all(|p| !p.found), "{got:?}");
        // Only the Flatpak darktable has run here.
        std::fs::create_dir_all(h.home.join(".var/app/org.darktable.Darktable")).unwrap();
        let got = places(Editor::Darktable, Os::Linux, &h).unwrap();
        assert_eq!(
            dirs(&got),
            [
                (h.home.join(".config/darktable"), false),
                (
                    h.home
                        .join(".var/app/org.darktable.Darktable/config/darktable"),
                    true
                ),
            ]
        );
        assert_eq!(got[1].flatpak, Some("org.darktable.Darktable"));
        // XDG_CONFIG_HOME moves the native one; GIMP is found by its 3.0 folder, before it
        // has any plug-ins.
        h.xdg_config = Some(t.path().join("xdg"));
        std::fs::create_dir_all(t.path().join("xdg/GIMP/3.0")).unwrap();
        let got = places(Editor::Gimp, Os::Linux, &h).unwrap();
        assert_eq!(
            dirs(&got)[0],
            (t.path().join("xdg/GIMP/3.0/plug-ins"), true)
        );
        // Windows without %APPDATA% says so.
        h.appdata = None;
        let e = places(Editor::Lightroom, Os::Windows, &h).unwrap_err();
        assert_eq!(e.to_string(), "%APPDATA% is not set");
    }
}
