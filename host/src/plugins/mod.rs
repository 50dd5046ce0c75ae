//! Finding plugins, running them in runner processes, and the registry of their presets.
//!
//! Search path, in order: the folder of the `luminary` executable (so a plain cargo build
//! finds the first-party plugins; only files named `*luminary_*` are tried there), the
//! user's data folder `plugins/`, `[daemon] plugin_dirs`, and `LUMINARY_PLUGIN_PATH`.
//! Each library is loaded by its own `luminary plugin-runner` process (see `runner`); one
//! that fails to load is recorded with a one-line reason and never stops the others. When
//! two plugins offer the same preset id, the first found wins and the clash is reported.

pub mod params;
pub mod runner;

pub use params::resolve_params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use luminary_plugin_api::{PluginInfo, PresetDescriptor};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorCode, JobError};
use runner::{PluginHandle, RunnerLimits, StartError};

/// What `luminary plugins` shows for one library.
#[derive(Serialize, Clone, Debug)]
pub struct PluginReport {
    /// Library file.
    pub file: PathBuf,
    /// `loaded`, `restarting`, `quarantined` or `failed`.
    pub state: &'static str,
    /// Description, when it loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<PluginInfo>,
    /// Preset ids it provides.
    pub presets: Vec<String>,
    /// Why it failed or what was skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Interface ids offered (e.g. `luminary.presets/1`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// How often its runner crashed or hung.
    pub crashes: u32,
}

/// A preset as the daemon knows it.
#[derive(Serialize, Clone, Debug)]
pub struct PresetInfo {
    /// The plugin's descriptor.
    #[serde(flatten)]
    pub descriptor: PresetDescriptor,
    /// Id of the plugin that provides it.
    pub plugin: String,
}

/// All loaded plugins and their presets.
pub struct Registry {
    plugins: Vec<Arc<PluginHandle>>,
    /// Report index of each running plugin, to refresh its state.
    plugin_reports: Vec<usize>,
    reports: Vec<PluginReport>,
    presets: BTreeMap<String, (PresetInfo, usize)>,
}

fn is_dylib(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

/// Folders searched for plugins.
pub fn search_path(data_dir: &Path, extra: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    if let Some(exe_dir) = crate::paths::self_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push((exe_dir, true));
    }
    dirs.push((data_dir.join("plugins"), false));
    dirs.extend(extra.iter().map(|d| (d.clone(), false)));
    if let Some(v) = std::env::var_os("LUMINARY_PLUGIN_PATH") {
        dirs.extend(
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, false)),
        );
    }
    dirs
}

/// Checks a descriptor before the daemon offers it.
fn check_descriptor(d: &PresetDescriptor) -> Result<(), String> {
    if d.id.is_empty()
        || !d
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "preset id '{}' must be lowercase letters, digits and '-'",
            d.id
        ));
    }
    if !(0.0..=1.0).contains(&d.default_intensity) {
        return Err(format!(
            "preset '{}' has default intensity {} outside 0..1",
            d.id, d.default_intensity
        ));
    }
    let schema = d
        .params_schema
        .as_object()
        .ok_or_else(|| format!("preset '{}': params_schema is not an object", d.id))?;
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "preset '{}': params_schema must have \"type\": \"object\"",
            d.id
        ));
    }
    if let Some(props) = schema.get("properties") {
        let props = props
            .as_object()
            .ok_or_else(|| format!("preset '{}': properties is not an object", d.id))?;
        for (k, p) in props {
            let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
            if !["number", "integer", "boolean", "string"].contains(&ty) {
                return Err(format!(
                    "preset '{}': parameter '{k}' has unsupported type '{ty}'",
                    d.id
                ));
            }
        }
    }
    Ok(())
}

impl Registry {
    /// Loads every plugin found in `dirs` (`(folder, only_luminary_named)`).
    pub fn discover(dirs: &[(PathBuf, bool)], limits: &RunnerLimits) -> Registry {
        let mut reg = Registry {
            plugins: Vec::new(),
            plugin_reports: Vec::new(),
            reports: Vec::new(),
            presets: BTreeMap::new(),
        };
        let mut seen = std::collections::HashSet::new();
        for (dir, strict) in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_dylib(p))
                .collect();
            files.sort();
            for file in files {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if *strict && !name.contains("luminary_") {
                    continue;
                }
                let canon = file.canonicalize().unwrap_or(file.clone());
                if seen.insert(canon) {
                    reg.load(&file, limits);
                }
            }
        }
        reg
    }

    /// Loads exactly these libraries (for `luminary plugins check`).
    pub fn from_files(files: &[PathBuf], limits: &RunnerLimits) -> Registry {
        let mut reg = Registry {
            plugins: Vec::new(),
            plugin_reports: Vec::new(),
            reports: Vec::new(),
            presets: BTreeMap::new(),
        };
        for f in files {
            reg.load(f, limits);
        }
        reg
    }

    fn failed(&mut self, file: &Path, reason: String) {
        tracing::warn!("plugin not loaded: {}: {reason}", file.display());
        self.reports.push(PluginReport {
            file: file.to_path_buf(),
            state: "failed",
            info: None,
            presets: vec![],
            problems: vec![reason],
            interfaces: vec![],
            crashes: 0,
        });
    }

    fn load(&mut self, file: &Path, limits: &RunnerLimits) {
        let plugin = match PluginHandle::start(file, limits.clone()) {
            Ok(p) => Arc::new(p),
            Err(StartError::Load { summary, detail }) => {
                if !detail.is_empty() {
                    tracing::debug!("{}: {detail}", file.display());
                }
                return self.failed(file, summary);
            }
            Err(StartError::Process(why)) => return self.failed(file, why),
        };
        let mut report = PluginReport {
            file: file.to_path_buf(),
            state: "loaded",
            info: Some(plugin.info.clone()),
            presets: vec![],
            problems: vec![],
            interfaces: plugin.interfaces.clone(),
            crashes: 0,
        };
        match &plugin.presets {
            Ok(list) => {
                let index = self.plugins.len();
                for d in list {
                    if let Err(why) = check_descriptor(d) {
                        report.problems.push(why);
                    } else if let Some((existing, _)) = self.presets.get(&d.id) {
                        report.problems.push(format!(
                            "preset '{}' is already provided by {}",
                            d.id, existing.plugin
                        ));
                    } else {
                        report.presets.push(d.id.clone());
                        let info = PresetInfo {
                            descriptor: d.clone(),
                            plugin: plugin.info.id.clone(),
                        };
                        self.presets.insert(d.id.clone(), (info, index));
                    }
                }
            }
            Err(e) => {
                report.state = "failed";
                report.problems.push(format!("cannot list presets: {e}"));
            }
        }
        for p in &report.problems {
            tracing::warn!("{}: {p}", file.display());
        }
        self.plugin_reports.push(self.reports.len());
        self.reports.push(report);
        self.plugins.push(plugin);
    }

    /// Gives back the shared pixel buffers plugins keep between pixel calls (the daemon is
    /// idle). Returns how many there were.
    pub fn release_pixels(&self) -> usize {
        self.plugins.iter().filter(|p| p.release_pixels()).count()
    }

    /// Every library tried, loaded or not, with its current state.
    pub fn reports(&self) -> Vec<PluginReport> {
        let mut reports = self.reports.clone();
        for (plugin, &i) in self.plugins.iter().zip(&self.plugin_reports) {
            if reports[i].state != "failed" {
                reports[i].state = plugin.state();
            }
            let (crashes, last) = plugin.crash_report();
            reports[i].crashes = crashes;
            if let Some(last) = last {
                reports[i].problems.push(format!("last crash: {last}"));
            }
        }
        reports
    }

    /// Every preset, sorted by id.
    pub fn presets(&self) -> impl Iterator<Item = &PresetInfo> {
        self.presets.values().map(|(p, _)| p)
    }

    /// A preset and the plugin that provides it.
    pub fn preset(&self, id: &str) -> Result<(&PresetInfo, &Arc<PluginHandle>), JobError> {
        match self.presets.get(id) {
            Some((info, i)) => Ok((info, &self.plugins[*i])),
            None => {
                let known: Vec<&str> = self.presets.keys().map(String::as_str).collect();
                Err(JobError::new(
                    ErrorCode::UnknownPreset,
                    if known.is_empty() {
                        format!("unknown preset '{id}': no preset plugins are loaded (see `luminary plugins`)")
                    } else {
                        format!("unknown preset '{id}'; available: {}", known.join(", "))
                    },
                ))
            }
        }
    }
}
