//! The DNG specification's colour maths (DNG 1.7, chapter 6, "Mapping Camera Color Space
//! to CIE XYZ Space"), as Adobe's DNG SDK implements it (`dng_color_spec.cpp`): from what
//! a file says about its camera to the white balance and the matrix into the working space.
//!
//! * The white point comes from AsShotNeutral (found by iterating: the neutral's xy depends
//!   on the matrix, which is interpolated by that xy's colour temperature) or AsShotWhiteXY.
//! * ColorMatrix1/2, ForwardMatrix1/2 and CameraCalibration1/2 are interpolated linearly in
//!   inverse colour temperature (Robertson's method) between the two calibration
//!   illuminants, clamped outside them (AnalogBalance · CameraCalibration · ColorMatrix is
//!   interpolated as a product, as the SDK does).
//! * With forward matrices, white-balanced reference camera RGB goes straight to XYZ D50;
//!   without, the inverse colour matrix is adapted from the scene white to D50 (Bradford).
//! * D50 (the ICC connection space) then goes to the working space (Rec.2020, D65) through
//!   moxcms' Bradford-adapted colorants, so the camera's neutral lands on working white.
//!
//! Other RAWs go through the same maths with rawler's camera matrix and the as-shot white
//! balance from the maker notes. Facts that are missing or implausible are replaced by a
//! documented fallback, and every fallback is written into [`Solved::notes`] for the log.
//!
//! Hand-written on purpose: no crate implements the DNG colour model (rawler's own develop
//! ignores forward matrices, calibration and interpolation), and it is 3×3 arithmetic.

use serde::{Deserialize, Serialize};

/// A 3×3 matrix, rows first.
pub type M3 = [[f64; 3]; 3];
/// A 3-vector.
pub type V3 = [f64; 3];

/// What a RAW file says about its colour, as the decoder process reads it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ColourFacts {
    /// Where the matrices come from, for the log ("the DNG's tags", "rawler's camera data").
    pub origin: String,
    /// One or two calibrations, in the file's order.
    pub calibrations: Vec<Calibration>,
    /// AnalogBalance (DNG), identity when absent.
    pub analog_balance: Option<V3>,
    /// AsShotNeutral: camera RGB of a neutral under the shot's light.
    pub as_shot_neutral: Option<V3>,
    /// AsShotWhiteXY: the shot's white point as CIE xy.
    pub as_shot_white_xy: Option<[f64; 2]>,
}

/// One calibration illuminant and the matrices measured under it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Calibration {
    /// EXIF LightSource code of the calibration illuminant (21 = D65, 17 = A, …).
    pub illuminant: u16,
    /// ColorMatrix: XYZ → reference camera RGB.
    pub color_matrix: Option<M3>,
    /// ForwardMatrix: white-balanced reference camera RGB → XYZ D50.
    pub forward_matrix: Option<M3>,
    /// CameraCalibration: reference camera → this camera.
    pub camera_calibration: Option<M3>,
}

/// The colour transform of one photo.
#[derive(Clone, Debug, PartialEq)]
pub struct Solved {
    /// Per-channel gains that make the camera's neutral equal in all channels, the
    /// smallest 1 (a channel's raw clip point sits at its gain after white balance).
    pub gains: [f32; 3],
    /// White-balanced camera RGB → working space (the neutral at clip → (1, 1, 1)).
    pub to_working: [[f32; 3]; 3],
    /// The white point used, CIE xy.
    pub white_xy: [f64; 2],
    /// Its correlated colour temperature, kelvin.
    pub cct: f64,
    /// The weight of the first (lower-temperature) calibration, 0..1.
    pub weight: f64,
    /// What was missing or implausible and what was used instead.
    pub notes: Vec<String>,
}

/// Why no colour transform could be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ColourError {
    /// No usable colour or forward matrix at all.
    #[error("the RAW carries no usable colour matrix")]
    NoMatrix,
}

/// D50 as the DNG SDK writes it (xy), the PCS white.
const D50_XY: [f64; 2] = [0.3457, 0.3585];
/// D65, xy.
pub const D65_XY: [f64; 2] = [0.3127, 0.3290];
/// D55, xy: the SDK's white when a file gives none.
const D55_XY: [f64; 2] = [0.3324, 0.3474];

/// The linearised Bradford cone response matrix.
const BRADFORD: M3 = [
    [0.8951, 0.2664, -0.1614],
    [-0.7502, 1.7135, 0.0367],
    [0.0389, -0.0685, 1.0296],
];

/// Colour temperature of an EXIF LightSource code, as the DNG SDK maps them (0: unknown).
pub fn illuminant_temperature(code: u16) -> f64 {
    match code {
        17 | 3 => 2850.0,                  // standard light A, tungsten
        24 => 3200.0,                      // ISO studio tungsten
        23 => 5000.0,                      // D50
        20 | 1 | 9 | 4 | 18 => 5500.0,     // D55, daylight, fine weather, flash, B
        21 | 19 | 10 => 6500.0,            // D65, C, cloudy
        22 | 11 => 7500.0,                 // D75, shade
        12 => (5700.0 + 7100.0) * 0.5,     // daylight fluorescent
        13 => (4600.0 + 5500.0) * 0.5,     // day white fluorescent
        14 | 2 => (3800.0 + 4500.0) * 0.5, // cool white fluorescent, fluorescent
        15 => (3250.0 + 3800.0) * 0.5,     // white fluorescent
        16 => (2600.0 + 3250.0) * 0.5,     // warm white fluorescent
        _ => 0.0,
    }
}

/// Robertson's isotemperature lines (Wyszecki & Stiles): reciprocal megakelvin, u, v, slope.
const ROBERTSON: [[f64; 4]; 31] = [
    [0.0, 0.18006, 0.26352, -0.24341],
    [10.0, 0.18066, 0.26589, -0.25479],
    [20.0, 0.18133, 0.26846, -0.26876],
    [30.0, 0.18208, 0.27119, -0.28539],
    [40.0, 0.18293, 0.27407, -0.30470],
    [50.0, 0.18388, 0.27709, -0.32675],
    [60.0, 0.18494, 0.28021, -0.35156],
    [70.0, 0.18611, 0.28342, -0.37915],
    [80.0, 0.18740, 0.28668, -0.40955],
    [90.0, 0.18880, 0.28997, -0.44278],
    [100.0, 0.19032, 0.29326, -0.47888],
    [125.0, 0.19462, 0.30141, -0.58204],
    [150.0, 0.19962, 0.30921, -0.70471],
    [175.0, 0.20525, 0.31647, -0.84901],
    [200.0, 0.21142, 0.32312, -1.0182],
    [225.0, 0.21807, 0.32909, -1.2168],
    [250.0, 0.22511, 0.33439, -1.4512],
    [275.0, 0.23247, 0.33904, -1.7298],
    [300.0, 0.24010, 0.34308, -2.0637],
    // The DNG SDK's value (Wyszecki & Stiles print 0.24792): kept for SDK-identical
    // temperatures, as darktable and RawTherapee do.
    [325.0, 0.24702, 0.34655, -2.4681],
    [350.0, 0.25591, 0.34951, -2.9641],
    [375.0, 0.26400, 0.35200, -3.5814],
    [400.0, 0.27218, 0.35407, -4.3633],
    [425.0, 0.28039, 0.35577, -5.3762],
    [450.0, 0.28863, 0.35714, -6.7262],
    [475.0, 0.29685, 0.35823, -8.5955],
    [500.0, 0.30505, 0.35907, -11.324],
    [525.0, 0.31320, 0.35968, -15.628],
    [550.0, 0.32129, 0.36011, -23.325],
    [575.0, 0.32931, 0.36038, -40.770],
    [600.0, 0.33724, 0.36051, -116.45],
];

/// Correlated colour temperature of a CIE xy white, kelvin (Robertson's method, as the DNG
/// SDK's `dng_temperature`), clamped to the table's 1667 K .. ∞ (returned as 50 000 K).
pub fn xy_to_cct(xy: [f64; 2]) -> f64 {
    let d = 1.5 - xy[0] + 6.0 * xy[1];
    let (u, v) = (2.0 * xy[0] / d, 3.0 * xy[1] / d);
    let mut last_dt = 0.0;
    for i in 1..ROBERTSON.len() {
        let [_, ui, vi, slope] = ROBERTSON[i];
        let len = (1.0 + slope * slope).sqrt();
        let (du, dv) = (1.0 / len, slope / len);
        let dt = -(u - ui) * dv + (v - vi) * du;
        if dt <= 0.0 || i == ROBERTSON.len() - 1 {
            let dt = (-dt).max(0.0);
            let f = if i == 1 { 0.0 } else { dt / (last_dt + dt) };
            let mired = ROBERTSON[i - 1][0] * f + ROBERTSON[i][0] * (1.0 - f);
            return if mired > 20.0 {
                1.0e6 / mired
            } else {
                50_000.0
            };
        }
        last_dt = dt;
    }
    unreachable!("the loop returns at its last line")
}

fn mul(a: &M3, b: &M3) -> M3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn apply(a: &M3, v: V3) -> V3 {
    [0, 1, 2].map(|i| a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2])
}

fn scale(a: &M3, s: f64) -> M3 {
    a.map(|r| r.map(|v| v * s))
}

fn diag(v: V3) -> M3 {
    [[v[0], 0.0, 0.0], [0.0, v[1], 0.0], [0.0, 0.0, v[2]]]
}

fn lerp(a: &M3, b: &M3, g: f64) -> M3 {
    let mut m = *a;
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = g * a[i][j] + (1.0 - g) * b[i][j];
        }
    }
    m
}

const IDENTITY: M3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// 3×3 inverse; `None` when singular (relative to the matrix's size) or not finite.
pub fn invert(m: &M3) -> Option<M3> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let size = m.iter().flatten().fold(0.0f64, |a, v| a.max(v.abs()));
    if !det.is_finite() || size == 0.0 || det.abs() < 1e-9 * size.powi(3) {
        return None;
    }
    let c = |a: usize, b: usize, d: usize, e: usize| m[a][b] * m[d][e] - m[a][e] * m[d][b];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// XYZ (Y = 1) of a CIE xy.
pub fn xy_to_xyz(xy: [f64; 2]) -> V3 {
    let y = xy[1].max(1e-6);
    [xy[0] / y, 1.0, (1.0 - xy[0] - xy[1]) / y]
}

/// CIE xy of an XYZ.
pub fn xyz_to_xy(v: V3) -> [f64; 2] {
    let s = v[0] + v[1] + v[2];
    if s.abs() < 1e-12 || !s.is_finite() {
        return D50_XY;
    }
    [v[0] / s, v[1] / s]
}

/// Bradford: XYZ seen under `from` → XYZ under `to` (the SDK's `MapWhiteMatrix`, with its
/// limits on the cone gains).
pub fn bradford(from: [f64; 2], to: [f64; 2]) -> M3 {
    let w1 = apply(&BRADFORD, xy_to_xyz(from)).map(|v| v.max(0.0));
    let w2 = apply(&BRADFORD, xy_to_xyz(to)).map(|v| v.max(0.0));
    let gain = |a: f64, b: f64| {
        if a > 0.0 {
            (b / a).clamp(0.1, 10.0)
        } else {
            10.0
        }
    };
    let a = diag([gain(w1[0], w2[0]), gain(w1[1], w2[1]), gain(w1[2], w2[2])]);
    let inv = invert(&BRADFORD).expect("Bradford is invertible");
    mul(&inv, &mul(&a, &BRADFORD))
}

fn max_entry(v: V3) -> f64 {
    v[0].max(v[1]).max(v[2])
}

/// The calibrations that can be used, ordered by temperature, with their matrices
/// normalised as the SDK does.
struct Profile {
    /// (temperature, XYZ→camera normalised, forward normalised, calibration)
    cals: Vec<(f64, M3, Option<M3>, M3)>,
    analog: M3,
}

impl Profile {
    fn new(facts: &ColourFacts, pcs: V3, notes: &mut Vec<String>) -> Result<Profile, ColourError> {
        let finite = |m: &M3| m.iter().flatten().all(|v| v.is_finite());
        let mut cals = Vec::new();
        for (i, c) in facts.calibrations.iter().enumerate() {
            let Some(cm) = c.color_matrix.filter(finite) else {
                continue;
            };
            if invert(&cm).is_none() {
                notes.push(format!(
                    "colour matrix {} is singular; it is not used",
                    i + 1
                ));
                continue;
            }
            // Scale so the PCS white just reaches 1 in the largest camera channel (the
            // SDK's `NormalizeColorMatrix`: only when it is off by more than 1 %).
            let peak = max_entry(apply(&cm, pcs));
            let cm = if peak > 0.0 && !(0.99..=1.01).contains(&peak) {
                scale(&cm, 1.0 / peak)
            } else {
                cm
            };
            let fm = c.forward_matrix.filter(finite).and_then(|fm| {
                let one = apply(&fm, [1.0; 3]);
                if one.iter().any(|v| *v <= 0.0) || invert(&fm).is_none() {
                    notes.push(format!(
                        "forward matrix {} is implausible; the colour matrix is used instead",
                        i + 1
                    ));
                    return None;
                }
                Some(mul(
                    &diag([pcs[0] / one[0], pcs[1] / one[1], pcs[2] / one[2]]),
                    &fm,
                ))
            });
            let cc = match c.camera_calibration.filter(finite) {
                Some(cc) if invert(&cc).is_some() => cc,
                Some(_) => {
                    notes.push(format!(
                        "camera calibration {} is singular; identity is used",
                        i + 1
                    ));
                    IDENTITY
                }
                None => IDENTITY,
            };
            cals.push((illuminant_temperature(c.illuminant), cm, fm, cc));
        }
        if cals.is_empty() {
            return Err(ColourError::NoMatrix);
        }
        // Two calibrations only with two known, different temperatures; otherwise the first.
        if cals.len() >= 2 {
            let (t1, t2) = (cals[0].0, cals[1].0);
            if t1 > 0.0 && t2 > 0.0 && t1 != t2 {
                cals.truncate(2);
                if t1 > t2 {
                    cals.swap(0, 1);
                }
                // A forward matrix only one of them has serves both (as in the SDK).
                match (cals[0].2, cals[1].2) {
                    (Some(f), None) => cals[1].2 = Some(f),
                    (None, Some(f)) => cals[0].2 = Some(f),
                    _ => {}
                }
            } else {
                cals.truncate(1);
            }
        }
        let analog = match facts.analog_balance {
            Some(ab) if ab.iter().all(|v| v.is_finite() && *v > 0.0) => diag(ab),
            Some(ab) => {
                notes.push(format!(
                    "AnalogBalance {ab:?} is implausible; it is not used"
                ));
                IDENTITY
            }
            None => IDENTITY,
        };
        Ok(Profile { cals, analog })
    }

    /// XYZ → camera (AnalogBalance · CameraCalibration · ColorMatrix, interpolated as a
    /// product, as the SDK does), forward matrix and calibration interpolated for `white`;
    /// and the weight of the first calibration.
    fn at(&self, white: [f64; 2]) -> (M3, Option<M3>, M3, f64) {
        let product = |cm: &M3, cc: &M3| mul(&self.analog, &mul(cc, cm));
        if self.cals.len() == 1 {
            let (_, cm, fm, cc) = self.cals[0];
            (product(&cm, &cc), fm, cc, 1.0)
        } else {
            let (t1, t2) = (self.cals[0].0, self.cals[1].0);
            let t = xy_to_cct(white);
            let g = if t <= t1 {
                1.0
            } else if t >= t2 {
                0.0
            } else {
                (1.0 / t - 1.0 / t2) / (1.0 / t1 - 1.0 / t2)
            };
            let (a, b) = (&self.cals[0], &self.cals[1]);
            let fm = match (a.2, b.2) {
                (Some(f1), Some(f2)) => Some(lerp(&f1, &f2, g)),
                _ => None,
            };
            let xyz_to_cam = lerp(&product(&a.1, &a.3), &product(&b.1, &b.3), g);
            (xyz_to_cam, fm, lerp(&a.3, &b.3, g), g)
        }
    }

    /// The white point of a camera neutral (the SDK's `NeutralToXY`).
    fn neutral_to_xy(&self, neutral: V3) -> [f64; 2] {
        let mut last = D50_XY;
        for pass in 0..30 {
            let (xyz_to_cam, ..) = self.at(last);
            let Some(cam_to_xyz) = invert(&xyz_to_cam) else {
                return last;
            };
            let mut next = xyz_to_xy(apply(&cam_to_xyz, neutral));
            if (next[0] - last[0]).abs() + (next[1] - last[1]).abs() < 1e-7 {
                return next;
            }
            if pass == 29 {
                next = [(last[0] + next[0]) * 0.5, (last[1] + next[1]) * 0.5];
            }
            last = next;
        }
        last
    }
}

/// Whether a neutral is believable: finite, positive, channels within 10× of each other.
fn plausible_neutral(n: V3) -> bool {
    let (lo, hi) = (n[0].min(n[1]).min(n[2]), max_entry(n));
    n.iter().all(|v| v.is_finite()) && lo > 0.0 && hi / lo <= 10.0
}

/// Whether the file gives a white point `solve` can use; when not, the caller measures the
/// picture's mean camera RGB for [`solve`]'s `estimate`.
pub fn has_white(facts: &ColourFacts) -> bool {
    facts.as_shot_neutral.is_some_and(plausible_neutral) || valid_xy(facts.as_shot_white_xy)
}

fn valid_xy(xy: Option<[f64; 2]>) -> bool {
    xy.is_some_and(|xy| xy.iter().all(|v| v.is_finite() && *v > 0.0 && *v < 1.0))
}

/// The white point of an auto white balance from the picture's mean camera RGB (grey
/// world), the way cameras tune theirs: under warm light (below 5000 K) part of the light's
/// warmth is kept — up to 35 % of the way to D50 at 2850 K and below — rather than neutralising
/// a candle-lit room into daylight.
fn auto_white(profile: &Profile, mean: V3) -> [f64; 2] {
    let xy = profile.neutral_to_xy(mean);
    let mired = 1.0e6 / xy_to_cct(xy);
    let k = 0.35 * ((mired - 200.0) / (350.0 - 200.0)).clamp(0.0, 1.0);
    [
        xy[0] + k * (D50_XY[0] - xy[0]),
        xy[1] + k * (D50_XY[1] - xy[1]),
    ]
}

/// Solves the colour of one photo. `pcs_to_working` takes XYZ D50 to the working space
/// (`pcs` is its white, the XYZ that maps to working (1, 1, 1)). `estimate`: the picture's
/// mean camera RGB, used when the file gives no usable white point.
pub fn solve(
    facts: &ColourFacts,
    estimate: Option<V3>,
    pcs: V3,
    pcs_to_working: &M3,
) -> Result<Solved, ColourError> {
    let mut notes = Vec::new();
    let profile = Profile::new(facts, pcs, &mut notes)?;
    let pcs_xy = xyz_to_xy(pcs);
    let white = match (facts.as_shot_neutral, facts.as_shot_white_xy) {
        (Some(n), _) if plausible_neutral(n) => profile.neutral_to_xy(n),
        (n, Some(xy)) if valid_xy(Some(xy)) => {
            if let Some(n) = n {
                notes.push(format!(
                    "the as-shot neutral {n:?} is implausible; AsShotWhiteXY is used"
                ));
            }
            xy
        }
        (n, _) => {
            let what = match n {
                Some(n) => format!("the as-shot white balance {n:?} is implausible"),
                None => "the file has no as-shot white balance".to_string(),
            };
            match estimate.filter(|e| plausible_neutral(*e)) {
                Some(mean) => {
                    let xy = auto_white(&profile, mean);
                    notes.push(format!(
                        "{what}; an auto white balance from the picture is used ({:.0} K)",
                        xy_to_cct(xy)
                    ));
                    xy
                }
                None => {
                    notes.push(format!("{what}; daylight (D55) is used"));
                    D55_XY
                }
            }
        }
    };
    let (xyz_to_cam, fm, cc, weight) = profile.at(white);
    let cam_white = apply(&xyz_to_cam, xy_to_xyz(white));
    let peak = max_entry(cam_white);
    let cam_white = if peak > 0.0 && peak.is_finite() {
        cam_white.map(|v| (v / peak).clamp(0.001, 1.0))
    } else {
        notes.push("the camera white is not positive; equal channels are used".into());
        [1.0; 3]
    };
    // Camera → PCS (XYZ D50), scaled so the neutral at clip reaches the PCS white.
    let cam_to_pcs = match fm {
        Some(fm) => {
            let individual_to_ref = invert(&mul(&profile.analog, &cc)).unwrap_or(IDENTITY);
            let ref_white = apply(&individual_to_ref, cam_white);
            mul(
                &fm,
                &mul(
                    &diag(ref_white.map(|v| 1.0 / v.max(1e-6))),
                    &individual_to_ref,
                ),
            )
        }
        None => {
            let pcs_to_cam = mul(&xyz_to_cam, &bradford(pcs_xy, white));
            let peak = max_entry(apply(&pcs_to_cam, pcs));
            let pcs_to_cam = scale(&pcs_to_cam, 1.0 / peak);
            invert(&pcs_to_cam).ok_or(ColourError::NoMatrix)?
        }
    };
    let to_working = mul(pcs_to_working, &mul(&cam_to_pcs, &diag(cam_white)));
    if !to_working.iter().flatten().all(|v| v.is_finite()) {
        return Err(ColourError::NoMatrix);
    }
    Ok(Solved {
        gains: cam_white.map(|v| (1.0 / v) as f32),
        to_working: to_working.map(|r| r.map(|v| v as f32)),
        white_xy: white,
        cct: xy_to_cct(white),
        weight,
        notes,
    })
}

/// [`solve`] into this program's working space.
pub fn solve_working(facts: &ColourFacts, estimate: Option<V3>) -> Result<Solved, ColourError> {
    let (pcs, to_working) = working_pcs();
    solve(facts, estimate, pcs, &to_working)
}

/// The working space's white in XYZ D50 and the matrix XYZ D50 → working.
pub fn working_pcs() -> (V3, M3) {
    let m = crate::color::working_profile().rgb_to_xyz_matrix();
    let rgb_to_xyz: M3 = m.v;
    let inv = invert(&rgb_to_xyz).expect("the working space's matrix is invertible");
    (apply(&rgb_to_xyz, [1.0; 3]), inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sony ILCE-7M3 as Adobe's DNG Converter writes it (ColorMatrix1 under A,
    /// ColorMatrix2 under D65; the same numbers as rawler's camera data for D65).
    const A7M3_A: M3 = [
        [0.7744, -0.3438, -0.0328],
        [-0.4193, 1.1601, 0.2801],
        [-0.0414, 0.0976, 0.7043],
    ];
    const A7M3_D65: M3 = [
        [0.7374, -0.2389, -0.0551],
        [-0.5435, 1.3162, 0.2519],
        [-0.1006, 0.1795, 0.6552],
    ];

    fn facts(neutral: Option<V3>) -> ColourFacts {
        ColourFacts {
            origin: "test".into(),
            calibrations: vec![
                Calibration {
                    illuminant: 17,
                    color_matrix: Some(A7M3_A),
                    ..Default::default()
                },
                Calibration {
                    illuminant: 21,
                    color_matrix: Some(A7M3_D65),
                    ..Default::default()
                },
            ],
            as_shot_neutral: neutral,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn robertson_gives_the_known_temperatures_of_standard_illuminants() {
        // D65 ≈ 6504 K, A ≈ 2856 K, D50 ≈ 5003 K (CIE 15).
        assert!(
            close(xy_to_cct(D65_XY), 6504.0, 15.0),
            "{}",
            xy_to_cct(D65_XY)
        );
        assert!(close(xy_to_cct([0.44757, 0.40745]), 2856.0, 10.0));
        assert!(close(xy_to_cct([0.3457, 0.3585]), 5003.0, 15.0));
    }

    #[test]
    fn the_working_space_white_is_d50_in_the_connection_space() {
        let (pcs, to_working) = working_pcs();
        assert!(
            close(pcs[0], 0.9642, 2e-3) && close(pcs[1], 1.0, 1e-6) && close(pcs[2], 0.8249, 2e-3),
            "{pcs:?}"
        );
        let w = apply(&to_working, pcs);
        assert!(w.iter().all(|v| close(*v, 1.0, 1e-9)), "{w:?}");
    }

    #[test]
    fn a_daylight_neutral_is_found_at_daylight_and_maps_to_working_white() {
        // The camera's neutral under D65, as a camera would write it.
        let n = apply(&A7M3_D65, xy_to_xyz(D65_XY));
        let peak = max_entry(n);
        let n = n.map(|v| v / peak);
        let s = solve_working(&facts(Some(n)), None).unwrap();
        assert!(s.notes.is_empty(), "{:?}", s.notes);
        assert!(
            close(s.white_xy[0], D65_XY[0], 1e-5) && close(s.white_xy[1], D65_XY[1], 1e-5),
            "{:?}",
            s.white_xy
        );
        assert!(close(s.cct, 6504.0, 15.0));
        assert!(s.weight < 1e-3, "D65 uses the D65 matrix: {}", s.weight);
        // The neutral, white-balanced, becomes working white.
        let wb: Vec<f32> = (0..3).map(|c| n[c] as f32 * s.gains[c]).collect();
        for row in s.to_working {
            let v: f32 = (0..3).map(|c| row[c] * wb[c]).sum();
            assert!((v - 1.0).abs() < 1e-5, "{v}");
        }
        assert_eq!(s.gains.iter().cloned().fold(f32::MAX, f32::min), 1.0);
    }

    #[test]
    fn a_tungsten_neutral_interpolates_towards_the_a_matrix() {
        let n = apply(&A7M3_A, xy_to_xyz([0.44757, 0.40745]));
        let s = solve_working(&facts(Some(n)), None).unwrap();
        assert!(close(s.cct, 2856.0, 40.0), "{}", s.cct);
        assert!(s.weight > 0.97, "{}", s.weight);
        // Between the two: a 4000 K neutral weighs both.
        let mid = [0.3805, 0.3768]; // ~4000 K on the daylight locus side
        let n = apply(&lerp(&A7M3_A, &A7M3_D65, 0.5), xy_to_xyz(mid));
        let s = solve_working(&facts(Some(n)), None).unwrap();
        assert!(s.weight > 0.2 && s.weight < 0.8, "{}", s.weight);
    }

    #[test]
    fn forward_matrices_take_the_neutral_to_white_and_colours_where_they_say() {
        // A forward matrix that is the sRGB → XYZ D50 matrix: white-balanced camera RGB
        // is then linear sRGB, whatever the colour matrix.
        let fm: M3 = [
            [0.4360747, 0.3850649, 0.1430804],
            [0.2225045, 0.7168786, 0.0606169],
            [0.0139322, 0.0971045, 0.7141733],
        ];
        let mut f = facts(Some([0.5, 1.0, 0.7]));
        for c in &mut f.calibrations {
            c.forward_matrix = Some(fm);
        }
        let s = solve_working(&f, None).unwrap();
        let (pcs, to_working) = working_pcs();
        let _ = pcs;
        // Pure camera red (white-balanced) → sRGB red → in the working space.
        let red = [s.to_working[0][0], s.to_working[1][0], s.to_working[2][0]];
        let expect = apply(&to_working, [fm[0][0], fm[1][0], fm[2][0]]);
        let norm = apply(&fm, [1.0; 3]);
        for c in 0..3 {
            let e = expect[c] * pcs_scale(norm);
            assert!(close(red[c] as f64, e, 2e-3), "{red:?} vs {expect:?}");
        }
    }

    fn pcs_scale(one: V3) -> f64 {
        // The SDK normalises forward matrices so that camera (1,1,1) gives PCS white; for
        // this matrix Y is already 1.
        1.0 / one[1]
    }

    #[test]
    fn implausible_white_balance_falls_back_to_daylight_and_says_so() {
        let s = solve_working(&facts(Some([0.05, 1.0, 0.9])), None).unwrap();
        assert!(close(s.white_xy[0], D55_XY[0], 1e-9));
        assert!(
            s.notes.iter().any(|n| n.contains("implausible")),
            "{:?}",
            s.notes
        );
        let s = solve_working(&facts(None), None).unwrap();
        assert!(
            s.notes.iter().any(|n| n.contains("no as-shot")),
            "{:?}",
            s.notes
        );
        // With the picture's mean: an auto white balance, near the light for daylight…
        let day = apply(&A7M3_D65, xy_to_xyz(D65_XY));
        let s = solve_working(&facts(None), Some(day)).unwrap();
        assert!(close(s.cct, 6504.0, 30.0), "{}", s.cct);
        assert!(
            s.notes.iter().any(|n| n.contains("auto white balance")),
            "{:?}",
            s.notes
        );
        // …and keeping some warmth of tungsten, as cameras do.
        let a = apply(&A7M3_A, xy_to_xyz([0.44757, 0.40745]));
        let s = solve_working(&facts(None), Some(a)).unwrap();
        assert!(s.cct > 3000.0 && s.cct < 3800.0, "{}", s.cct);
    }

    #[test]
    fn a_singular_matrix_is_skipped_and_reported() {
        let mut f = facts(Some([0.5, 1.0, 0.7]));
        f.calibrations[0].color_matrix = Some([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]]);
        let s = solve_working(&f, None).unwrap();
        assert!(
            s.notes.iter().any(|n| n.contains("singular")),
            "{:?}",
            s.notes
        );
        f.calibrations[1].color_matrix = None;
        assert_eq!(solve_working(&f, None), Err(ColourError::NoMatrix));
    }

    #[test]
    fn analog_balance_is_undone_before_the_matrix() {
        // Doubling the red channel in the analog stage doubles red in the neutral and in
        // AnalogBalance: the solved colour of real light is unchanged.
        let n = apply(&A7M3_D65, xy_to_xyz(D65_XY));
        let plain = solve_working(&facts(Some(n)), None).unwrap();
        let mut f = facts(Some([n[0] * 2.0, n[1], n[2]]));
        f.analog_balance = Some([2.0, 1.0, 1.0]);
        let ab = solve_working(&f, None).unwrap();
        assert!(
            close(ab.white_xy[0], plain.white_xy[0], 1e-6),
            "{:?} {:?}",
            ab.white_xy,
            plain.white_xy
        );
    }
}
