//! Luminary Landscape: light and weather for outdoor photographs.

use luminary_plugin_api::prompts::{KEEP_LOOK, NEGATIVE};
use luminary_plugin_api::*;

/// The plugin value exported below.
pub struct Landscape;

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "strength": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0, "title": "Strength"}
        },
        "additionalProperties": false
    })
}

impl Plugin for Landscape {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "photo.luminary.landscape".into(),
            name: "Luminary Landscape".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Golden hour, dramatic skies, mist and autumn colour".into(),
            author: "Luminary".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        let p = |id: &str, name: &str, d: &str, i: f64| {
            PresetDescriptor::look(id, name, d)
                .intensity(i)
                .params(schema())
                .tags(&["landscape"])
        };
        vec![
            p(
                "golden-hour",
                "Golden hour",
                "Low warm sun: amber highlights, soft long shadows, glowing air.",
                0.75,
            ),
            p(
                "dramatic-sky",
                "Dramatic sky",
                "Dark, detailed skies and deep contrast without halos along the horizon.",
                0.7,
            ),
            p(
                "misty-morning",
                "Misty morning",
                "Soft, airy, cool light with lifted shadows, like early fog.",
                0.7,
            ),
            p(
                "autumn-glow",
                "Autumn glow",
                "Richer oranges and reds, warm midtones, muted greens.",
                0.75,
            ),
        ]
    }

    fn build_request(
        &self,
        preset: &str,
        params: &Params,
        facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        let s = params.f32_or("strength", 1.0);
        let mut r = Recipe::default();
        let what = match preset {
            "golden-hour" => {
                r.white_balance.temperature = 0.35 * s;
                r.tone.highlights = -0.3 * s;
                r.tone.shadows = 0.2 * s;
                r.grade.highlights = Tint {
                    hue: 40.0,
                    amount: 0.3 * s,
                };
                r.grade.midtones = Tint {
                    hue: 30.0,
                    amount: 0.12 * s,
                };
                r.vibrance = 0.2 * s;
                r.vignette = Vignette {
                    amount: -0.2 * s,
                    midpoint: 0.5,
                    feather: 0.7,
                };
                "Relight this landscape as if at golden hour: low warm amber sunlight, glowing highlights, soft long shadows"
            }
            "dramatic-sky" => {
                // Dark skies come from pulling highlights; a bright photo needs more.
                let extra = if facts.luminance_percentiles[2] > 0.85 {
                    0.2
                } else {
                    0.0
                };
                r.tone.highlights = -(0.6 + extra) * s;
                r.tone.contrast = 0.3 * s;
                r.clarity = 0.45 * s;
                r.tone.blacks = -0.1 * s;
                r.saturation = -0.05 * s;
                r.grade.shadows = Tint {
                    hue: 215.0,
                    amount: 0.1 * s,
                };
                r.vignette = Vignette {
                    amount: -0.3 * s,
                    midpoint: 0.4,
                    feather: 0.6,
                };
                "Make the sky dramatic: darker, detailed, moody clouds, deeper contrast, crisp landscape detail, no halos at the horizon"
            }
            "misty-morning" => {
                r.white_balance.temperature = -0.15 * s;
                r.tone.contrast = -0.3 * s;
                r.tone.fade = 0.2 * s;
                r.tone.shadows = 0.3 * s;
                r.clarity = -0.3 * s;
                r.saturation = -0.2 * s;
                r.exposure.ev = 0.15 * s;
                "Give this landscape the soft light of a misty morning: airy, cool, low contrast, gentle haze"
            }
            "autumn-glow" => {
                r.white_balance.temperature = 0.12 * s;
                r.vibrance = 0.35 * s;
                r.grade.midtones = Tint {
                    hue: 25.0,
                    amount: 0.15 * s,
                };
                r.grade.highlights = Tint {
                    hue: 45.0,
                    amount: 0.1 * s,
                };
                r.tone.contrast = 0.1 * s;
                "Bring out autumn colour: richer oranges, reds and golds, warm midtones, muted greens"
            }
            other => return Err(format!("unknown preset '{other}'")),
        };
        let mut req = EngineRequest::new(&format!("{what}. {KEEP_LOOK}"), r);
        req.negative_prompt = NEGATIVE.into();
        Ok(req)
    }
}

export_plugin!(Landscape);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_a_distinct_request() {
        let mut seen = Vec::new();
        for d in Landscape.presets() {
            let req = Landscape
                .build_request(&d.id, &Params::default(), &ImageFacts::default())
                .unwrap();
            assert_ne!(req.recipe, Recipe::default());
            assert!(
                !seen.contains(&req.recipe),
                "{} repeats another preset",
                d.id
            );
            seen.push(req.recipe);
        }
    }
}
