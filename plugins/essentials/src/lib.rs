//! Luminary Essentials: the first-party presets every install has.
//!
//! Each preset carries a prompt written for generative engines (keep the photograph, change
//! only the look) and a local recipe for the offline engine. "auto" reads the image facts
//! and adapts; the others are looks with a strength parameter.

use luminary_plugin_api::prompts::{KEEP_LOOK as KEEP, NEGATIVE};
use luminary_plugin_api::*;

/// The plugin value exported below.
pub struct Essentials;

fn strength_schema(title: &str) -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "strength": {
                "type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0,
                "title": title,
                "description": "Scales every adjustment of the preset (1 = as designed)."
            }
        },
        "additionalProperties": false
    })
}

impl Plugin for Essentials {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            id: "photo.luminary.essentials".into(),
            name: "Luminary Essentials".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Auto enhance, film, black & white, portrait and landscape looks".into(),
            author: "Luminary".into(),
        }
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        vec![
            PresetDescriptor::look(
                "auto",
                "Auto enhance",
                "Balanced exposure, neutral colour and open shadows, adapted to each photo.",
            )
            .intensity(0.8)
            .params(json!({
                "type": "object",
                "properties": {
                    "strength": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0,
                                  "title": "Strength"},
                    "keep_white_balance": {"type": "boolean", "default": false,
                                  "title": "Keep white balance",
                                  "description": "Leave the camera's white balance alone."}
                },
                "additionalProperties": false
            }))
            .tags(&["auto", "general"]),
            PresetDescriptor::look(
                "vivid-landscape",
                "Vivid landscape",
                "Deep skies, rich foliage and crisp mid-tone detail without crunchy halos.",
            )
            .intensity(0.75)
            .params(strength_schema("Strength"))
            .tags(&["landscape"]),
            PresetDescriptor::look(
                "warm-film",
                "Warm film",
                "Soft colour-negative look: warm highlights, teal shadows, gentle fade and fine grain.",
            )
            .intensity(0.8)
            .params(strength_schema("Strength"))
            .tags(&["film"]),
            PresetDescriptor::look(
                "bw-classic",
                "Classic black & white",
                "Rich silver-gelatin monochrome with a red filter's darker skies.",
            )
            .intensity(1.0)
            .params(json!({
                "type": "object",
                "properties": {
                    "filter": {"type": "string", "enum": ["none", "yellow", "red", "green"],
                               "default": "red", "title": "Lens filter"},
                    "grain": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.25,
                              "title": "Grain"}
                },
                "additionalProperties": false
            }))
            .tags(&["monochrome", "film"]),
            PresetDescriptor::look(
                "soft-portrait",
                "Soft portrait",
                "Flattering, lower-contrast light with warm skin and calm backgrounds.",
            )
            .intensity(0.7)
            .params(strength_schema("Strength"))
            .tags(&["portrait"]),
            PresetDescriptor::look(
                "moody",
                "Moody",
                "Darker, desaturated, cool shadows and a strong vignette for atmosphere.",
            )
            .intensity(0.8)
            .params(strength_schema("Strength"))
            .tags(&["landscape", "street"]),
            cutout(),
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
        let prompt = match preset {
            "auto" => {
                r.exposure.auto = 1.0 * s.min(1.0);
                if !params.bool_or("keep_white_balance", false) {
                    r.white_balance.auto = 0.8 * s.min(1.0);
                }
                r.tone.auto = 0.6 * s.min(1.0);
                // Open the shadows more when the photo is dark at the bottom end, recover
                // highlights when the top end is near clipping.
                let [p01, _p50, p99] = facts.luminance_percentiles;
                r.tone.shadows = (0.25 + if p01 < 0.01 { 0.15 } else { 0.0 }) * s;
                r.tone.highlights = if p99 > 0.9 { -0.4 * s } else { -0.15 * s };
                r.clarity = 0.15 * s;
                r.vibrance = if facts.mean_saturation < 0.15 {
                    0.35 * s
                } else {
                    0.15 * s
                };
                format!("Enhance this photograph as a skilled photo editor would: balanced exposure, \
                         neutral white balance, open shadows, protected highlights, natural colour. {KEEP}")
            }
            "vivid-landscape" => {
                r.exposure.auto = 0.5;
                r.tone.contrast = 0.25 * s;
                r.tone.highlights = -0.45 * s;
                r.tone.shadows = 0.3 * s;
                r.clarity = 0.35 * s;
                r.vibrance = 0.45 * s;
                r.saturation = 0.08 * s;
                r.grade.highlights = Tint {
                    hue: 45.0,
                    amount: 0.08 * s,
                };
                r.vignette.amount = -0.15 * s;
                format!(
                    "Make this landscape vivid and deep: richer blue skies and greens, recovered \
                         highlights, crisp mid-tone detail, natural not neon. {KEEP}"
                )
            }
            "warm-film" => {
                r.white_balance.temperature = 0.18 * s;
                r.tone.contrast = -0.1 * s;
                r.tone.fade = 0.12 * s;
                r.tone.highlights = -0.25 * s;
                r.saturation = -0.12 * s;
                r.grade.shadows = Tint {
                    hue: 190.0,
                    amount: 0.22 * s,
                };
                r.grade.highlights = Tint {
                    hue: 40.0,
                    amount: 0.2 * s,
                };
                r.grain = Grain {
                    amount: 0.2 * s,
                    size: 1.2,
                };
                format!("Give this photograph the look of warm colour-negative film (Portra-like): \
                         soft contrast, warm creamy highlights, slightly teal shadows, gentle fade, \
                         fine grain. {KEEP}")
            }
            "bw-classic" => {
                let (red, green, blue) = match params.str_or("filter", "red") {
                    "none" => (0.30, 0.59, 0.11),
                    "yellow" => (0.45, 0.50, 0.05),
                    "green" => (0.25, 0.70, 0.05),
                    _ => (0.70, 0.35, -0.05),
                };
                r.monochrome = Some(Monochrome { red, green, blue });
                r.tone.contrast = 0.3;
                r.tone.shadows = 0.1;
                r.clarity = 0.25;
                r.grain = Grain {
                    amount: params.f32_or("grain", 0.25),
                    size: 1.0,
                };
                r.vignette.amount = -0.12;
                format!("Convert this photograph to a rich classic black and white print, as through \
                         a red filter: deep skies, luminous skin, full tonal range from true black to \
                         clean white. {KEEP}")
            }
            "soft-portrait" => {
                r.exposure.ev = 0.1 * s;
                r.tone.contrast = -0.2 * s;
                r.tone.highlights = -0.3 * s;
                r.tone.shadows = 0.25 * s;
                r.clarity = -0.2 * s;
                r.white_balance.temperature = 0.08 * s;
                r.vibrance = 0.1 * s;
                r.grade.highlights = Tint {
                    hue: 30.0,
                    amount: 0.1 * s,
                };
                format!("Make this portrait softly flattering: gentle diffused light, lower contrast, \
                         warm natural skin, calm background. Do not retouch or reshape the face. {KEEP}")
            }
            "moody" => {
                r.exposure.ev = -0.35 * s;
                r.tone.contrast = 0.2 * s;
                r.tone.highlights = -0.3 * s;
                r.tone.fade = 0.05 * s;
                r.saturation = -0.3 * s;
                r.white_balance.temperature = -0.1 * s;
                r.grade.shadows = Tint {
                    hue: 215.0,
                    amount: 0.25 * s,
                };
                r.vignette = Vignette {
                    amount: -0.45 * s,
                    midpoint: 0.35,
                    feather: 0.6,
                };
                format!(
                    "Give this photograph a dark, moody atmosphere: lower exposure, muted colour, \
                         cool blue shadows, deep vignette. {KEEP}"
                )
            }
            // Segmentation models take no instruction; the words are for the log and for
            // engines that would read them.
            "remove-background" => {
                return Ok(EngineRequest {
                    prompt: "Separate the main subject from the background: return its matte."
                        .into(),
                    negative_prompt: String::new(),
                    engine_hint: Some("fal".into()),
                    recipe: r,
                })
            }
            other => return Err(format!("unknown preset '{other}'")),
        };
        Ok(EngineRequest {
            prompt,
            negative_prompt: NEGATIVE.into(),
            engine_hint: None,
            recipe: r,
        })
    }
}

/// The cut-out: a segmentation model (BiRefNet on fal by default; a Replicate BiRefNet as
/// the alternative) finds the subject on the preview, and Luminary refines its edges on the
/// full-resolution photo.
fn cutout() -> PresetDescriptor {
    let mut d = PresetDescriptor::look(
        "remove-background",
        "Remove background",
        "Cuts the subject out: the photo with a transparent background, as a 16-bit TIFF or \
         PNG with alpha. The edges (hair, fur, leaves) are refined on the full-resolution photo.",
    )
    .intensity(1.0)
    .params(json!({
        "type": "object",
        "properties": {
            "refine_edges": {"type": "boolean", "default": true, "title": "Refine edges",
                             "description": "Follow hair, fur and leaves on the full-resolution photo (off: the model's matte, only upscaled)."}
        },
        "additionalProperties": false
    }))
    .tags(&["cutout", "product", "portrait"])
    .prefers_engine("fal")
    .prefers_model("fal", "fal-ai/birefnet/v2")
    .prefers_model(
        "replicate",
        "men1scus/birefnet:f74986db0355b58403ed20963af156525e2891ea3c2d499bfbfb2a28cd87c5d7",
    )
    .ai_only();
    d.kind = PresetKind::Cutout;
    d
}

export_plugin!(Essentials);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_builds_a_request_that_changes_something() {
        let p = Essentials;
        // The cut-out has no offline recipe: it is AI-only.
        for d in p.presets().into_iter().filter(|d| !d.ai_only) {
            let req = p
                .build_request(&d.id, &Params::default(), &ImageFacts::default())
                .unwrap();
            assert!(
                req.prompt.contains("Keep the exact composition"),
                "{}",
                d.id
            );
            assert_ne!(
                req.recipe,
                Recipe::default(),
                "preset {} changes nothing offline",
                d.id
            );
        }
    }

    #[test]
    fn the_cutout_is_an_ai_only_matte_preset_on_birefnet() {
        let d = cutout();
        assert_eq!((d.kind, d.ai_only), (PresetKind::Cutout, true));
        assert_eq!(d.engine_hint.as_deref(), Some("fal"));
        assert_eq!(d.models["fal"], "fal-ai/birefnet/v2");
        assert!(d.models["replicate"].starts_with("men1scus/birefnet:"));
        let req = Essentials
            .build_request(
                "remove-background",
                &Params::default(),
                &ImageFacts::default(),
            )
            .unwrap();
        assert_eq!(req.recipe, Recipe::default());
    }

    #[test]
    fn unknown_preset_is_an_error() {
        let err = Essentials
            .build_request("nope", &Params::default(), &ImageFacts::default())
            .unwrap_err();
        assert!(err.contains("nope"));
    }
}
