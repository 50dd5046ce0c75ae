//! A shoot's look: one engine answer's colour and tone, learned once and applied the same
//! way to any number of photos, with no engine call and no per-photo drift.
//!
//! The transfer stage (`transfer/`) learns an edit tied to one photo's geometry (a
//! bilateral grid over its preview). A look drops the geometry: it is a function of colour
//! alone, `sqrt(linear Rec. 2020) → sqrt(linear Rec. 2020)`, stored as
//!
//! * a global part — a tone curve on luma and a 3×4 colour matrix after it — which is what
//!   colours the references never showed fall back to, and
//! * a 3D LUT (33³ nodes, trilinear) holding the whole mapping: the global part plus what
//!   the references showed on top of it.
//!
//! `fit.rs` learns it from (preview, answer) pairs, `file.rs` stores it (`.look`),
//! `cube.rs` exports it for other software. Applying it (`Look::apply_blend`) is one pass
//! over the full-resolution base, blended at the requested intensity.

pub mod cube;
pub mod fidelity;
pub mod file;
pub mod fit;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{check, Cancel, JobError};
use crate::image::RgbF32;

/// The LUT's nodes per axis.
pub const LUT_SIZE: usize = 33;

/// A 3D LUT over the unit cube, `n³` nodes of RGB, red index fastest (the `.cube` order).
#[derive(Clone, Debug, PartialEq)]
pub struct Lut {
    /// Nodes per axis (≥ 2).
    pub n: usize,
    /// `n³ × 3` values.
    pub values: Vec<f32>,
}

impl Lut {
    /// The identity LUT.
    pub fn identity(n: usize) -> Lut {
        let mut values = Vec::with_capacity(n * n * n * 3);
        let step = 1.0 / (n - 1) as f32;
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    values.extend([r as f32 * step, g as f32 * step, b as f32 * step]);
                }
            }
        }
        Lut { n, values }
    }

    /// Node `(r, g, b)`'s offset into `values`.
    #[inline(always)]
    pub fn at(&self, r: usize, g: usize, b: usize) -> usize {
        3 * ((b * self.n + g) * self.n + r)
    }

    /// Trilinear lookup of `p` (each channel clamped to 0..1).
    #[inline]
    pub fn lookup(&self, p: [f32; 3]) -> [f32; 3] {
        let m = (self.n - 1) as f32;
        let mut i = [0usize; 3];
        let mut f = [0f32; 3];
        for c in 0..3 {
            let x = p[c].clamp(0.0, 1.0) * m;
            let k = (x as usize).min(self.n - 2);
            i[c] = k;
            f[c] = x - k as f32;
        }
        let v = &self.values;
        let (sr, sg, sb) = (3, 3 * self.n, 3 * self.n * self.n);
        let o = self.at(i[0], i[1], i[2]);
        let mut out = [0f32; 3];
        for (c, out) in out.iter_mut().enumerate() {
            let o = o + c;
            let c00 = v[o] + f[0] * (v[o + sr] - v[o]);
            let c10 = v[o + sg] + f[0] * (v[o + sg + sr] - v[o + sg]);
            let c01 = v[o + sb] + f[0] * (v[o + sb + sr] - v[o + sb]);
            let c11 = v[o + sb + sg] + f[0] * (v[o + sb + sg + sr] - v[o + sb + sg]);
            let c0 = c00 + f[1] * (c10 - c00);
            let c1 = c01 + f[1] * (c11 - c01);
            *out = c0 + f[2] * (c1 - c0);
        }
        out
    }
}

/// sRGB's transfer curve, extended to negative values by symmetry (colours outside sRGB
/// keep their place instead of folding onto its edge).
#[inline]
pub fn srgb_oetf(v: f32) -> f32 {
    let a = v.abs();
    let e = if a <= 0.003_130_8 {
        12.92 * a
    } else {
        1.055 * a.powf(1.0 / 2.4) - 0.055
    };
    e.copysign(v)
}

/// The inverse of [`srgb_oetf`].
#[inline]
pub fn srgb_eotf(e: f32) -> f32 {
    let a = e.abs();
    let v = if a <= 0.040_45 {
        a / 12.92
    } else {
        ((a + 0.055) / 1.055).powf(2.4)
    };
    v.copysign(e)
}

fn mul(m: &[[f32; 3]; 3], p: [f32; 3]) -> [f32; 3] {
    m.map(|r| r[0] * p[0] + r[1] * p[1] + r[2] * p[2])
}

/// `sqrt`-domain working-space RGB → sRGB-encoded (extended: may leave 0..1).
pub fn sqrt_to_srgb(p: [f32; 3]) -> [f32; 3] {
    let (to, _) = crate::color::srgb_matrices();
    mul(to, p.map(|v| v * v)).map(srgb_oetf)
}

/// sRGB-encoded → `sqrt`-domain working-space RGB (negative light clipped to 0).
pub fn srgb_to_sqrt(e: [f32; 3]) -> [f32; 3] {
    let (_, from) = crate::color::srgb_matrices();
    mul(from, e.map(srgb_eotf)).map(|v| v.max(0.0).sqrt())
}

/// Rec. 709 luma of sRGB-encoded values (what graders' luma curves and toning key on).
#[inline]
pub fn srgb_luma(e: [f32; 3]) -> f32 {
    0.2126 * e[0] + 0.7152 * e[1] + 0.0722 * e[2]
}

/// Linear interpolation in a table over 0..1 (input clamped).
#[inline]
fn table_at(t: &[[f32; 3]], x: f32) -> [f32; 3] {
    let m = (t.len() - 1) as f32;
    let u = x.clamp(0.0, 1.0) * m;
    let k = (u as usize).min(t.len() - 2);
    let f = u - k as f32;
    std::array::from_fn(|c| t[k][c] + f * (t[k + 1][c] - t[k][c]))
}

/// The look's global part: what colours the references never showed are mapped by. It is
/// the shape of a grade as colourists and image models make it, on display-encoded
/// (sRGB) values: a tone curve on each channel, a channel mixer with offsets, and toning
/// keyed on luma (split toning, tinted shadows or highlights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Global {
    /// The tone curve on sRGB-encoded values, applied to each channel: values at evenly
    /// spaced inputs 0..1.
    pub tone: Vec<f32>,
    /// Rows of the 3×4 channel mixer applied to `[tone(r), tone(g), tone(b), 1]`.
    pub matrix: [[f32; 4]; 3],
    /// RGB offsets added after the mixer, by the input's luma (sRGB-encoded, Rec. 709
    /// weights): values at evenly spaced lumas 0..1.
    pub toning: Vec<[f32; 3]>,
}

impl Global {
    /// The identity.
    pub fn identity() -> Global {
        Global {
            tone: vec![0.0, 1.0],
            matrix: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            toning: vec![[0.0; 3]; 2],
        }
    }

    /// The tone curve at `x` (clamped to 0..1), linear between its points.
    pub fn tone_at(&self, x: f32) -> f32 {
        let m = (self.tone.len() - 1) as f32;
        let u = x.clamp(0.0, 1.0) * m;
        let k = (u as usize).min(self.tone.len() - 2);
        self.tone[k] + (u - k as f32) * (self.tone[k + 1] - self.tone[k])
    }

    /// The channel mixer's output before toning, sRGB-encoded.
    pub fn mixed(&self, e: [f32; 3]) -> [f32; 3] {
        let t = e.map(|v| self.tone_at(v));
        self.matrix
            .map(|row| row[0] * t[0] + row[1] * t[1] + row[2] * t[2] + row[3])
    }

    /// The toning offsets at luma `y`.
    pub fn toning_at(&self, y: f32) -> [f32; 3] {
        table_at(&self.toning, y)
    }

    /// The global mapping of sRGB-encoded `e`, sRGB-encoded. An engine answers with an
    /// sRGB picture, so the mapping is learned and clipped within sRGB; what a colour has
    /// beyond sRGB (a RAW's saturated flowers) is carried through unchanged on top.
    pub fn map_srgb(&self, e: [f32; 3]) -> [f32; 3] {
        let inside = e.map(|v| v.clamp(0.0, 1.0));
        let q = self.mixed(inside);
        let o = self.toning_at(srgb_luma(inside));
        [0, 1, 2].map(|c| (q[c] + o[c]).clamp(0.0, 1.0) + (e[c] - inside[c]))
    }

    /// The global mapping of `p` (`sqrt` domain).
    pub fn map(&self, p: [f32; 3]) -> [f32; 3] {
        srgb_to_sqrt(self.map_srgb(sqrt_to_srgb(p)))
    }
}

/// Where a look came from: one reference photo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The photo's file name (not its folder: a look is shared).
    pub name: String,
    /// SHA-256 of the photo file.
    pub sha256: String,
    /// The edit cache's key of the engine answer it was learned from (`None` for the
    /// offline engine, which is not cached).
    pub cache_key: Option<String>,
}

/// What a look is, stored in the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LookInfo {
    /// Preset id.
    pub preset: String,
    /// Preset version.
    pub preset_version: u32,
    /// Preset parameters.
    pub params: Map<String, Value>,
    /// Engine name.
    pub engine: String,
    /// Engine model.
    pub model: String,
    /// The reference photos.
    pub references: Vec<Reference>,
    /// Share of LUT nodes the references covered.
    pub coverage: f32,
    /// When it was learned (seconds since 1970, UTC).
    pub created: u64,
}

/// A learned look, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    /// Where it came from (stored in the file's header).
    pub info: LookInfo,
    /// The global part.
    pub global: Global,
    /// The whole mapping.
    pub lut: Lut,
}

impl Look {
    /// The look of one linear working-space pixel (clamped to 0..1, the base's range).
    #[inline]
    pub fn map_linear(&self, p: &[f32]) -> [f32; 3] {
        let s = [0, 1, 2].map(|c| p[c].clamp(0.0, 1.0).sqrt());
        self.lut.lookup(s).map(|v| v * v)
    }

    /// Applies the look to `base` (linear working space, display-referred 0..1) and blends
    /// it at `intensity`, in place, in one pass.
    pub fn apply_blend(
        &self,
        base: &mut RgbF32,
        intensity: f32,
        cancel: &Cancel,
    ) -> Result<(), JobError> {
        let row = base.width * 3;
        // Rows in blocks, so a cancel is seen within a few milliseconds.
        for block in base.data.chunks_mut(row * 256) {
            check(cancel)?;
            block.par_chunks_mut(row).for_each(|r| {
                for p in r.chunks_exact_mut(3) {
                    let e = self.map_linear(p);
                    for c in 0..3 {
                        p[c] += intensity * (e[c] - p[c]);
                    }
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_lut_is_identity_between_nodes() {
        let lut = Lut::identity(LUT_SIZE);
        for p in [
            [0.0, 0.0, 0.0],
            [0.123, 0.5, 0.977],
            [1.0, 0.3, 0.0],
            [0.51, 0.52, 0.53],
        ] {
            let q = lut.lookup(p);
            for c in 0..3 {
                assert!((q[c] - p[c]).abs() < 1e-6, "{p:?} → {q:?}");
            }
        }
    }

    #[test]
    fn lookup_is_exact_on_nodes_and_linear_between() {
        // A LUT of a function linear in each channel is reproduced exactly by trilinear
        // interpolation; a node is its value.
        let n = 5;
        let mut lut = Lut::identity(n);
        for v in lut.values.chunks_exact_mut(3) {
            let [r, g, b] = [v[0], v[1], v[2]];
            v.copy_from_slice(&[0.5 * r + 0.1, 0.2 * g + 0.3 * b, 1.0 - b]);
        }
        let q = lut.lookup([0.3, 0.7, 0.9]);
        let want = [0.25, 0.2 * 0.7 + 0.3 * 0.9, 0.1];
        for c in 0..3 {
            assert!((q[c] - want[c]).abs() < 1e-6, "{q:?} vs {want:?}");
        }
    }
}
