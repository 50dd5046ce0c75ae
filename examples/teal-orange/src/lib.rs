//! Teal & Orange: the blockbuster colour grade, as a Luminary preset plugin.
//!
//! Everything a plugin needs is here: who it is, its presets with parameters (Luminary
//! builds the editors' dialogs from the JSON Schema), and how each preset becomes a request
//! — a prompt for AI engines and a recipe for the offline engine.

use luminary_plugin_api::prompts::{KEEP_LOOK, NEGATIVE};
use luminary_plugin_api::*;

struct TealOrange;

impl Plugin for TealOrange {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "com.example.teal-orange".into(),
            name: "Teal & Orange".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Cinematic complementary grades".into(),
            author: "Example Studio".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        vec![
            PresetDescriptor::look("teal-orange", "Teal & orange", "Warm skin against cool teal shadows, film-like contrast.")
                .intensity(0.7)
                .params(json!({
                    "type": "object",
                    "properties": {
                        "warmth": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.6,
                                   "title": "Warmth of the highlights"},
                        "look": {"type": "string", "enum": ["subtle", "blockbuster"], "default": "subtle",
                                 "title": "Look"}
                    },
                    "additionalProperties": false
                }))
                .tags(&["cinematic"]),
        ]
    }

    fn build_request(&self, _preset: &str, params: &Params, _facts: &ImageFacts) -> Result<EngineRequest, String> {
        let warmth = params.f32_or("warmth", 0.6);
        let strong = params.str_or("look", "subtle") == "blockbuster";
        let k = if strong { 1.6 } else { 1.0 };
        let mut r = Recipe::default();
        r.grade.shadows = Tint { hue: 185.0, amount: 0.25 * k };
        r.grade.highlights = Tint { hue: 32.0, amount: 0.3 * warmth * k };
        r.tone.contrast = 0.15 * k;
        r.saturation = -0.05;
        r.vignette.amount = -0.15 * k;
        let mut req = EngineRequest::new(
            &format!("Grade this photograph in a cinematic teal and orange look: teal shadows, warm skin and highlights. {KEEP_LOOK}"),
            r,
        );
        req.negative_prompt = NEGATIVE.into();
        Ok(req)
    }
}

export_plugin!(TealOrange);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockbuster_is_stronger_than_subtle() {
        let mut p = Params::default();
        let subtle = TealOrange.build_request("teal-orange", &p, &ImageFacts::default()).unwrap();
        p.0.insert("look".into(), json!("blockbuster"));
        let strong = TealOrange.build_request("teal-orange", &p, &ImageFacts::default()).unwrap();
        assert!(strong.recipe.grade.shadows.amount > subtle.recipe.grade.shadows.amount);
    }
}
