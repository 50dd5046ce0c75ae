//! A plugin whose descriptors are partly invalid: the host must refuse those presets with
//! a clear reason and still offer the valid one.

use luminary_plugin_api::*;

struct BadSchema;

impl Plugin for BadSchema {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("test.badschema", "Bad schema test plugin", "0.0.0")
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        vec![
            PresetDescriptor::look("valid-one", "Valid", "fine"),
            PresetDescriptor::look("array-param", "Array", "bad parameter type").params(json!({
                "type": "object",
                "properties": {"points": {"type": "array"}}
            })),
            PresetDescriptor::look("Not An Id", "Spaces", "bad id"),
            PresetDescriptor::look("no-object", "No object", "schema is not an object")
                .params(json!(["x"])),
        ]
    }

    fn build_request(
        &self,
        _preset: &str,
        _params: &Params,
        _facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        let r = Recipe {
            saturation: -0.5,
            ..Recipe::default()
        };
        Ok(EngineRequest::new("desaturate", r))
    }
}

export_plugin!(BadSchema);
