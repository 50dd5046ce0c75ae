//! The safe side of a plugin: the [`Plugin`] trait and the glue the export macro uses.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    library::RootModuleResult,
    prefix_type::PrefixTypeTrait,
    std_types::{ROption, RResult, RSliceMut, RStr, RString},
};
use serde_json::{Map, Value};

use crate::abi::{
    PixelsF32V1, PluginRoot, PluginRootRef, PresetsV1, RawInterface, ABI_VERSION, PIXELS_F32_V1,
    PRESETS_V1,
};
use crate::{EngineRequest, ImageFacts, PluginInfo, PresetDescriptor};

/// A preset plugin. Implement it and pass a value to [`export_plugin!`](crate::export_plugin).
///
/// Thread contract: methods are called from any thread, possibly at once, so the type is
/// `Send + Sync`. They must be quick and must not touch the network or block: describing
/// presets and building requests happens for every job.
pub trait Plugin: Send + Sync + 'static {
    /// Who you are.
    fn info(&self) -> PluginInfo;
    /// The presets you offer. Called when the plugin loads; keep it cheap and constant.
    fn presets(&self) -> Vec<PresetDescriptor>;
    /// Turns a preset, its parameters (already validated against your schema, defaults
    /// filled in) and facts about the photo into a request for the engine.
    fn build_request(
        &self,
        preset: &str,
        params: &Params,
        facts: &ImageFacts,
    ) -> Result<EngineRequest, String>;

    /// Optional pixel function for the offline engine (since 0.1.1), for presets that
    /// declare one (`PresetDescriptor::with_pixel_function`). It runs after the request's
    /// recipe, on its result, before blending. Return `Ok(true)` after editing `image` in
    /// place, or `Ok(false)` (the default) when there is nothing to do. Called with the
    /// full-resolution photo, so keep it linear in the pixel count; `image` is linear
    /// light, Rec.2020, display-referred (see [`Image`]).
    fn process_pixels(
        &self,
        preset: &str,
        params: &Params,
        facts: &ImageFacts,
        image: &mut Image<'_>,
    ) -> Result<bool, String> {
        let _ = (preset, params, facts, image);
        Ok(false)
    }
}

/// A photo handed to [`Plugin::process_pixels`]: interleaved RGB `f32`, linear light,
/// Rec.2020 primaries, display-referred (0 black, 1 white), rows top to bottom.
pub struct Image<'a> {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height * 3` samples.
    pub data: &'a mut [f32],
}

/// A preset's parameters: a JSON object, validated by the host against the preset's schema.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// A number parameter, or `default` when absent or not a number.
    pub fn f32_or(&self, key: &str, default: f32) -> f32 {
        self.0
            .get(key)
            .and_then(Value::as_f64)
            .map(|v| v as f32)
            .unwrap_or(default)
    }
    /// A string parameter, or `default`.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.0.get(key).and_then(Value::as_str).unwrap_or(default)
    }
    /// A boolean parameter, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(default)
    }
}

/// Implemented by the export macro for the plugin crate's hidden export type.
pub trait Export: 'static {
    /// The one plugin value.
    fn instance() -> &'static dyn Plugin;
    /// The `luminary.presets/1` table.
    fn presets_table() -> &'static PresetsV1;
    /// The `luminary.pixels-f32/1` table.
    fn pixels_table() -> &'static PixelsF32V1;
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("plugin panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("plugin panicked: {s}")
    } else {
        "plugin panicked".to_string()
    }
}

/// Runs plugin code, turning panics and errors into an `RResult` (panics must never cross
/// the boundary: abi_stable would end the process).
fn guarded(f: impl FnOnce() -> Result<String, String>) -> RResult<RString, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(s)) => RResult::ROk(s.into()),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(panic_message(payload).into()),
    }
}

extern "C" fn describe<E: Export>() -> RString {
    let info = catch_unwind(|| E::instance().info())
        .unwrap_or_else(|_| PluginInfo::new("invalid", "plugin panicked in info()", "0"));
    serde_json::to_string(&info).unwrap_or_default().into()
}

extern "C" fn get_interface<E: Export>(id: RStr<'_>) -> ROption<RawInterface> {
    match id.as_str() {
        PRESETS_V1 => ROption::RSome(RawInterface::new(E::presets_table())),
        PIXELS_F32_V1 => ROption::RSome(RawInterface::new(E::pixels_table())),
        _ => ROption::RNone,
    }
}

#[doc(hidden)]
pub extern "C" fn table_list<E: Export>() -> RResult<RString, RString> {
    guarded(|| serde_json::to_string(&E::instance().presets()).map_err(|e| e.to_string()))
}

#[doc(hidden)]
pub extern "C" fn table_build_request<E: Export>(
    preset: RStr<'_>,
    params: RStr<'_>,
    facts: RStr<'_>,
) -> RResult<RString, RString> {
    guarded(|| {
        let params: Map<String, Value> =
            serde_json::from_str(params.as_str()).map_err(|e| format!("parameters: {e}"))?;
        let facts: ImageFacts =
            serde_json::from_str(facts.as_str()).map_err(|e| format!("image facts: {e}"))?;
        let req = E::instance().build_request(preset.as_str(), &Params(params), &facts)?;
        serde_json::to_string(&req).map_err(|e| e.to_string())
    })
}

#[doc(hidden)]
pub extern "C" fn table_process_pixels<E: Export>(
    preset: RStr<'_>,
    params: RStr<'_>,
    facts: RStr<'_>,
    mut pixels: RSliceMut<'_, f32>,
    width: u32,
    height: u32,
) -> RResult<bool, RString> {
    let run = || -> Result<bool, String> {
        let params: Map<String, Value> =
            serde_json::from_str(params.as_str()).map_err(|e| format!("parameters: {e}"))?;
        let facts: ImageFacts =
            serde_json::from_str(facts.as_str()).map_err(|e| format!("image facts: {e}"))?;
        let (w, h) = (width as usize, height as usize);
        let data = pixels.as_mut_slice();
        if data.len() != w * h * 3 {
            return Err(format!(
                "pixel buffer of {} samples for {w}x{h}",
                data.len()
            ));
        }
        let mut image = Image {
            width: w,
            height: h,
            data,
        };
        E::instance().process_pixels(preset.as_str(), &Params(params), &facts, &mut image)
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(done)) => RResult::ROk(done),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(panic_message(payload).into()),
    }
}

fn root_module<E: Export>() -> PluginRootRef {
    PluginRoot {
        abi_version: ABI_VERSION,
        describe: describe::<E>,
        get_interface: get_interface::<E>,
    }
    .leak_into_prefix()
}

#[doc(hidden)]
pub extern "C" fn root_module_constructor<E: Export>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<E>)
}
