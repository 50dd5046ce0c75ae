//! Stage 8 — Blend: `out = base + intensity · (edited − base)`, in linear light.
//!
//! Linear light is where mixing two renderings behaves like mixing two exposures, and it
//! makes intensity exact at both ends: 0 is the base bit for bit, 1 the edit.

use rayon::prelude::*;

use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;

/// Checks an intensity from a request.
pub fn validate_intensity(intensity: f64) -> Result<f64, JobError> {
    if intensity.is_finite() && (0.0..=1.0).contains(&intensity) {
        Ok(intensity)
    } else {
        Err(JobError::new(
            ErrorCode::BadRequest,
            format!("intensity must be between 0 and 1 (got {intensity})"),
        ))
    }
}

/// Blends into `edited` in place (it becomes the output), consuming no extra memory.
pub fn blend_into(base: &RgbF32, edited: &mut RgbF32, intensity: f32) {
    assert_eq!(
        (base.width, base.height),
        (edited.width, edited.height),
        "blend needs equal sizes"
    );
    if intensity >= 1.0 {
        return;
    }
    if intensity <= 0.0 {
        edited.data.copy_from_slice(&base.data);
        return;
    }
    edited
        .data
        .par_chunks_mut(1 << 16)
        .zip(base.data.par_chunks(1 << 16))
        .for_each(|(e, b)| {
            for (ev, bv) in e.iter_mut().zip(b) {
                *ev = bv + intensity * (*ev - bv);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intensity_ends_are_exact_and_the_middle_is_halfway() {
        let base = RgbF32::new(2, 1, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        let edit = RgbF32::new(2, 1, vec![0.3, 0.0, 0.9, 0.4, 1.0, 0.0]);
        let mut zero = edit.clone();
        blend_into(&base, &mut zero, 0.0);
        assert_eq!(zero, base);
        let mut one = edit.clone();
        blend_into(&base, &mut one, 1.0);
        assert_eq!(one, edit);
        let mut half = edit.clone();
        blend_into(&base, &mut half, 0.5);
        for i in 0..6 {
            assert!((half.data[i] - (base.data[i] + edit.data[i]) / 2.0).abs() < 1e-6);
        }
        assert!(validate_intensity(1.5).is_err() && validate_intensity(f64::NAN).is_err());
    }
}
