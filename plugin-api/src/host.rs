//! The host's side: open a plugin library, check it, and call it through safe methods.
//!
//! Kept in this crate so that abi_stable stays an implementation detail of the ABI (it is
//! unmaintained; swapping it must not touch the daemon).

use std::fmt;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::std_types::RResult;

use crate::abi::{PixelsF32V1, PluginRootRef, PresetsV1, ABI_VERSION, PIXELS_F32_V1, PRESETS_V1};
use crate::{EngineRequest, ImageFacts, PluginInfo, PresetDescriptor};

/// Why a library could not be used as a plugin. `Display` is one line for users; the
/// full abi_stable report, when there is one, is in [`LoadError::detail`].
#[derive(Debug)]
pub struct LoadError {
    /// The library file.
    pub path: PathBuf,
    /// One line: what is wrong and what to do.
    pub reason: String,
    /// Everything abi_stable said, for debug logs.
    pub detail: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

/// A plugin library that passed every check. Libraries are never unloaded (abi_stable
/// cannot), so a reload means a new process.
pub struct LoadedPlugin {
    path: PathBuf,
    info: PluginInfo,
    presets: &'static PresetsV1,
    pixels: Option<&'static PixelsF32V1>,
}

/// The host's plugin-api version, as abi_stable compares it.
pub fn host_api_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn first_error_line(full: &str) -> String {
    full.lines()
        .map(str::trim)
        .find(|l| l.starts_with("Error:"))
        .map(|l| l.trim_start_matches("Error:").trim().to_string())
        .unwrap_or_else(|| full.lines().next().unwrap_or("").trim().to_string())
}

/// The plugin-api version a mismatching plugin was built against, read from abi_stable's
/// layout report (it names each type's package and version).
fn plugin_api_version_in(report: &str) -> Option<String> {
    let host = host_api_version();
    report
        .split("package:'luminary-plugin-api' version:'")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .find(|v| *v != host)
        .map(String::from)
}

fn incompatible(plugin_version: &str) -> String {
    let host = host_api_version();
    let series: String = host
        .rsplit_once('.')
        .map_or(host, |(series, _)| series)
        .to_string();
    format!(
        "built against plugin-api {plugin_version} while this Luminary speaks {host}; \
         rebuild the plugin against luminary-plugin-api {series}.x"
    )
}

fn describe_library_error(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => format!("cannot be opened: {err}"),
        LibraryError::GetSymbolError { .. } => {
            "not a Luminary plugin (it exports no plugin entry point)".to_string()
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => incompatible(&actual_version.to_string()),
        LibraryError::InvalidAbiHeader(_) => {
            "built with an incompatible abi_stable version; rebuild it against this Luminary's plugin-api"
                .to_string()
        }
        other => {
            let full = other.to_string();
            match plugin_api_version_in(&full) {
                Some(v) => incompatible(&v),
                None => format!("incompatible with plugin-api {}: {}", host_api_version(), first_error_line(&full)),
            }
        }
    }
}

impl LoadedPlugin {
    /// Loads and checks a plugin library: abi_stable header, plugin-api version, root
    /// module layout, ABI version, description and the presets interface.
    pub fn open(path: &Path) -> Result<LoadedPlugin, LoadError> {
        let fail = |reason: String, detail: String| LoadError {
            path: path.to_path_buf(),
            reason,
            detail,
        };
        let header = lib_header_from_path(path)
            .map_err(|e| fail(describe_library_error(&e), e.to_string()))?;
        // Not `load_from_file`: that keeps one module per type per process, so a second
        // plugin would silently come back as the first.
        let root: PluginRootRef = header
            .init_root_module::<PluginRootRef>()
            .map_err(|e| fail(describe_library_error(&e), e.to_string()))?;
        let abi = root.abi_version();
        if abi != ABI_VERSION {
            return Err(fail(
                format!("speaks plugin ABI {abi}, this Luminary speaks {ABI_VERSION}"),
                String::new(),
            ));
        }
        let info_json = (root.describe())().to_string();
        let info: PluginInfo = serde_json::from_str(&info_json).map_err(|e| {
            fail(
                format!("invalid plugin description: {e}"),
                info_json.clone(),
            )
        })?;
        let raw = (root.get_interface())(PRESETS_V1.into())
            .into_option()
            .ok_or_else(|| fail(format!("offers no {PRESETS_V1} interface"), String::new()))?;
        let presets = raw.cast::<PresetsV1>().map_err(|(first, full)| {
            fail(
                format!("{PRESETS_V1} has an incompatible layout: {first}"),
                full,
            )
        })?;
        // Optional since 0.1.1: plugins built against 0.1.0 simply do not offer it.
        let pixels = match (root.get_interface())(PIXELS_F32_V1.into()).into_option() {
            Some(raw) => Some(raw.cast::<PixelsF32V1>().map_err(|(first, full)| {
                fail(
                    format!("{PIXELS_F32_V1} has an incompatible layout: {first}"),
                    full,
                )
            })?),
            None => None,
        };
        let _ = PluginRootRef::NAME;
        Ok(LoadedPlugin {
            path: path.to_path_buf(),
            info,
            presets,
            pixels,
        })
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's self-description.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The presets the plugin offers (not yet validated by the host).
    pub fn presets(&self) -> Result<Vec<PresetDescriptor>, String> {
        match (self.presets.list)() {
            RResult::ROk(json) => {
                serde_json::from_str(json.as_str()).map_err(|e| format!("invalid preset list: {e}"))
            }
            RResult::RErr(e) => Err(e.into_string()),
        }
    }

    /// Interface ids the plugin offers.
    pub fn interfaces(&self) -> Vec<&'static str> {
        let mut v = vec![PRESETS_V1];
        if self.pixels.is_some() {
            v.push(PIXELS_F32_V1);
        }
        v
    }

    /// Runs the preset's pixel function on `data` (interleaved RGB, see
    /// [`PixelsF32V1`]). `Ok(false)` when the plugin has none for this preset.
    pub fn process_pixels(
        &self,
        preset: &str,
        params: &serde_json::Map<String, serde_json::Value>,
        facts: &ImageFacts,
        data: &mut [f32],
        width: u32,
        height: u32,
    ) -> Result<bool, String> {
        let Some(pixels) = self.pixels else {
            return Ok(false);
        };
        let params = serde_json::to_string(params).map_err(|e| e.to_string())?;
        let facts = serde_json::to_string(facts).map_err(|e| e.to_string())?;
        match (pixels.process)(
            preset.into(),
            params.as_str().into(),
            facts.as_str().into(),
            data.into(),
            width,
            height,
        ) {
            RResult::ROk(done) => Ok(done),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }

    /// Asks the plugin to turn a preset into an engine request.
    pub fn build_request(
        &self,
        preset: &str,
        params: &serde_json::Map<String, serde_json::Value>,
        facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        let params = serde_json::to_string(params).map_err(|e| e.to_string())?;
        let facts = serde_json::to_string(facts).map_err(|e| e.to_string())?;
        match (self.presets.build_request)(
            preset.into(),
            params.as_str().into(),
            facts.as_str().into(),
        ) {
            RResult::ROk(json) => serde_json::from_str(json.as_str())
                .map_err(|e| format!("invalid engine request: {e}")),
            RResult::RErr(e) => Err(e.into_string()),
        }
    }
}
