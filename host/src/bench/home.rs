//! A home of its own for the daemons a benchmark starts (`--batch`, `--preview`).

/// Points `XDG_*` at folders inside a new temporary one, so the daemons a benchmark
/// starts use nothing of the user's. Call before any other thread starts.
pub(super) fn private_home() -> anyhow::Result<tempfile::TempDir> {
    let home = tempfile::tempdir()?;
    for (k, d) in [
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_RUNTIME_DIR", "runtime"),
    ] {
        let dir = home.path().join(d);
        std::fs::create_dir_all(&dir)?;
        // SAFETY (edition 2021: a safe call): only this thread runs at this point.
        std::env::set_var(k, &dir);
    }
    Ok(home)
}
