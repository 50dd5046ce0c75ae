//! What the CLI's commands share (`cli`, `cli_cost`, `cli_look`): `--param` pairs,
//! `--files-from` lists, paths kept as written, and result files written atomically. Below
//! the commands, so none of them reaches into another for it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::{Map, Value};

/// `--param KEY=VALUE` pairs.
pub(crate) fn parse_params(raw: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for p in raw {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param '{p}' must look like KEY=VALUE"))?;
        // Strings go over the wire as given; the daemon converts them by the preset's schema.
        m.insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader (Lightroom
/// polling for the result) never sees a half-written file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `p` made absolute by joining it to the working folder, every component kept as written.
/// Not `std::path::absolute`: on Windows that asks GetFullPathNameW, which turns a file
/// named like a device (`D:\Fotos\CON.tif`) into the device itself (`\\.\CON`), so
/// `--out CON.tif` would write to the console instead of becoming `CON_.tif`.
pub(crate) fn absolute_as_written(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p),
        Err(_) => p.to_path_buf(),
    }
}

/// One photo of a run: the file, and its own output file when the list named one.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) out: Option<PathBuf>,
}

/// The photo paths of a `--files-from` list: one per line, blank lines skipped; a UTF-8
/// byte-order mark and Windows line ends (text-mode writes on Windows) are allowed.
pub(crate) fn read_file_list(list: &Path) -> anyhow::Result<Vec<Input>> {
    let bytes = std::fs::read(list)
        .with_context(|| format!("{}: cannot read the list of photos", list.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: the list of photos is not UTF-8 (byte {})",
            list.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| match l.split_once('\t') {
            None => Ok(Input {
                path: PathBuf::from(l),
                out: None,
            }),
            Some((path, out)) if !path.is_empty() && !out.is_empty() && !out.contains('\t') => {
                Ok(Input {
                    path: PathBuf::from(path),
                    out: Some(PathBuf::from(out)),
                })
            }
            Some(_) => bail!(
                "{} line {}: expected PHOTO or PHOTO<TAB>OUTPUT",
                list.display(),
                n + 1
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_list_keeps_each_path_as_written_whatever_the_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("photos.txt");
        std::fs::write(
            &list,
            "\u{feff}C:\\Fotos\\Braut & Bräutigam 100% ^1!.dng\r\n\r\n/photos/IMG 0042.edit.v2.CR2\n  leading space.tif\n\
             C:\\Temp\\render 1.tif\tC:\\Fotos\\Braut 1-luminary-auto.tif\r\n",
        )
        .unwrap();
        let got: Vec<(PathBuf, Option<PathBuf>)> = read_file_list(&list)
            .unwrap()
            .into_iter()
            .map(|i| (i.path, i.out))
            .collect();
        let p = PathBuf::from;
        assert_eq!(
            got,
            [
                (p("C:\\Fotos\\Braut & Bräutigam 100% ^1!.dng"), None),
                (p("/photos/IMG 0042.edit.v2.CR2"), None),
                (p("  leading space.tif"), None),
                (
                    p("C:\\Temp\\render 1.tif"),
                    Some(p("C:\\Fotos\\Braut 1-luminary-auto.tif"))
                ),
            ]
        );
    }

    #[test]
    fn a_bad_file_list_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.txt");
        let e = read_file_list(&missing).unwrap_err();
        assert!(
            format!("{e:#}").contains("gone.txt: cannot read the list of photos"),
            "{e:#}"
        );
        let latin1 = dir.path().join("latin1.txt");
        std::fs::write(&latin1, b"/photos/Br\xe4utigam.dng\n").unwrap();
        let e = read_file_list(&latin1).unwrap_err().to_string();
        assert!(
            e.contains("latin1.txt: the list of photos is not UTF-8 (byte 10)"),
            "{e}"
        );
        let tabs = dir.path().join("tabs.txt");
        std::fs::write(&tabs, "/a.dng\n/b.dng\t\n").unwrap();
        let e = read_file_list(&tabs).unwrap_err().to_string();
        assert!(
            e.contains("tabs.txt line 2: expected PHOTO or PHOTO<TAB>OUTPUT"),
            "{e}"
        );
    }
}
