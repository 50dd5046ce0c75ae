//! Develop, in the daemon: decoded sensor data + its [`RawHeader`] → scene-linear pixels in
//! the working space, in the order the DNG specification gives.
//!
//! 1. Levels: BlackLevel (with its repeat pattern and BlackLevelDeltaH/V) subtracted,
//!    WhiteLevel scaled to 1.
//! 2. OpcodeList2 (gain maps: lens shading), on that linear sensor data.
//! 3. White balance: each channel times the gain that makes the camera's neutral equal
//!    (`colour::solve`), clipped at 1 — where the least amplified channel clips. This is
//!    the DNG SDK's highlight clip (each channel at the neutral): blown highlights come out
//!    neutral, never magenta or cyan.
//! 4. Demosaic (Malvar–He–Cutler) for mosaics; linear DNGs are already RGB.
//! 5. OpcodeList3 (gain maps, vignetting, distortion) on camera RGB in the ActiveArea frame.
//! 6. DefaultCrop, then the camera → working matrix.
//!
//! The result has the camera's neutral at clip on (1, 1, 1). BaselineExposure and the tone
//! curve are render's job (`pipeline::render`). The header may come from a crashed or
//! confused process, so it is checked against the samples before use.

use std::path::Path;

use rayon::prelude::*;

use crate::simd::Simd;

use super::checks::{check_pixels, Limits};
use super::colour::{self, Solved};
use super::decode::{RawHeader, RawLayout};
use super::demosaic;
use super::opcodes::{self, Opcode};
use crate::error::{ErrorCode, JobError};
use crate::image::RgbF32;

/// Sensor samples, wherever they are (rawler's buffer, or shared memory).
pub(crate) enum Samples<'a> {
    /// Integer samples.
    U16(&'a [u16]),
    /// Floating-point samples (float DNGs, or RGB rawler developed).
    F32(&'a [f32]),
}

impl Samples<'_> {
    fn len(&self) -> usize {
        match self {
            Samples::U16(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }
}

/// A developed RAW.
pub(crate) struct Developed {
    /// Scene-linear working space, as stored (not yet upright).
    pub image: RgbF32,
    /// The colour solution (white point, gains, matrix, fallbacks).
    pub colour: Solved,
    /// Everything develop and the decoder worked around, for the log.
    pub notes: Vec<String>,
}

/// linear sRGB (D65) → working: the fallback for a RAW without a usable colour matrix.
fn srgb_to_working() -> [[f32; 3]; 3] {
    let (_, pcs_to_working) = colour::working_pcs();
    let srgb = moxcms::ColorProfile::new_srgb().rgb_to_xyz_matrix().v;
    let mut m = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3)
                .map(|k| pcs_to_working[i][k] * srgb[k][j])
                .sum::<f64>() as f32;
        }
    }
    m
}

/// Develops what [`super::decode::decode_raw`] produced.
pub(crate) fn develop(
    path: &Path,
    header: &RawHeader,
    samples: Samples<'_>,
    limits: &Limits,
) -> Result<Developed, JobError> {
    let bad = |why: &str| {
        JobError::file(
            ErrorCode::CorruptInput,
            path,
            format!("the RAW decoder returned inconsistent data ({why})"),
        )
    };
    let (w, h) = (header.width, header.height);
    check_pixels(path, w, h, limits)?;
    let planes = match header.layout {
        RawLayout::Bayer { colors } => {
            if colors.iter().flatten().any(|&c| c > 2) {
                return Err(bad("colour index"));
            }
            1
        }
        RawLayout::Rgb => 3,
    };
    if samples.len() < w * h * planes {
        return Err(bad("fewer samples than pixels"));
    }
    if matches!(samples, Samples::F32(_)) != header.float {
        return Err(bad("sample type"));
    }
    let inside = |r: [usize; 4], (bw, bh): (usize, usize)| {
        let [x, y, rw, rh] = r;
        rw > 0
            && rh > 0
            && x.checked_add(rw).is_some_and(|e| e <= bw)
            && y.checked_add(rh).is_some_and(|e| e <= bh)
    };
    let active = header.active;
    if !inside(active, (w, h)) {
        return Err(bad("active area"));
    }
    let mut notes = header.notes.clone();
    // DefaultCrop, relative to the ActiveArea (where OpcodeList3 works).
    let crop = {
        let [cx, cy, cw, ch] = header.crop;
        let rel = [
            cx.wrapping_sub(active[0]),
            cy.wrapping_sub(active[1]),
            cw,
            ch,
        ];
        if cx >= active[0] && cy >= active[1] && inside(rel, (active[2], active[3])) {
            rel
        } else {
            notes.push(
                "the default crop lies outside the active area; the active area is used".into(),
            );
            [0, 0, active[2], active[3]]
        }
    };
    let lv = &header.levels;
    let cells = lv.repeat[0] * lv.repeat[1];
    if cells == 0 || cells > 64 || lv.black.len() != cells * planes || lv.white.is_empty() {
        return Err(bad("levels"));
    }
    if lv
        .black
        .iter()
        .chain(&lv.white)
        .chain(&lv.delta_h)
        .chain(&lv.delta_v)
        .any(|v| !v.is_finite())
    {
        return Err(bad("levels"));
    }
    let norm = Normaliser::new(header, planes);
    let estimate = (!colour::has_white(&header.colour))
        .then(|| grey_world(&norm, &samples, header, planes))
        .flatten();
    tracing::debug!("{}: picture mean camera RGB {estimate:?}", path.display());
    let colour = match colour::solve_working(&header.colour, estimate) {
        Ok(s) => s,
        Err(e) => {
            notes.push(format!(
                "{e}: camera RGB is taken as linear sRGB, so colours will be off"
            ));
            Solved {
                gains: [1.0; 3],
                to_working: srgb_to_working(),
                white_xy: colour::D65_XY,
                cct: 6504.0,
                weight: 1.0,
                notes: Vec::new(),
            }
        }
    };
    notes.extend(colour.notes.iter().cloned());
    notes.extend(header.opcodes.not_applied());
    let m = colour.to_working;
    let finish = move |p: [f32; 3]| -> [f32; 3] {
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2] * p[2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2] * p[2],
            m[2][0] * p[0] + m[2][1] * p[1] + m[2][2] * p[2],
        ]
    };
    let list2 = &header.opcodes.list2;
    let list3 = &header.opcodes.list3;
    let image = match header.layout {
        RawLayout::Bayer { colors } => {
            // Pass 1: the whole sensor, normalised, white-balanced, clipped; gain maps
            // fused in, other OpcodeList2 corrections (rare) in passes of their own.
            let mut plane = vec![0f32; w * h];
            let fused = opcodes::only_gain_maps(list2);
            let t = std::time::Instant::now();
            let simd = Simd::Best.available();
            plane.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
                let mut gains = RowGains::new(if fused { list2 } else { &[] }, active);
                let g = gains.row(y);
                let wb = [0, 1].map(|c| {
                    if fused {
                        colour.gains[colors[y % 2][c]]
                    } else {
                        1.0
                    }
                });
                if g.is_none() && norm.row_in_pairs(&samples, y, wb, row, simd) {
                    return;
                }
                norm.row(&samples, y, 1, |x, _, v| {
                    let gain = g.as_ref().map_or(1.0, |g| g.at(x));
                    row[x] = (v * gain * wb[x & 1]).min(1.0);
                });
            });
            tracing::debug!("levels {:?}", t.elapsed());
            if !fused {
                let frame = opcodes::Frame {
                    stride: w,
                    planes: 1,
                    x: active[0],
                    y: active[1],
                    w: active[2],
                    h: active[3],
                };
                opcodes::apply_values(list2, &mut plane, frame, !header.float);
                plane.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
                    let wb = [0, 1].map(|c| colour.gains[colors[y % 2][c]]);
                    for (x, v) in row.iter_mut().enumerate() {
                        *v = (*v * wb[x & 1]).min(1.0);
                    }
                });
            }
            let rect = |r: [usize; 4]| (active[0] + r[0], active[1] + r[1], r[2], r[3]);
            if list3.is_empty() {
                demosaic::demosaic(&plane, w, h, colors, rect(crop), finish)
            } else {
                let mut cam = demosaic::demosaic(
                    &plane,
                    w,
                    h,
                    colors,
                    rect([0, 0, active[2], active[3]]),
                    |p| p,
                );
                drop(plane);
                opcodes::apply_rgb(list3, &mut cam.data, cam.width, cam.height, [1.0; 3]);
                crop_and_convert(&cam, crop, finish)
            }
        }
        RawLayout::Rgb => {
            // The active area, normalised: camera RGB; then OpcodeList2, white balance
            // and the clip.
            let (aw, ah) = (active[2], active[3]);
            let mut cam = vec![0f32; aw * ah * 3];
            cam.par_chunks_mut(aw * 3)
                .enumerate()
                .for_each(|(ay, row)| {
                    norm.row(&samples, active[1] + ay, 3, |x, p, v| {
                        if x >= active[0] && x < active[0] + aw {
                            row[(x - active[0]) * 3 + p] = v.min(1.0);
                        }
                    });
                });
            let frame = opcodes::Frame {
                stride: aw,
                planes: 3,
                x: 0,
                y: 0,
                w: aw,
                h: ah,
            };
            opcodes::apply_values(list2, &mut cam, frame, !header.float);
            let g = colour.gains;
            cam.par_chunks_mut(3 * 4096).for_each(|c| {
                for p in c.chunks_exact_mut(3) {
                    for k in 0..3 {
                        p[k] = (p[k] * g[k]).min(1.0);
                    }
                }
            });
            let mut cam = RgbF32::new(aw, ah, cam);
            opcodes::apply_rgb(list3, &mut cam.data, aw, ah, [1.0; 3]);
            crop_and_convert(&cam, crop, finish)
        }
    };
    Ok(Developed {
        image,
        colour,
        notes,
    })
}

/// The picture's mean camera RGB over the crop (every 3rd row: both mosaic row kinds), leaving out samples near
/// clipping and in deep shadow, for an auto white balance when the file has none.
fn grey_world(
    norm: &Normaliser<'_>,
    samples: &Samples<'_>,
    header: &RawHeader,
    planes: usize,
) -> Option<[f64; 3]> {
    let [cx, cy, cw, ch] = header.crop;
    let sums = (cy..cy + ch)
        .into_par_iter()
        .step_by(3)
        .map(|y| {
            let mut acc = [(0.0f64, 0usize); 3];
            norm.row(samples, y, planes, |x, p, v| {
                if x < cx || x >= cx + cw || !(0.01..0.9).contains(&v) {
                    return;
                }
                let c = match header.layout {
                    RawLayout::Bayer { colors } => colors[y % 2][x % 2],
                    RawLayout::Rgb => p,
                };
                acc[c].0 += v as f64;
                acc[c].1 += 1;
            });
            acc
        })
        .reduce(
            || [(0.0, 0); 3],
            |a, b| [0, 1, 2].map(|c| (a[c].0 + b[c].0, a[c].1 + b[c].1)),
        );
    if sums.iter().any(|s| s.1 < 100) {
        return None;
    }
    Some(sums.map(|s| s.0 / s.1 as f64))
}

/// `crop` of `cam` through `finish`.
fn crop_and_convert(
    cam: &RgbF32,
    crop: [usize; 4],
    finish: impl Fn([f32; 3]) -> [f32; 3] + Sync,
) -> RgbF32 {
    let [cx, cy, cw, ch] = crop;
    // Every pixel is written below.
    let mut out = crate::memory::reusable_f32(cw * ch * 3);
    out.par_chunks_mut(cw * 3)
        .enumerate()
        .for_each(|(oy, orow)| {
            let src = &cam.data[((cy + oy) * cam.width + cx) * 3..][..cw * 3];
            for (o, s) in orow.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                let p = [s[0], s[1], s[2]].map(|v| v.clamp(0.0, 1.0));
                o.copy_from_slice(&finish(p));
            }
        });
    RgbF32::new(cw, ch, out)
}

/// Black and white levels, resolved per pattern cell and plane.
struct Normaliser<'a> {
    header: &'a RawHeader,
    /// Per pattern cell and plane: (black, 1 / (white − black)).
    cells: Vec<(f32, f32)>,
}

impl<'a> Normaliser<'a> {
    fn new(header: &'a RawHeader, planes: usize) -> Normaliser<'a> {
        let lv = &header.levels;
        let white = |cell: usize, p: usize| -> f32 {
            match lv.white.len() {
                4 if planes == 1 => lv.white[cell % 4],
                n if n >= planes => lv.white[p],
                _ => lv.white[0],
            }
        };
        let cells = (0..lv.repeat[0] * lv.repeat[1])
            .flat_map(|cell| {
                (0..planes).map(move |p| {
                    let b = lv.black[cell * planes + p];
                    (b, 1.0 / (white(cell, p) - b).max(1e-6))
                })
            })
            .collect();
        Normaliser { header, cells }
    }

    /// Where row `y` starts in the black-level pattern (its row, and the column of its
    /// first sample) and the row's own black delta.
    fn row_phase(&self, y: usize) -> (usize, usize, f32) {
        let lv = &self.header.levels;
        let [ox, oy] = lv.origin;
        let cols = lv.repeat[1];
        let ry = (y as isize - oy as isize).rem_euclid(lv.repeat[0] as isize) as usize;
        let dv = y
            .checked_sub(oy)
            .and_then(|i| lv.delta_v.get(i))
            .copied()
            .unwrap_or(0.0);
        (ry, (cols - ox % cols) % cols, dv)
    }

    /// [`Self::row`] of a Bayer row into `out`, times `wb` by column parity and clipped at
    /// 1, for the usual sensor: `u16` samples, black levels repeating every one or two
    /// columns, no per-column deltas. Two (black, scale) pairs then alternate along the
    /// row and the loop vectorises (the general loop is scalar: a cell lookup per sample).
    /// Same arithmetic, so the same values. Returns false, doing nothing, otherwise.
    fn row_in_pairs(
        &self,
        s: &Samples<'_>,
        y: usize,
        wb: [f32; 2],
        out: &mut [f32],
        simd: Simd,
    ) -> bool {
        let lv = &self.header.levels;
        let (Samples::U16(v), true, 1 | 2) = (s, lv.delta_h.is_empty(), lv.repeat[1]) else {
            return false;
        };
        let w = self.header.width;
        let cols = lv.repeat[1];
        let (ry, rx0, dv) = self.row_phase(y);
        // Per lane of a 16-sample chunk (even, so parities line up): black, scale, gain.
        let cell = |x: usize| self.cells[ry * cols + (rx0 + x) % cols];
        let black: [f32; 16] = std::array::from_fn(|i| cell(i).0);
        let scale: [f32; 16] = std::array::from_fn(|i| cell(i).1);
        let gain: [f32; 16] = std::array::from_fn(|i| wb[i & 1]);
        let src = &v[y * w..][..w];
        #[inline(always)]
        fn pairs(
            src: &[u16],
            out: &mut [f32],
            black: &[f32; 16],
            scale: &[f32; 16],
            gain: &[f32; 16],
            dv: f32,
        ) {
            let one = |s: u16, i: usize| {
                // As `row`'s (a zero delta and a unit gain map change no bit).
                (((s as f32 - black[i]) - dv).max(0.0) * scale[i] * gain[i]).min(1.0)
            };
            let mut o = out.chunks_exact_mut(16);
            let mut s = src.chunks_exact(16);
            for (o, s) in (&mut o).zip(&mut s) {
                for i in 0..16 {
                    o[i] = one(s[i], i);
                }
            }
            for (i, (o, &s)) in o.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
                *o = one(s, i);
            }
        }
        let out = &mut out[..w];
        let (black, scale, gain) = (&black, &scale, &gain);
        crate::simd::dispatch!(simd, pairs(src: &[u16], out: &mut [f32], black: &[f32; 16], scale: &[f32; 16], gain: &[f32; 16], dv: f32));
        true
    }

    /// Calls `f(x, plane, value)` for every sample of row `y`, value normalised to 0..1
    /// of the white level (negative values raised to 0).
    #[inline(always)]
    fn row(&self, s: &Samples<'_>, y: usize, planes: usize, f: impl FnMut(usize, usize, f32)) {
        // The sample type decided once per row, not per sample.
        match s {
            Samples::U16(v) => self.row_of(|i| v[i] as f32, y, planes, f),
            Samples::F32(v) => self.row_of(|i| v[i], y, planes, f),
        }
    }

    #[inline(always)]
    fn row_of(
        &self,
        at: impl Fn(usize) -> f32,
        y: usize,
        planes: usize,
        mut f: impl FnMut(usize, usize, f32),
    ) {
        let h = self.header;
        let lv = &h.levels;
        let ox = lv.origin[0];
        let cols = lv.repeat[1];
        let (ry, mut rx, dv) = self.row_phase(y);
        let base = y * h.width * planes;
        // The usual case, one black per 2×2 position and no deltas, stays branch-light.
        for x in 0..h.width {
            let dh = if lv.delta_h.is_empty() {
                0.0
            } else {
                x.checked_sub(ox)
                    .and_then(|i| lv.delta_h.get(i))
                    .copied()
                    .unwrap_or(0.0)
            };
            let cell = (ry * cols + rx) * planes;
            for p in 0..planes {
                let (black, scale) = self.cells[cell + p];
                let v = (at(base + x * planes + p) - black - dh - dv).max(0.0) * scale;
                f(x, p, v);
            }
            rx += 1;
            if rx == cols {
                rx = 0;
            }
        }
    }
}

/// OpcodeList2 gain maps evaluated for one row at a time (the ActiveArea frame).
struct RowGains<'a> {
    maps: Vec<&'a opcodes::GainMap>,
    active: [usize; 4],
    scratch: Vec<(usize, f32)>,
}

/// One row's gains over the full sample width.
struct Row {
    gains: Vec<f32>,
    x0: usize,
}

impl Row {
    #[inline(always)]
    fn at(&self, x: usize) -> f32 {
        x.checked_sub(self.x0)
            .and_then(|i| self.gains.get(i))
            .copied()
            .unwrap_or(1.0)
    }
}

impl<'a> RowGains<'a> {
    fn new(list: &'a [Opcode], active: [usize; 4]) -> RowGains<'a> {
        let maps = list
            .iter()
            .filter_map(|op| match op {
                Opcode::GainMap(g) => Some(g),
                _ => None,
            })
            .collect();
        RowGains {
            maps,
            active,
            scratch: Vec::new(),
        }
    }

    /// Gains of sample row `y` on plane `p`, over the active width (None: all 1).
    fn row_plane(&mut self, y: usize, p: usize) -> Option<Vec<f32>> {
        let [ax, ay, aw, ah] = self.active;
        let _ = ax;
        if self.maps.is_empty() || y < ay || y >= ay + ah {
            return None;
        }
        let mut g = vec![1f32; aw];
        for map in &self.maps {
            map.row_gains(y - ay, p, aw, ah, &mut self.scratch);
            for &(x, v) in &self.scratch {
                g[x] *= v;
            }
        }
        Some(g)
    }

    /// Gains of mosaic row `y` (one plane).
    fn row(&mut self, y: usize) -> Option<Row> {
        self.row_plane(y, 0).map(|gains| Row {
            gains,
            x0: self.active[0],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::colour::{Calibration, ColourFacts};
    use crate::ingest::decode::Levels;
    use crate::ingest::opcodes::{Area, OpcodeLists};

    /// Sony ILCE-7M3's D65 matrix (XYZ → camera), as rawler's camera data has it.
    const A7M3: [[f64; 3]; 3] = [
        [0.7374, -0.2389, -0.0551],
        [-0.5435, 1.3162, 0.2519],
        [-0.1006, 0.1795, 0.6552],
    ];

    fn header(w: usize, h: usize, layout: RawLayout, neutral: [f64; 3]) -> RawHeader {
        let planes = if matches!(layout, RawLayout::Rgb) {
            3
        } else {
            1
        };
        RawHeader {
            width: w,
            height: h,
            orientation: 1,
            layout,
            float: false,
            levels: Levels {
                black: vec![256.0; planes],
                repeat: [1, 1],
                origin: [0, 0],
                delta_h: Vec::new(),
                delta_v: Vec::new(),
                white: vec![4095.0],
            },
            active: [0, 0, w, h],
            crop: [0, 0, w, h],
            colour: ColourFacts {
                origin: "test".into(),
                calibrations: vec![Calibration {
                    illuminant: 21,
                    color_matrix: Some(A7M3),
                    ..Default::default()
                }],
                as_shot_neutral: Some(neutral),
                ..Default::default()
            },
            baseline_exposure: 0.0,
            opcodes: OpcodeLists::default(),
            notes: Vec::new(),
        }
    }

    const RGGB: [[usize; 2]; 2] = [[0, 1], [1, 2]];
    /// That camera's neutral under D65 (its matrix times D65's XYZ, largest entry 1).
    const NEUTRAL: [f64; 3] = [0.3743, 1.0, 0.7425];

    fn develop_u16(h: &RawHeader, s: &[u16]) -> Developed {
        develop(
            Path::new("test.dng"),
            h,
            Samples::U16(s),
            &Limits::default(),
        )
        .unwrap()
    }

    /// The vectorised levels loop (`row_in_pairs`) gives the general loop's values to the
    /// bit, with every kernel: on a real photo mosaicked into 14-bit samples (with a
    /// black level under which some samples fall, and highlights past white), for a 2×2
    /// black pattern at an odd origin, per-row deltas, one or two repeating columns, and a
    /// width that leaves a remainder; and it declines what it does not cover.
    #[test]
    fn the_paired_levels_loop_matches_the_general_one() {
        let photo = crate::image::test_photo().into_rgb16();
        let (w, hh) = (photo.width() as usize - 3, 64);
        let mosaic: Vec<u16> = (0..w * hh)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let p = photo.get_pixel(x as u32, (y * (photo.height() as usize - 1) / hh) as u32);
                let c = RGGB[y % 2][x % 2];
                // 14-bit, black ~512 with noise around it (the darkest fall under it), a little
                // past white.
                (p[c] as u32 * 16900 / 65535) as u16 + 400 + (i * 7919 % 64) as u16
            })
            .collect();
        for (repeat, black, delta_v) in [
            ([2, 2], vec![510.0, 512.0, 509.5, 514.0], vec![1.5; hh]),
            ([2, 1], vec![511.0, 513.0], Vec::new()),
            ([1, 2], vec![500.0, 520.0], vec![-2.0, 0.5, 3.0]),
        ] {
            let mut h = header(w, hh, RawLayout::Bayer { colors: RGGB }, NEUTRAL);
            h.levels = Levels {
                black,
                repeat,
                origin: [1, 3],
                delta_h: Vec::new(),
                delta_v,
                white: vec![16383.0],
            };
            let norm = Normaliser::new(&h, 1);
            let samples = Samples::U16(&mosaic);
            let (mut black_seen, mut white_seen) = (false, false);
            for simd in [Simd::Avx512, Simd::Avx2, Simd::Portable] {
                for y in 0..hh {
                    let wb = [1.9, 0.8];
                    let mut want = vec![0f32; w];
                    norm.row(&samples, y, 1, |x, _, v| {
                        want[x] = (v * 1.0 * wb[x & 1]).min(1.0);
                    });
                    let mut got = vec![f32::NAN; w];
                    assert!(norm.row_in_pairs(&samples, y, wb, &mut got, simd));
                    let same = want
                        .iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{repeat:?} {simd:?} row {y}");
                    black_seen |= want.contains(&0.0);
                    white_seen |= want.contains(&1.0);
                }
            }
            assert!(
                black_seen && white_seen,
                "the data reach both clips: {black_seen} {white_seen}"
            );
            h.levels.delta_h = vec![1.0; w];
            let mut out = vec![0f32; w];
            assert!(!Normaliser::new(&h, 1).row_in_pairs(
                &samples,
                0,
                [1.0; 2],
                &mut out,
                Simd::Best
            ));
        }
    }

    fn neutral_spread(p: &[f32]) -> f32 {
        p[0].max(p[1]).max(p[2]) - p[0].min(p[1]).min(p[2])
    }

    /// Blown highlights: where every photosite is at the white level, and where only the
    /// least amplified channel (green) has clipped while red and blue still hold detail that
    /// white balance would push past green's clip, the result is neutral white — never the
    /// magenta a per-channel clip after white balance gives.
    #[test]
    fn blown_and_green_clipped_highlights_come_out_neutral_white() {
        let (w, hh) = (32, 32);
        let mut s = vec![0u16; w * hh];
        for y in 0..hh {
            for x in 0..w {
                let c = RGGB[y % 2][x % 2];
                let raw = if x < 16 {
                    4095.0 // everything clipped
                } else {
                    // green clipped; red and blue at 95 % of their range
                    if c == 1 {
                        4095.0
                    } else {
                        256.0 + 0.95 * (4095.0 - 256.0)
                    }
                };
                s[y * w + x] = raw as u16;
            }
        }
        let d = develop_u16(
            &header(w, hh, RawLayout::Bayer { colors: RGGB }, NEUTRAL),
            &s,
        );
        for y in 4..28 {
            for x in [6, 10, 22, 26] {
                let p = &d.image.data[(y * w + x) * 3..][..3];
                assert!(neutral_spread(p) < 1e-4, "at {x},{y}: {p:?}");
                assert!((p[1] - 1.0).abs() < 1e-4, "at {x},{y}: {p:?}");
            }
        }
    }

    /// Below the clip, the camera's neutral becomes working-space grey at every level, and
    /// the black level (with a per-column delta) is taken off first.
    #[test]
    fn a_grey_ramp_stays_grey_and_linear_with_black_pattern_and_deltas() {
        let (w, hh) = (64, 8);
        let mut h = header(w, hh, RawLayout::Bayer { colors: RGGB }, NEUTRAL);
        h.levels.delta_h = (0..w).map(|x| (x % 3) as f32).collect();
        let s: Vec<u16> = (0..w * hh)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let level = 0.1 + 0.8 * x as f64 / w as f64;
                let v = level * NEUTRAL[RGGB[y % 2][x % 2]];
                (256.0 + (x % 3) as f64 + v * (4095.0 - 256.0)).round() as u16
            })
            .collect();
        let d = develop_u16(&h, &s);
        let mut last = 0.0;
        for x in (4..60).step_by(2) {
            let p = &d.image.data[(4 * w + x) * 3..][..3];
            assert!(neutral_spread(p) < 2e-3, "at {x}: {p:?}");
            let level = 0.1 + 0.8 * x as f32 / w as f32;
            assert!((p[1] - level).abs() < 3e-3, "at {x}: {p:?} vs {level}");
            assert!(p[1] > last);
            last = p[1];
        }
    }

    /// A linear DNG (three samples per pixel) as phones and Adobe's converter write them:
    /// an 8-bit encoding that OpcodeList2's MapPolynomial turns back into linear values,
    /// per plane, before white balance; DefaultCrop applied.
    #[test]
    fn a_linear_dng_is_linearised_by_its_map_polynomial_and_cropped() {
        let (w, hh) = (40, 30);
        let mut h = header(w, hh, RawLayout::Rgb, NEUTRAL);
        h.levels.black = vec![0.0; 3];
        h.levels.white = vec![255.0; 3];
        h.crop = [4, 2, 32, 24];
        // Stored: sqrt of linear; the polynomial squares it back.
        h.opcodes.list2 = (0..3)
            .map(|p| Opcode::MapPolynomial {
                area: Area {
                    rect: [0, 0, 0, 0],
                    plane: p,
                    planes: 1,
                    pitch: [1, 1],
                },
                coefficients: vec![0.0, 0.0, 1.0],
            })
            .collect();
        let grey = 0.3;
        let s: Vec<u16> = (0..w * hh * 3)
            .map(|i| ((grey * NEUTRAL[i % 3]).sqrt() * 255.0).round() as u16)
            .collect();
        let d = develop_u16(&h, &s);
        assert_eq!((d.image.width, d.image.height), (32, 24));
        for p in d.image.data.chunks_exact(3) {
            assert!(
                neutral_spread(p) < 0.01 && (p[1] - grey as f32).abs() < 0.01,
                "{p:?}"
            );
        }
    }

    /// Without any white balance in the file, develop measures the picture (grey world)
    /// and says so.
    #[test]
    fn a_raw_without_white_balance_gets_an_auto_white_balance_and_a_note() {
        let (w, hh) = (64, 64);
        let mut h = header(w, hh, RawLayout::Bayer { colors: RGGB }, NEUTRAL);
        h.colour.as_shot_neutral = None;
        let s: Vec<u16> = (0..w * hh)
            .map(|i| {
                let c = RGGB[(i / w) % 2][(i % w) % 2];
                (256.0 + 0.4 * NEUTRAL[c] * (4095.0 - 256.0)) as u16
            })
            .collect();
        let d = develop_u16(&h, &s);
        assert!(
            d.notes.iter().any(|n| n.contains("auto white balance")),
            "{:?}",
            d.notes
        );
        // A grey scene under daylight is found grey.
        let p = &d.image.data[(32 * w + 32) * 3..][..3];
        assert!(neutral_spread(p) < 0.01, "{p:?}");
    }
}
