//! Phrases every preset prompt should carry, so generative engines change the look and
//! nothing else. Plugins append them to their own instruction.

/// For look presets (tone, colour, light).
pub const KEEP_LOOK: &str =
    "Keep the exact composition, framing, geometry, faces, skin texture and every \
object unchanged; change only colour, tone and light. Keep fine detail and noise structure; do not \
smooth, sharpen, add or remove anything.";

/// For content presets: what may change is named by the preset, everything else stays.
pub const KEEP_REST: &str =
    "Change nothing else: keep the composition, framing, perspective, faces and \
every other object exactly as they are, at full detail.";

/// What generative engines tend to do and must not.
pub const NEGATIVE: &str =
    "cropping, reframing, new objects, removed objects, changed faces, plastic \
skin, over-smoothing, halos, oversharpening, text, watermark";
