//! The preset-plugin API of Luminary: a stable binary interface and a small safe way to
//! write plugins against it.
//!
//! # For plugin authors
//!
//! Implement [`Plugin`] and export it with [`export_plugin!`]. Your crate depends only on
//! this one and is built as a `cdylib`; nothing in your code sees an FFI type. A panic in
//! your code becomes an error for the one job that hit it, not a crash.
//!
//! ```
//! use luminary_plugin_api::*;
//!
//! struct Warm;
//! impl Plugin for Warm {
//!     fn info(&self) -> PluginInfo {
//!         PluginInfo::new("com.example.warm", "Warm", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn presets(&self) -> Vec<PresetDescriptor> {
//!         vec![PresetDescriptor::look("warm-glow", "Warm glow", "Golden, gentle warmth.")]
//!     }
//!     fn build_request(&self, _preset: &str, params: &Params, _facts: &ImageFacts)
//!         -> Result<EngineRequest, String> {
//!         let mut recipe = Recipe::default();
//!         recipe.white_balance.temperature = 0.3 * params.f32_or("strength", 1.0);
//!         Ok(EngineRequest::new("Warm the light like late afternoon sun.", recipe))
//!     }
//! }
//! export_plugin!(Warm);
//! ```
//!
//! # Compatibility promise and evolution rules
//!
//! * The root module ([`abi::PluginRoot`]) is frozen: ABI version, `describe`,
//!   `get_interface(id)`. It never gains a field, because abi_stable makes a newer host
//!   reject an older plugin whose root module is shorter.
//! * Capabilities are interfaces with a revisioned id: `"luminary.presets/1"` (0.1.0),
//!   `"luminary.pixels-f32/1"` (0.1.1). A table behind an id never changes; a breaking
//!   change is a new id, and hosts keep asking for the older ids they know. New
//!   capabilities are new ids, and a host treats a missing one as "not offered" — so a
//!   plugin built against 0.1.0 keeps loading in every later 0.1 host.
//! * Descriptors, parameters, image facts and recipes cross the boundary as JSON. Fields
//!   are only ever added, with defaults, so old plugins keep deserialising new hosts' data
//!   and the other way round.
//! * This crate's Cargo version is what abi_stable compares when loading: any 0.1.x plugin
//!   loads in any 0.1.y host (patch releases may add interfaces, never change one), and a
//!   bump to 0.2 is a deliberate, announced break. The version is set by hand, never
//!   inherited from a workspace.
#![allow(non_local_definitions)] // abi_stable's derives trip this lint (see ABI.md).
#![deny(missing_docs)]

pub mod abi;
mod authoring;
pub mod host;
pub mod prompts;
mod recipe;
mod types;

pub use authoring::{Image, Params, Plugin};
pub use recipe::*;
/// Re-exported so parameter schemas can be written with `json!` without another dependency.
pub use serde_json::{self, json};
pub use types::*;

/// Items the [`export_plugin!`] macro expands to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{PixelsF32V1, PluginRootRef, PresetsV1};
    pub use crate::authoring::{
        root_module_constructor, table_build_request, table_list, table_process_pixels, Export,
    };
    pub use abi_stable::library::{CheckTypeLayout, LibHeader};
}

/// Name of the symbol abi_stable looks up in a plugin library. Checked against
/// abi_stable's own constant by a test, because the macro has to spell it literally.
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports a [`Plugin`] value from a `cdylib` so Luminary can load it.
///
/// Call it once, at the top level of the plugin crate, with an expression that builds the
/// plugin (evaluated once, on first use).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:expr) => {
        #[doc(hidden)]
        pub struct __LuminaryExport;

        impl $crate::__private::Export for __LuminaryExport {
            fn instance() -> &'static dyn $crate::Plugin {
                static INSTANCE: ::std::sync::OnceLock<::std::boxed::Box<dyn $crate::Plugin>> =
                    ::std::sync::OnceLock::new();
                &**INSTANCE.get_or_init(|| ::std::boxed::Box::new($plugin))
            }
            fn presets_table() -> &'static $crate::__private::PresetsV1 {
                static TABLE: $crate::__private::PresetsV1 = $crate::__private::PresetsV1 {
                    list: $crate::__private::table_list::<__LuminaryExport>,
                    build_request: $crate::__private::table_build_request::<__LuminaryExport>,
                };
                &TABLE
            }
            fn pixels_table() -> &'static $crate::__private::PixelsF32V1 {
                static TABLE: $crate::__private::PixelsF32V1 = $crate::__private::PixelsF32V1 {
                    process: $crate::__private::table_process_pixels::<__LuminaryExport>,
                };
                &TABLE
            }
        }

        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static __LUMINARY_LIB_HEADER: $crate::__private::LibHeader = unsafe {
            $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginRootRef>(
                $crate::__private::root_module_constructor::<__LuminaryExport>,
                $crate::__private::CheckTypeLayout::Yes,
            )
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn macro_spells_abi_stables_symbol() {
        assert_eq!(
            super::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
