//! A plugin as it was written against plugin-api 0.1.0.
use luminary_plugin_api::*;

struct Old;

impl Plugin for Old {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("test.compat.old", "Built against 0.1.0", "1.0.0")
    }
    fn presets(&self) -> Vec<PresetDescriptor> {
        vec![PresetDescriptor::look("vintage-010", "Vintage (0.1.0 plugin)", "Faded warm look from an old plugin.")]
    }
    fn build_request(&self, _p: &str, _params: &Params, _f: &ImageFacts) -> Result<EngineRequest, String> {
        let mut r = Recipe::default();
        r.tone.fade = 0.4;
        r.white_balance.temperature = 0.3;
        Ok(EngineRequest::new("Make it look vintage.", r))
    }
}

export_plugin!(Old);
