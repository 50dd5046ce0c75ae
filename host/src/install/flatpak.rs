//! A `luminary` for an editor in a Flatpak sandbox.
//!
//! Inside the sandbox the host's `/usr` and `/opt` are not there, so the bridge cannot
//! run the host's binary. What every Flatpak app can always reach is its own folder,
//! `~/.var/app/<id>/`. So `install` copies the binary and the first-party plugin libraries
//! beside it into `~/.var/app/<id>/data/luminary/bin/`, and that copy runs inside the
//! sandbox with a daemon of its own (its socket, cache and ledger in the app's folders).
//! It reads the photos because Flathub's darktable and GIMP both have
//! `--filesystem=host`; where a user removed that permission, the bridge's error names
//! the unreadable file and README says how to grant it back. No extra permission is needed.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `~/.var/app/<app>/data/luminary/bin`.
pub fn bin_dir(home: &Path, app: &str) -> PathBuf {
    home.join(".var/app").join(app).join("data/luminary/bin")
}

/// Copies `binary` and the `*luminary_*` plugin libraries beside it into the app's folder
/// (each through a temporary file and a rename, so a running copy is never half
/// replaced). Returns the copy's path and how many plugins went with it.
pub fn install_copy(home: &Path, app: &str, binary: &Path) -> anyhow::Result<(PathBuf, usize)> {
    let dest = bin_dir(home, app);
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let name = binary.file_name().context("the binary has no file name")?;
    let copy = dest.join(name);
    copy_file(binary, &copy)?;
    let mut plugins = 0;
    if let Some(dir) = binary.parent() {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            let file = e.file_name().to_string_lossy().into_owned();
            if file.contains("luminary_")
                && p.extension().and_then(|x| x.to_str()) == Some(std::env::consts::DLL_EXTENSION)
            {
                copy_file(&p, &dest.join(&file))?;
                plugins += 1;
            }
        }
    }
    Ok((copy, plugins))
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().context("no parent folder")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut src =
        std::fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    std::io::copy(&mut src, &mut tmp).with_context(|| format!("cannot copy {}", from.display()))?;
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    tmp.persist(to)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}
