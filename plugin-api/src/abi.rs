//! The frozen binary interface between the Luminary host and a preset plugin.
//!
//! Plugin authors never touch this module: [`export_plugin!`](crate::export_plugin) builds
//! it from a safe [`Plugin`](crate::Plugin). The host reads it through
//! [`load`](crate::host) helpers. Everything here is `#[repr(C)]` and checked by abi_stable
//! when the library is loaded.
//!
//! # Why the root module is tiny
//!
//! abi_stable's prefix types let an *older host* read a *newer plugin*, but a newer host
//! refuses an older plugin as soon as the root module gains a field. For an ecosystem that
//! is backwards: users upgrade Luminary and keep their plugins. So, as CLAP does, the root
//! is frozen at three members forever — the ABI version, a JSON self-description and
//! `get_interface(id)` — and every capability lives behind a revisioned interface id such as
//! `"luminary.presets/1"`. A breaking change to an interface is a new id
//! (`"luminary.presets/2"`); the host asks for the newest id it knows and falls back.
//!
//! Interfaces are plain `#[repr(C)]` tables of `extern "C"` functions. `get_interface`
//! returns the table's address together with its abi_stable type layout, and the host
//! checks that layout against its own before using the table, so a mismatch is an error
//! message, never undefined behaviour.

use abi_stable::{
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RSliceMut, RStr, RString},
    type_layout::TypeLayout,
    StableAbi,
};
use std::ffi::c_void;

/// Bumped only if the root module itself ever has to change (it should not).
pub const ABI_VERSION: u32 = 1;

/// Interface id of [`PresetsV1`] (since 0.1.0).
pub const PRESETS_V1: &str = "luminary.presets/1";

/// Interface id of [`PixelsF32V1`] (since 0.1.1).
pub const PIXELS_F32_V1: &str = "luminary.pixels-f32/1";

/// The root module every plugin exports. Frozen: never add a field.
///
/// Thread contract: every function may be called from any thread, concurrently.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginRootRef)))]
#[sabi(missing_field(panic))]
pub struct PluginRoot {
    /// [`ABI_VERSION`] the plugin was built with.
    pub abi_version: u32,
    /// JSON of [`PluginInfo`](crate::PluginInfo). Cheap, side-effect free.
    pub describe: extern "C" fn() -> RString,
    /// The interface table for `id`, or none when the plugin does not offer it.
    #[sabi(last_prefix_field)]
    pub get_interface: extern "C" fn(id: RStr<'_>) -> ROption<RawInterface>,
}

impl RootModule for PluginRootRef {
    abi_stable::declare_root_module_statics! {PluginRootRef}
    const BASE_NAME: &'static str = "luminary_plugin";
    const NAME: &'static str = "luminary_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// An interface table handed across the boundary: its address and its layout.
#[repr(C)]
#[derive(StableAbi, Copy, Clone)]
pub struct RawInterface {
    /// Address of a `'static` interface table (e.g. a [`PresetsV1`]).
    pub table: *const c_void,
    /// abi_stable layout of that table, checked by the host before the cast.
    pub layout: &'static TypeLayout,
}

// SAFETY: the table is an immutable `'static` of function pointers.
unsafe impl Send for RawInterface {}
unsafe impl Sync for RawInterface {}

/// `"luminary.presets/1"`: the presets a plugin offers and how each becomes an engine request.
///
/// All data crosses as JSON so that descriptors, parameters and recipes can grow fields
/// without touching the binary layout. Errors are human-readable messages.
///
/// Thread contract: any thread, concurrently; no function may block on I/O or the network.
#[repr(C)]
#[derive(StableAbi)]
pub struct PresetsV1 {
    /// JSON array of [`PresetDescriptor`](crate::PresetDescriptor).
    pub list: extern "C" fn() -> RResult<RString, RString>,
    /// `(preset id, params JSON object, image facts JSON)` → JSON
    /// [`EngineRequest`](crate::EngineRequest).
    pub build_request: extern "C" fn(
        preset: RStr<'_>,
        params: RStr<'_>,
        facts: RStr<'_>,
    ) -> RResult<RString, RString>,
}

/// `"luminary.pixels-f32/1"`: a preset's own pixel function, run by the offline engine
/// after the recipe.
///
/// Pixels are interleaved RGB `f32`, linear light, Rec.2020 primaries, display-referred
/// (0 black, 1 white), row-major, `width * height * 3` samples, edited in place. The buffer
/// lives in memory shared with the host; the call must not keep it.
///
/// Thread contract: any thread; long-running (whole images), so it is called with a
/// deadline and a plugin that overruns it is stopped.
#[repr(C)]
#[derive(StableAbi)]
pub struct PixelsF32V1 {
    /// `(preset, params JSON, facts JSON, pixels, width, height)` → `true` when the preset
    /// processed the pixels, `false` when it has no pixel function (the recipe is used).
    pub process: extern "C" fn(
        preset: RStr<'_>,
        params: RStr<'_>,
        facts: RStr<'_>,
        pixels: RSliceMut<'_, f32>,
        width: u32,
        height: u32,
    ) -> RResult<bool, RString>,
}

impl RawInterface {
    /// Wraps a `'static` table for [`PluginRoot::get_interface`].
    pub fn new<T: StableAbi>(table: &'static T) -> Self {
        RawInterface {
            table: table as *const T as *const c_void,
            layout: T::LAYOUT,
        }
    }

    /// Checks the plugin's layout of the table against `T` and returns the table.
    ///
    /// On mismatch returns the first line of abi_stable's report (the full report is
    /// hundreds of lines; callers log it at debug level through `Err`'s second element).
    pub fn cast<T: StableAbi>(self) -> Result<&'static T, (String, String)> {
        match abi_stable::abi_stability::abi_checking::check_layout_compatibility(
            T::LAYOUT,
            self.layout,
        ) {
            // SAFETY: the layout check above proved the plugin's table has T's layout, and
            // `new` only ever wraps `'static` tables.
            Ok(()) => Ok(unsafe { &*(self.table as *const T) }),
            Err(e) => {
                let full = e.to_string();
                let first = full
                    .lines()
                    .find(|l| l.trim_start().starts_with("Error:"))
                    .unwrap_or_else(|| full.lines().next().unwrap_or("layout mismatch"))
                    .trim()
                    .to_string();
                Err((first, full))
            }
        }
    }
}
