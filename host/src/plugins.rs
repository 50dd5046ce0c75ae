//! Finding, loading and asking preset plugins; validating preset parameters.
//!
//! Search path, in order: the folder of the `luminary` executable (so a plain cargo build
//! finds the first-party plugins; only files named `*luminary_*` are tried there), the
//! user's data folder `plugins/`, `[daemon] plugin_dirs`, and `LUMINARY_PLUGIN_PATH`.
//! A library that fails to load is recorded with its reason and never stops the others.
//! When two plugins offer the same preset id, the first found wins and the clash is
//! reported.
//!
//! For now plugins load inside the daemon process; crash isolation in a runner process is
//! tracked separately (see docs/ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use luminary_plugin_api::host::LoadedPlugin;
use luminary_plugin_api::{PluginInfo, PresetDescriptor};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ErrorCode, JobError};

/// What `luminary plugins` shows for one library.
#[derive(Serialize, Clone, Debug)]
pub struct PluginReport {
    /// Library file.
    pub file: PathBuf,
    /// `loaded` or `failed`.
    pub state: &'static str,
    /// Description, when it loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<PluginInfo>,
    /// Preset ids it provides.
    pub presets: Vec<String>,
    /// Why it failed or what was skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
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
    plugins: Vec<LoadedPlugin>,
    reports: Vec<PluginReport>,
    presets: BTreeMap<String, (PresetInfo, usize)>,
}

fn is_dylib(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

/// Folders searched for plugins.
pub fn search_path(data_dir: &Path, extra: &[PathBuf]) -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
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
    pub fn discover(dirs: &[(PathBuf, bool)]) -> Registry {
        let mut reg = Registry {
            plugins: Vec::new(),
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
                    reg.load(&file);
                }
            }
        }
        reg
    }

    fn load(&mut self, file: &Path) {
        let plugin = match LoadedPlugin::open(file) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("plugin not loaded: {e}");
                tracing::debug!("{}", e.detail);
                self.reports.push(PluginReport {
                    file: file.to_path_buf(),
                    state: "failed",
                    info: None,
                    presets: vec![],
                    problems: vec![e.reason],
                });
                return;
            }
        };
        let mut report = PluginReport {
            file: file.to_path_buf(),
            state: "loaded",
            info: Some(plugin.info().clone()),
            presets: vec![],
            problems: vec![],
        };
        match plugin.presets() {
            Ok(list) => {
                let index = self.plugins.len();
                for d in list {
                    if let Err(why) = check_descriptor(&d) {
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
                            plugin: plugin.info().id.clone(),
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
        self.reports.push(report);
        self.plugins.push(plugin);
    }

    /// Every library tried, loaded or not.
    pub fn reports(&self) -> &[PluginReport] {
        &self.reports
    }

    /// Every preset, sorted by id.
    pub fn presets(&self) -> impl Iterator<Item = &PresetInfo> {
        self.presets.values().map(|(p, _)| p)
    }

    /// A preset and the plugin that provides it.
    pub fn preset(&self, id: &str) -> Result<(&PresetInfo, &LoadedPlugin), JobError> {
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

/// Validates `given` against the preset's schema, coercing strings from the command line
/// (`--param strength=0.5`) to the declared type, and fills in defaults.
pub fn resolve_params(
    preset: &PresetDescriptor,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, JobError> {
    let bad = |msg: String| {
        JobError::new(
            ErrorCode::BadRequest,
            format!("preset '{}': {msg}", preset.id),
        )
    };
    let empty = Map::new();
    let props = preset
        .params_schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Map::new();
    for (key, value) in given {
        let Some(schema) = props.get(key) else {
            let names: Vec<&str> = props.keys().map(String::as_str).collect();
            return Err(bad(if names.is_empty() {
                format!("has no parameters, but '{key}' was given")
            } else {
                format!(
                    "has no parameter '{key}'; its parameters are: {}",
                    names.join(", ")
                )
            }));
        };
        let ty = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let v = match (ty, value) {
            ("number" | "integer", Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .ok_or_else(|| bad(format!("parameter '{key}' must be a number (got '{s}')")))?,
            ("boolean", Value::String(s)) => match s.trim() {
                "true" | "yes" | "on" | "1" => Value::Bool(true),
                "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => {
                    return Err(bad(format!(
                        "parameter '{key}' must be true or false (got '{s}')"
                    )))
                }
            },
            (_, v) => v.clone(),
        };
        match ty {
            "number" | "integer" => {
                let f = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("parameter '{key}' must be a number")))?;
                if ty == "integer" && f.fract() != 0.0 {
                    return Err(bad(format!(
                        "parameter '{key}' must be a whole number (got {f})"
                    )));
                }
                let min = schema.get("minimum").and_then(Value::as_f64);
                let max = schema.get("maximum").and_then(Value::as_f64);
                if min.is_some_and(|m| f < m) || max.is_some_and(|m| f > m) {
                    return Err(bad(format!(
                        "parameter '{key}' must be between {} and {} (got {f})",
                        min.map_or("-∞".into(), |m| m.to_string()),
                        max.map_or("∞".into(), |m| m.to_string())
                    )));
                }
            }
            "boolean" if !v.is_boolean() => {
                return Err(bad(format!("parameter '{key}' must be true or false")))
            }
            "string" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad(format!("parameter '{key}' must be text")))?;
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                    if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                        let names: Vec<String> = allowed
                            .iter()
                            .filter_map(|a| a.as_str().map(String::from))
                            .collect();
                        return Err(bad(format!(
                            "parameter '{key}' must be one of {} (got '{s}')",
                            names.join(", ")
                        )));
                    }
                }
            }
            _ => {}
        }
        out.insert(key.clone(), v);
    }
    for (key, schema) in props {
        if !out.contains_key(key) {
            if let Some(d) = schema.get("default") {
                out.insert(key.clone(), d.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn preset() -> PresetDescriptor {
        PresetDescriptor::look("p", "P", "d").params(json!({
            "type": "object",
            "properties": {
                "strength": {"type": "number", "minimum": 0, "maximum": 2, "default": 1.0},
                "filter": {"type": "string", "enum": ["red", "none"], "default": "red"}
            }
        }))
    }

    #[test]
    fn cli_strings_are_coerced_and_defaults_filled() {
        let given = json!({"strength": "0.5"}).as_object().unwrap().clone();
        let p = resolve_params(&preset(), &given).unwrap();
        assert_eq!(p["strength"], json!(0.5));
        assert_eq!(p["filter"], json!("red"));
    }

    #[test]
    fn out_of_range_unknown_and_bad_enum_values_say_what_is_wrong() {
        let e = |v: Value| {
            resolve_params(&preset(), v.as_object().unwrap())
                .unwrap_err()
                .message
        };
        assert!(e(json!({"strength": "3"})).contains("between 0 and 2"));
        assert!(e(json!({"strenght": 1})).contains("has no parameter 'strenght'"));
        assert!(e(json!({"filter": "blue"})).contains("one of red, none"));
        assert!(e(json!({"strength": "lots"})).contains("must be a number"));
    }
}
