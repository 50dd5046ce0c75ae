//! Luminary Interiors: real-estate and architecture photographs.
//!
//! "bright-interior" is a look. "virtual-twilight" is a content preset: an AI engine
//! replaces the daytime sky with dusk and lights the windows; offline, its recipe can only
//! approximate the mood (cooler, darker exterior light, warm interior).
//! "virtual-staging" furnishes an empty room: only an AI engine can add furniture, so it is
//! declared AI-only, and it prefers Replicate's Qwen image edit, which keeps a room's
//! geometry well (FLUX Kontext Max is the documented alternative; Gemini works too).

use luminary_plugin_api::prompts::{KEEP_LOOK, KEEP_REST, NEGATIVE};
use luminary_plugin_api::*;

/// The plugin value exported below.
pub struct Interiors;

impl Plugin for Interiors {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "photo.luminary.interiors".into(),
            name: "Luminary Interiors".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Bright, straight interiors and virtual twilight for real-estate photography".into(),
            author: "Luminary".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        let strength = json!({
            "type": "object",
            "properties": {
                "strength": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0, "title": "Strength"}
            },
            "additionalProperties": false
        });
        let mut twilight = PresetDescriptor::look(
            "virtual-twilight",
            "Virtual twilight",
            "Turns a daytime exterior into dusk: deep blue sky, warm glowing windows.",
        )
        .intensity(1.0)
        .params(json!({
            "type": "object",
            "properties": {
                "sky": {"type": "string", "enum": ["blue-hour", "sunset"], "default": "blue-hour", "title": "Sky"},
                "window_glow": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.7, "title": "Window glow"}
            },
            "additionalProperties": false
        }))
        .tags(&["real-estate", "exterior"])
        // Twilight replaces the sky and lights windows: content the offline recipe can
        // only suggest. It prefers a generative engine when one is set up.
        .prefers_engine("gemini");
        twilight.kind = PresetKind::Content;
        let mut staging = PresetDescriptor::look(
            "virtual-staging",
            "Virtual staging",
            "Furnishes an empty room with AI-generated furniture in the style you choose; walls, \
             windows and floor stay the photograph's own. Staged photos must be disclosed as \
             virtually staged in listings.",
        )
        .intensity(1.0)
        .params(json!({
            "type": "object",
            "properties": {
                "room": {"type": "string", "title": "Room",
                         "enum": ["living-room", "bedroom", "dining-room", "kitchen", "office", "terrace"],
                         "default": "living-room"},
                "style": {"type": "string", "title": "Style",
                          "enum": ["modern", "scandinavian", "industrial", "classic", "coastal", "minimal"],
                          "default": "modern"},
                "keep_furniture": {"type": "boolean", "title": "Keep existing furniture", "default": false}
            },
            "additionalProperties": false
        }))
        .tags(&["real-estate", "interior", "staging"])
        .prefers_engine("replicate")
        .prefers_model("replicate", STAGING_MODEL)
        .ai_only();
        staging.kind = PresetKind::Content;
        vec![
            PresetDescriptor::look(
                "bright-interior",
                "Bright interior",
                "Clean, bright, neutral rooms: white walls white, shadows opened, windows held.",
            )
            .intensity(0.85)
            .params(strength.clone())
            .tags(&["real-estate", "interior"]),
            PresetDescriptor::look(
                "warm-living",
                "Warm living",
                "Inviting warm light in living spaces, gentle contrast, cosy but not orange.",
            )
            .intensity(0.7)
            .params(strength)
            .tags(&["real-estate", "interior"]),
            twilight,
            staging,
        ]
    }

    fn build_request(
        &self,
        preset: &str,
        params: &Params,
        _facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        let s = params.f32_or("strength", 1.0);
        let mut r = Recipe::default();
        let prompt = match preset {
            "bright-interior" => {
                r.white_balance.auto = 1.0;
                r.exposure.auto = 0.8;
                r.exposure.ev = 0.2 * s;
                r.tone.shadows = 0.5 * s;
                r.tone.highlights = -0.5 * s;
                r.tone.whites = 0.15 * s;
                r.clarity = 0.1 * s;
                r.vibrance = 0.1 * s;
                format!("Make this interior bright, clean and neutral as in professional real-estate photography: \
                         white walls truly white, open shadows, windows not blown out, straight true colours. {KEEP_LOOK}")
            }
            "warm-living" => {
                r.white_balance.temperature = 0.15 * s;
                r.tone.shadows = 0.3 * s;
                r.tone.highlights = -0.2 * s;
                r.tone.contrast = -0.05 * s;
                r.grade.midtones = Tint {
                    hue: 35.0,
                    amount: 0.08 * s,
                };
                format!("Give this room warm, inviting evening light, cosy but natural, gentle contrast. {KEEP_LOOK}")
            }
            "virtual-twilight" => {
                let glow = params.f32_or("window_glow", 0.7);
                let sunset = params.str_or("sky", "blue-hour") == "sunset";
                r.exposure.ev = -0.6;
                r.white_balance.temperature = if sunset { 0.1 } else { -0.45 };
                r.tone.highlights = 0.2 * glow;
                r.tone.contrast = 0.15;
                r.grade.highlights = Tint {
                    hue: 38.0,
                    amount: 0.35 * glow,
                };
                r.grade.shadows = Tint {
                    hue: if sunset { 280.0 } else { 225.0 },
                    amount: 0.3,
                };
                r.vignette = Vignette {
                    amount: -0.2,
                    midpoint: 0.5,
                    feather: 0.7,
                };
                let sky = if sunset {
                    "a warm sunset sky fading to violet"
                } else {
                    "a deep blue-hour dusk sky"
                };
                format!("Turn this daytime exterior photograph into a twilight shot: replace the sky with {sky}, \
                         light every window with warm interior light at {:.0}% glow, turn on exterior lights, \
                         make the lawn and facade fall into soft dusk light. {KEEP_REST}", glow * 100.0)
            }
            "virtual-staging" => {
                return Ok(EngineRequest {
                    prompt: staging_prompt(params),
                    negative_prompt: STAGING_NEGATIVE.into(),
                    engine_hint: Some("replicate".into()),
                    recipe: r,
                })
            }
            other => return Err(format!("unknown preset '{other}'")),
        };
        // Twilight replaces the sky and lights windows: content the offline recipe can only
        // suggest. It prefers a generative engine when one is set up.
        let engine_hint = (preset == "virtual-twilight").then(|| "gemini".to_string());
        Ok(EngineRequest {
            prompt,
            negative_prompt: NEGATIVE.into(),
            engine_hint,
            recipe: r,
        })
    }
}

/// Replicate's Qwen image edit: it keeps walls, windows and perspective where it adds
/// furniture (`black-forest-labs/flux-kontext-max` is the alternative, through
/// `[engines.replicate.preset_models]`).
const STAGING_MODEL: &str = "qwen/qwen-image-edit";

/// What staging models get wrong: the room itself, and furniture that does not sit in it.
const STAGING_NEGATIVE: &str = "changed walls, changed windows, changed floor, changed ceiling, \
moved doors, changed architecture, changed perspective, cropping, reframing, people, pets, \
floating furniture, furniture cut by the frame edge, text, watermark";

/// The staging instruction: the room's kind, the style, and whether what is there stays.
fn staging_prompt(params: &Params) -> String {
    let room = match params.str_or("room", "living-room") {
        "bedroom" => "bedroom",
        "dining-room" => "dining room",
        "kitchen" => "kitchen",
        "office" => "home office",
        "terrace" => "terrace",
        _ => "living room",
    };
    let furniture = match room {
        "bedroom" => "a bed with bedding, bedside tables with lamps, a rug, a chest of drawers",
        "dining room" => {
            "a dining table with chairs, a pendant-style lamp on the table, a sideboard, a rug"
        }
        "kitchen" => "bar stools, a small table with chairs, a bowl of fruit, a few plants",
        "home office" => "a desk, an office chair, a bookshelf, a desk lamp, a plant",
        "terrace" => "outdoor lounge chairs, a low table, potted plants, an outdoor rug",
        _ => "a sofa, an armchair, a coffee table, a rug, a floor lamp, a plant",
    };
    let style = match params.str_or("style", "modern") {
        "scandinavian" => "Scandinavian (light oak, white and grey textiles, simple forms)",
        "industrial" => "industrial (dark metal, leather, reclaimed wood)",
        "classic" => "classic (upholstered pieces, turned wood, warm fabrics)",
        "coastal" => "coastal (white and sand tones, linen, rattan, pale blue accents)",
        "minimal" => "minimal (few low pieces, neutral tones, nothing on the surfaces)",
        _ => "modern (clean lines, neutral fabrics, matte black and walnut accents)",
    };
    let existing = if params.0.get("keep_furniture").and_then(|v| v.as_bool()) == Some(true) {
        "Keep every piece of furniture already in the room exactly where it is and add around it."
    } else {
        "Furnish it as if it were empty; remove nothing that is part of the building."
    };
    format!(
        "Virtually stage this {room} for a real-estate listing: add {furniture}, in a {style} style, \
         sized to the room and placed on the floor in its perspective, lit by the room's own light \
         with soft contact shadows. {existing} Do not change the walls, windows, window views, \
         floor, ceiling, doors, built-in fixtures, the camera position, the lens or the exposure; \
         keep the photograph's colours and detail everywhere no furniture is added."
    )
}

export_plugin!(Interiors);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilight_is_a_content_preset_and_honours_its_parameters() {
        let d = Interiors.presets();
        assert_eq!(
            d.iter().find(|p| p.id == "virtual-twilight").unwrap().kind,
            PresetKind::Content
        );
        let mut params = Params::default();
        params.0.insert("sky".into(), json!("sunset"));
        let sunset = Interiors
            .build_request("virtual-twilight", &params, &ImageFacts::default())
            .unwrap();
        let blue = Interiors
            .build_request(
                "virtual-twilight",
                &Params::default(),
                &ImageFacts::default(),
            )
            .unwrap();
        assert!(sunset.prompt.contains("sunset") && blue.prompt.contains("blue-hour"));
        assert!(sunset.recipe.white_balance.temperature > blue.recipe.white_balance.temperature);
    }

    #[test]
    fn staging_is_ai_only_prefers_qwen_on_replicate_and_follows_its_parameters() {
        let d = Interiors.presets();
        let staging = d.iter().find(|p| p.id == "virtual-staging").unwrap();
        assert_eq!(staging.kind, PresetKind::Content);
        assert!(staging.ai_only);
        assert_eq!(staging.engine_hint.as_deref(), Some("replicate"));
        assert_eq!(
            staging.models.get("replicate").map(String::as_str),
            Some("qwen/qwen-image-edit")
        );
        assert!(staging.description.contains("disclosed"));
        let mut params = Params::default();
        params.0.insert("room".into(), json!("bedroom"));
        params.0.insert("style".into(), json!("scandinavian"));
        let bedroom = Interiors
            .build_request("virtual-staging", &params, &ImageFacts::default())
            .unwrap();
        assert!(bedroom.prompt.contains("bedroom") && bedroom.prompt.contains("Scandinavian"));
        assert!(bedroom.prompt.contains("Furnish it as if it were empty"));
        assert!(!bedroom.negative_prompt.contains("new objects"));
        params.0.insert("keep_furniture".into(), json!(true));
        let kept = Interiors
            .build_request("virtual-staging", &params, &ImageFacts::default())
            .unwrap();
        assert!(kept
            .prompt
            .contains("Keep every piece of furniture already in the room"));
    }
}
