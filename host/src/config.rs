//! `config.toml`: every key optional, defaults chosen for a photographer's laptop.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::color::OutputSpace;

/// The whole configuration file.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Daemon settings.
    pub daemon: DaemonConfig,
    /// Input limits.
    pub limits: Limits,
    /// Output defaults.
    pub output: OutputConfig,
    /// Engine defaults.
    pub engine: EngineConfig,
    /// Plugin runner limits.
    pub plugins: PluginsConfig,
    /// AI engines, one `[engines.<name>]` table each (`base_url`, `model`, `api_key`,
    /// timeouts, `concurrency`, `price_per_image`; see engines/README.md).
    pub engines: std::collections::BTreeMap<String, luminary_engines::ProviderConfig>,
    /// The edit cache.
    pub cache: CacheConfig,
    /// Spending caps for the paid engines (`budget.rs`).
    pub budget: crate::budget::BudgetConfig,
    /// Live previews.
    pub preview: PreviewConfig,
}

/// `[preview]`: what the daemon keeps in memory for previews.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct PreviewConfig {
    /// Memory for recent photos' preview-size bases and edits (least recently used go
    /// first), MB, half for photos and half for edits. A 3:2 photo takes about 42 MB, one
    /// edit of it about 34 MB.
    pub memory_mb: u64,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig { memory_mb: 512 }
    }
}

/// `[cache]`: engine answers kept so the same edit is never paid for twice.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Size bound in MB; least recently used answers go first (an answer is 1–3 MB).
    pub max_mb: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_mb: 2048 }
    }
}

/// `[plugins]`: how long plugins may take and how often they may crash.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Seconds a plugin may take to describe its presets or build a request.
    pub call_timeout_s: f64,
    /// Seconds a preset's pixel function may take on a full-resolution photo.
    pub pixels_timeout_s: f64,
    /// Crashes (or overrun deadlines) after which a plugin is quarantined until
    /// `luminary plugins reload`.
    pub max_crashes: u32,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            call_timeout_s: 10.0,
            pixels_timeout_s: 120.0,
            max_crashes: 3,
        }
    }
}

/// `[daemon]`
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Jobs that run at once; the rest wait in order. Full-resolution jobs are CPU- and
    /// memory-bound, so more than the core count only adds memory.
    pub max_jobs: usize,
    /// Extra plugin folders searched after the built-in ones.
    pub plugin_dirs: Vec<PathBuf>,
    /// Jobs one client may have waiting or running; more get a `busy` error.
    pub max_jobs_per_client: usize,
    /// Jobs all clients together may have waiting or running; more get `busy`.
    pub max_jobs_total: usize,
    /// Seconds `stop` and SIGTERM let running jobs finish before cancelling them.
    pub shutdown_grace_s: f64,
    /// Memory full-resolution jobs may use together, in MB (0: half the machine's memory).
    /// A job is estimated before it starts (a 45 MP RAW needs about 1.1 GB) and waits
    /// until it fits; a job larger than the whole budget runs alone.
    pub memory_budget_mb: u64,
    /// Seconds with no connection and no job after which the daemon exits (0: never). A
    /// client starts a new one when it needs it, so this only returns memory and plugin
    /// processes to the system; half an hour keeps a working session's daemon warm.
    pub idle_exit_s: f64,
}

impl DaemonConfig {
    /// The memory budget in MB, resolving 0 to half the machine's memory.
    pub fn memory_budget_mb(&self) -> u64 {
        if self.memory_budget_mb > 0 {
            return self.memory_budget_mb;
        }
        #[cfg(target_os = "linux")]
        if let Some(kb) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        }) {
            return (kb / 1024 / 2).max(1024);
        }
        4096
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            max_jobs: std::thread::available_parallelism()
                .map(|n| n.get().clamp(1, 4))
                .unwrap_or(2)
                .min(2),
            plugin_dirs: Vec::new(),
            max_jobs_per_client: 64,
            max_jobs_total: 512,
            shutdown_grace_s: 10.0,
            memory_budget_mb: 0,
            idle_exit_s: 1800.0,
        }
    }
}

pub use crate::ingest::Limits;

/// Output file formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// 16-bit TIFF, uncompressed, with ICC, EXIF and XMP (the default: lossless, editors
    /// import it as a full-quality new version).
    #[default]
    Tiff,
    /// 8-bit JPEG, quality from the config (95), 4:4:4.
    Jpeg,
    /// 16-bit PNG.
    Png,
}

impl Format {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Tiff => "tif",
            Format::Jpeg => "jpg",
            Format::Png => "png",
        }
    }
}

/// `[output]`
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Format when the request names none.
    pub format: Format,
    /// Colour space when the request names none.
    pub color_space: OutputSpace,
    /// JPEG quality, 1–100.
    pub jpeg_quality: u8,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            format: Format::Tiff,
            color_space: OutputSpace::Srgb,
            jpeg_quality: 95,
        }
    }
}

/// `[engine]`
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Engine used when neither the request nor the preset names one.
    pub default: String,
    /// Long edge of the preview sent to engines, in pixels.
    pub preview_size: u32,
    /// `luminary enhance` at a terminal asks before a paid batch estimated above this many
    /// US dollars (scripts and editors are never asked).
    pub confirm_above_usd: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default: "local".into(),
            preview_size: 1024,
            confirm_above_usd: 1.0,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file means all defaults, a broken one is an error naming it.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config: Config = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: invalid configuration: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "{}: cannot read configuration: {e}",
                    path.display()
                ))
            }
        };
        for name in config.engines.keys() {
            if !luminary_engines::NAMES.contains(&name.as_str()) {
                anyhow::bail!(
                    "{}: unknown engine [engines.{name}]; known engines: {}",
                    path.display(),
                    luminary_engines::NAMES.join(", ")
                );
            }
        }
        if let Some(w) = config.key_permission_warning(path) {
            tracing::warn!("{w}");
            eprintln!("warning: {w}");
        }
        Ok(config)
    }

    /// A warning when the file holds API keys and other users can read it.
    pub fn key_permission_warning(&self, path: &Path) -> Option<String> {
        if !self.engines.values().any(|e| e.api_key.is_some()) {
            return None;
        }
        // Windows: the file inherits the profile folder's access list, private already.
        #[cfg(not(unix))]
        let _ = path;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).ok()?.permissions().mode();
            if mode & 0o077 != 0 {
                return Some(format!(
                    "{} holds API keys and other users can read it (mode {:o}); run: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_other_defaults_and_typos_are_errors() {
        let c: Config =
            toml::from_str("[limits]\nmax_pixels = 1000\n[output]\ncolor_space = \"display-p3\"")
                .unwrap();
        assert_eq!(c.limits.max_pixels, 1000);
        assert_eq!(c.limits.max_file_bytes, 1 << 30);
        assert_eq!(c.output.color_space, OutputSpace::DisplayP3);
        assert!(toml::from_str::<Config>("[limits]\nmax_pixel = 1").is_err());
    }
}
