//! The local recipe: what the built-in offline engine does for a preset.
//!
//! Every field defaults to "no change", so a recipe names only what it changes, and new
//! operators can be added without breaking plugins built earlier. Amounts are normalised:
//! most are in -1..1 (0 = off) and the host clamps them, so a plugin cannot produce
//! garbage by overshooting.

use serde::{Deserialize, Serialize};

/// All operators of the offline engine, applied in a fixed photographic order:
/// white balance → exposure → highlights/shadows → clarity → tone → colour → grade →
/// monochrome → vignette → grain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Recipe {
    /// Neutral balance.
    pub white_balance: WhiteBalance,
    /// Brightness.
    pub exposure: Exposure,
    /// Tone: edge-aware highlights/shadows and the tone curve.
    pub tone: Tone,
    /// Local contrast of mid-sized detail, -1..1.
    pub clarity: f32,
    /// Saturation boost that spares already saturated colours and skin, -1..1.
    pub vibrance: f32,
    /// Uniform saturation, -1 (grey) ..1.
    pub saturation: f32,
    /// Colour grading of shadows, midtones and highlights.
    pub grade: Grade,
    /// Black & white conversion with a channel mixer, when set.
    pub monochrome: Option<Monochrome>,
    /// Darkening (or lightening) of the corners.
    pub vignette: Vignette,
    /// Film grain.
    pub grain: Grain,
}

/// White balance adjustments.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct WhiteBalance {
    /// How much of the automatic (grey-world, highlight-weighted) correction to apply, 0..1.
    pub auto: f32,
    /// Blue (-1) to amber (+1) shift, about ±1500 K at the ends.
    pub temperature: f32,
    /// Green (-1) to magenta (+1) shift.
    pub tint: f32,
}

/// Exposure adjustments.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Exposure {
    /// Exposure change in stops, -4..4.
    pub ev: f32,
    /// How much of the automatic exposure (from the histogram) to apply, 0..1.
    pub auto: f32,
}

/// Tone adjustments.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Tone {
    /// Filmic S-curve strength around middle grey, -1..1.
    pub contrast: f32,
    /// Bright areas down (negative, recovers detail) or up, -1..1. Edge-aware, no halos.
    pub highlights: f32,
    /// Dark areas up (positive, opens shadows) or down, -1..1. Edge-aware, no halos.
    pub shadows: f32,
    /// White point: brightest tones up or down, -1..1.
    pub whites: f32,
    /// Black point: darkest tones up or down, -1..1.
    pub blacks: f32,
    /// Lifted, milky blacks as in faded prints, 0..1.
    pub fade: f32,
    /// How much automatic contrast (stretching the histogram) to apply, 0..1.
    pub auto: f32,
}

/// A hue/strength pair for colour grading.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Tint {
    /// Hue in degrees (0 red, 60 yellow, 120 green, 180 cyan, 240 blue, 300 magenta).
    pub hue: f32,
    /// Strength, 0..1.
    pub amount: f32,
}

/// Three-way colour grading.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Grade {
    /// Colour of the shadows.
    pub shadows: Tint,
    /// Colour of the midtones.
    pub midtones: Tint,
    /// Colour of the highlights.
    pub highlights: Tint,
    /// Moves the shadow/highlight split darker (-1) or brighter (+1).
    pub balance: f32,
}

/// Black & white conversion weights (normalised by the host).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Monochrome {
    /// Weight of red (a red filter darkens blue skies).
    pub red: f32,
    /// Weight of green.
    pub green: f32,
    /// Weight of blue.
    pub blue: f32,
}

impl Default for Monochrome {
    fn default() -> Self {
        // Luminance weights: a neutral conversion.
        Monochrome {
            red: 0.30,
            green: 0.59,
            blue: 0.11,
        }
    }
}

/// Vignette.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Vignette {
    /// Corner exposure change, -1 (one and a half stops darker) ..1.
    pub amount: f32,
    /// Where the falloff starts, as a fraction of the centre-to-corner distance, 0..1.
    pub midpoint: f32,
    /// Softness of the falloff, 0..1.
    pub feather: f32,
}

impl Default for Vignette {
    fn default() -> Self {
        Vignette {
            amount: 0.0,
            midpoint: 0.5,
            feather: 0.5,
        }
    }
}

/// Film grain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Grain {
    /// Strength, 0..1.
    pub amount: f32,
    /// Grain size relative to the picture (1 = fine 35 mm grain at any resolution), 0.5..4.
    pub size: f32,
}

impl Default for Grain {
    fn default() -> Self {
        Grain {
            amount: 0.0,
            size: 1.0,
        }
    }
}
