//! Luminary Restore: bring back old scans and faded prints.

use luminary_plugin_api::prompts::{KEEP_LOOK, NEGATIVE};
use luminary_plugin_api::*;

/// The plugin value exported below.
pub struct Restore;

impl Plugin for Restore {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "photo.luminary.restore".into(),
            name: "Luminary Restore".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Colour and contrast restoration for scanned prints and slides".into(),
            author: "Luminary".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        let schema = json!({
            "type": "object",
            "properties": {
                "strength": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0, "title": "Strength"},
                "keep_monochrome": {"type": "boolean", "default": false, "title": "Black & white original",
                                    "description": "Restore tone only and keep (or make) the print monochrome."}
            },
            "additionalProperties": false
        });
        vec![
            PresetDescriptor::look(
                "faded-print",
                "Revive faded print",
                "Removes the colour cast of aged prints and restores their contrast and colour.",
            )
            .intensity(0.9)
            .params(schema.clone())
            .tags(&["restoration", "scan"]),
            PresetDescriptor::look(
                "old-slide",
                "Old slide rescue",
                "Corrects the magenta or blue shift of old slides and recovers dense shadows.",
            )
            .intensity(0.9)
            .params(schema)
            .tags(&["restoration", "scan"]),
            upscale(),
        ]
    }

    fn build_request(
        &self,
        preset: &str,
        params: &Params,
        facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        if preset == "upscale" {
            // Super-resolution models take no instruction; the factor reaches them as the
            // `scale` parameter.
            return Ok(EngineRequest::new(
                "Upscale this photograph: recover fine detail, add nothing.",
                Recipe::default(),
            ));
        }
        let s = params.f32_or("strength", 1.0);
        let mut r = Recipe::default();
        // Both start from a full automatic rebalance: a cast is what ageing does.
        r.white_balance.auto = 1.0;
        r.tone.auto = 1.0 * s.min(1.0);
        r.exposure.auto = 0.7;
        let what = match preset {
            "faded-print" => {
                r.tone.contrast = 0.2 * s;
                r.tone.blacks = -0.2 * s;
                // Faded prints lose saturation; boost more when little is left.
                r.vibrance = if facts.mean_saturation < 0.12 {
                    0.5
                } else {
                    0.3
                } * s;
                "Restore this faded, colour-shifted old print: remove the yellow or red cast, bring back contrast, true blacks and natural colour"
            }
            "old-slide" => {
                r.tone.shadows = 0.35 * s;
                r.tone.contrast = 0.1 * s;
                r.vibrance = 0.15 * s;
                r.white_balance.tint = -0.1 * s;
                "Restore this old scanned slide: remove the magenta or blue colour shift, open the dense shadows, natural colour"
            }
            other => return Err(format!("unknown preset '{other}'")),
        };
        if params.bool_or("keep_monochrome", false) {
            r.monochrome = Some(Monochrome::default());
            r.vibrance = 0.0;
        }
        let mut req = EngineRequest::new(
            &format!("{what}. Do not colourise, invent or remove detail. {KEEP_LOOK}"),
            r,
        );
        req.negative_prompt = format!("{NEGATIVE}, colourisation, invented detail");
        Ok(req)
    }
}

/// Super-resolution on an ESRGAN-family model (fal's `fal-ai/esrgan` by default, Replicate's
/// `nightmareai/real-esrgan` as the alternative). The one preset that sends the whole
/// full-resolution photo out of the machine, in tiles.
fn upscale() -> PresetDescriptor {
    let mut d = PresetDescriptor::look(
        "upscale",
        "Upscale 2× / 4×",
        "Enlarges the photo two or four times with an AI super-resolution model. Unlike every \
         other preset, it sends the whole full-resolution photo (in tiles) to the engine.",
    )
    .intensity(1.0)
    .params(json!({
        "type": "object",
        "properties": {
            "scale": {"type": "string", "enum": ["2x", "4x"], "default": "2x", "title": "Scale"}
        },
        "additionalProperties": false
    }))
    .tags(&["restoration", "print"])
    .prefers_engine("fal")
    .prefers_model("fal", "fal-ai/esrgan")
    .prefers_model("replicate", "nightmareai/real-esrgan")
    .ai_only();
    d.kind = PresetKind::Upscale;
    d
}

export_plugin!(Restore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscale_is_an_ai_only_super_resolution_preset() {
        let d = upscale();
        assert_eq!((d.kind, d.ai_only), (PresetKind::Upscale, true));
        assert_eq!(d.models["fal"], "fal-ai/esrgan");
        assert_eq!(
            d.params_schema["properties"]["scale"]["enum"],
            json!(["2x", "4x"])
        );
        assert!(d.description.contains("full-resolution photo"));
    }

    #[test]
    fn monochrome_option_is_honoured() {
        let mut p = Params::default();
        p.0.insert("keep_monochrome".into(), json!(true));
        let r = Restore
            .build_request("faded-print", &p, &ImageFacts::default())
            .unwrap();
        assert!(r.recipe.monochrome.is_some());
        assert!(Restore
            .build_request("faded-print", &Params::default(), &ImageFacts::default())
            .unwrap()
            .recipe
            .monochrome
            .is_none());
    }
}
