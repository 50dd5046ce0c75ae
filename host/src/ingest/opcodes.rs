//! DNG opcodes (DNG 1.7, chapter 7): corrections a camera or converter asks every reader to
//! apply — lens shading gain maps in phone DNGs, vignetting, distortion and lateral
//! chromatic aberration.
//!
//! rawler passes the three opcode lists through as bytes without applying them, so they are
//! parsed here (big-endian, whatever the TIFF's byte order) and applied by develop where the
//! specification puts them: OpcodeList2 on the linearised sensor data (0..1 of the white
//! level, in the ActiveArea frame), OpcodeList3 on the demosaiced camera RGB before the
//! default crop. Applied: GainMap, MapPolynomial, MapTable, DeltaPerRow/Column and
//! ScalePerRow/Column (lists 2 and 3), FixVignetteRadial and WarpRectilinear (list 3). Every other opcode is named in the log as not applied; OpcodeList1 (stored
//! values, before linearisation) is named too — sensor defect maps there are rare outside
//! development files. Geometry follows Adobe's DNG SDK (`dng_lens_correction.cpp`,
//! `dng_gain_map.cpp`): centres and radii from the exclusive bounds of the image, the radius
//! normalised by the distance from the centre to the farthest corner and clamped at 1.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One opcode, as far as develop needs it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Opcode {
    /// Multiplies an area by a smoothly interpolated map of gains (lens shading).
    GainMap(GainMap),
    /// Brightens by a radial polynomial in r² (vignetting).
    FixVignetteRadial {
        /// k0..k4: gain = 1 + k0 r² + k1 r⁴ + k2 r⁶ + k3 r⁸ + k4 r¹⁰.
        k: [f64; 5],
        /// Optical centre, fractions of the width and height.
        centre: [f64; 2],
    },
    /// Radial and tangential distortion, one coefficient set per plane (or one for all).
    WarpRectilinear {
        /// Per plane: kr0..kr3 (radial, in r²), kt0, kt1 (tangential).
        planes: Vec<[f64; 6]>,
        /// Optical centre, fractions of the width and height.
        centre: [f64; 2],
    },
    /// A polynomial of each value: Σ cᵢ vⁱ (sensor linearisation, e.g. 8-bit linear DNGs).
    MapPolynomial {
        /// Where it applies.
        area: Area,
        /// c0, c1, … (at most degree 8).
        coefficients: Vec<f64>,
    },
    /// A lookup table of each value (indexed by the value × 65535, as the SDK does).
    MapTable {
        /// Where it applies.
        area: Area,
        /// The table (16-bit entries; past its end, its last entry).
        table: Vec<u16>,
    },
    /// Adds a value per row or per column (`per_column`), or multiplies (`scale`).
    PerLine {
        /// Where it applies.
        area: Area,
        /// Per column instead of per row.
        per_column: bool,
        /// Multiply instead of add.
        scale: bool,
        /// One value per affected row (or column).
        values: Vec<f32>,
    },
    /// Anything else: not applied, named in the log.
    Other {
        /// The opcode id.
        id: u32,
        /// Whether the writer marked it optional.
        optional: bool,
    },
}

/// The area an opcode works on (DNG 1.7 §7 "area spec").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Area {
    /// Top, left, bottom, right (exclusive), in the image's frame; all 0 = everything.
    pub rect: [u32; 4],
    /// First plane.
    pub plane: u32,
    /// Planes affected.
    pub planes: u32,
    /// Row and column pitch.
    pub pitch: [u32; 2],
}

impl Area {
    fn read(p: &mut Be<'_>) -> Result<Area, String> {
        let rect = [p.u32()?, p.u32()?, p.u32()?, p.u32()?];
        let (plane, planes) = (p.u32()?, p.u32()?);
        let pitch = [p.u32()?, p.u32()?];
        if planes == 0 || pitch.contains(&0) {
            return Err("an opcode area has no planes or a zero pitch".into());
        }
        Ok(Area {
            rect,
            plane,
            planes,
            pitch,
        })
    }

    /// (top, left, bottom, right) in a `w`×`h` image, clamped.
    fn bounds(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let [t, l, b, r] = self.rect.map(|v| v as usize);
        if t == 0 && l == 0 && b == 0 && r == 0 {
            (0, 0, h, w)
        } else {
            (t.min(h), l.min(w), b.min(h), r.min(w))
        }
    }

    /// Calls `f(row, column, value)` for every sample the area covers (row and column
    /// relative to the area's corner), rows in parallel.
    fn for_each(&self, data: &mut [f32], frame: Frame, f: impl Fn(usize, usize, &mut f32) + Sync) {
        let (t, l, b, r) = self.bounds(frame.w, frame.h);
        let (p0, p1) = (
            self.plane as usize,
            ((self.plane + self.planes) as usize).min(frame.planes),
        );
        let (rp, cp) = (self.pitch[0] as usize, self.pitch[1] as usize);
        let stride = frame.stride * frame.planes;
        data.par_chunks_mut(stride)
            .enumerate()
            .for_each(|(sy, row)| {
                let Some(y) = sy.checked_sub(frame.y) else {
                    return;
                };
                if y < t || y >= b || (y - t) % rp != 0 {
                    return;
                }
                let mut x = l;
                while x < r {
                    for p in p0..p1 {
                        f(y - t, x - l, &mut row[(frame.x + x) * frame.planes + p]);
                    }
                    x += cp;
                }
            });
    }
}

/// Where an opcode list's image lies in a buffer: the ActiveArea inside the sample grid.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Samples per row of the buffer (pixels).
    pub stride: usize,
    /// Interleaved planes per pixel.
    pub planes: usize,
    /// The frame's corner in the buffer.
    pub x: usize,
    /// The frame's corner in the buffer.
    pub y: usize,
    /// The frame's size.
    pub w: usize,
    /// The frame's size.
    pub h: usize,
}

/// A GainMap's parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GainMap {
    /// Area: top, left, bottom, right (exclusive), in the image's frame; all 0 = everything.
    pub area: [u32; 4],
    /// First plane and number of planes.
    pub plane: u32,
    /// Planes affected.
    pub planes: u32,
    /// Row and column pitch within the area (2 for one Bayer colour).
    pub pitch: [u32; 2],
    /// Map points vertically and horizontally.
    pub points: [u32; 2],
    /// Map spacing, fractions of the image height and width.
    pub spacing: [f64; 2],
    /// Map origin, fractions of the image height and width.
    pub origin: [f64; 2],
    /// Planes in the map.
    pub map_planes: u32,
    /// Gains, [v][h][plane].
    pub gains: Vec<f32>,
}

/// The opcode lists of a DNG.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct OpcodeLists {
    /// OpcodeList1: on stored values (not applied; named in the log).
    pub list1: Vec<Opcode>,
    /// OpcodeList2: on linearised sensor data.
    pub list2: Vec<Opcode>,
    /// OpcodeList3: on demosaiced camera RGB.
    pub list3: Vec<Opcode>,
}

impl OpcodeLists {
    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.list1.is_empty() && self.list2.is_empty() && self.list3.is_empty()
    }

    /// The opcodes develop does not apply, as log lines.
    pub fn not_applied(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (n, list) in [(1, &self.list1), (2, &self.list2), (3, &self.list3)] {
            for op in list {
                let skipped = match op {
                    Opcode::Other { id, optional } => Some((*id, *optional)),
                    // Geometry and vignetting belong to the demosaiced image only.
                    Opcode::FixVignetteRadial { .. } if n != 3 => Some((3, false)),
                    Opcode::WarpRectilinear { .. } if n != 3 => Some((1, false)),
                    Opcode::GainMap(_) if n == 1 => Some((9, false)),
                    Opcode::MapPolynomial { .. } if n == 1 => Some((8, false)),
                    Opcode::MapTable { .. } if n == 1 => Some((7, false)),
                    Opcode::PerLine { .. } if n == 1 => Some((10, false)),
                    _ => None,
                };
                if let Some((id, optional)) = skipped {
                    out.push(format!(
                        "DNG opcode {} (id {id}{}) in OpcodeList{n} is not applied",
                        name(id),
                        if optional { ", optional" } else { "" }
                    ));
                }
            }
        }
        out
    }
}

/// The specification's name of an opcode id.
pub fn name(id: u32) -> &'static str {
    match id {
        1 => "WarpRectilinear",
        2 => "WarpFisheye",
        3 => "FixVignetteRadial",
        4 => "FixBadPixelsConstant",
        5 => "FixBadPixelsList",
        6 => "TrimBounds",
        7 => "MapTable",
        8 => "MapPolynomial",
        9 => "GainMap",
        10 => "DeltaPerRow",
        11 => "DeltaPerColumn",
        12 => "ScalePerRow",
        13 => "ScalePerColumn",
        14 => "WarpRectilinear2",
        _ => "unknown",
    }
}

/// Big-endian reader over an opcode list.
struct Be<'a> {
    b: &'a [u8],
    at: usize,
}

impl Be<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format!("the opcode list ends early (at byte {})", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn f64(&mut self) -> Result<f64, String> {
        let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
        if v.is_finite() {
            Ok(v)
        } else {
            Err("an opcode parameter is not a finite number".into())
        }
    }
    fn f32(&mut self) -> Result<f32, String> {
        let v = f32::from_be_bytes(self.take(4)?.try_into().unwrap());
        if v.is_finite() {
            Ok(v)
        } else {
            Err("a gain is not a finite number".into())
        }
    }
}

/// Parses one opcode list (the bytes of an OpcodeList tag).
pub fn parse(bytes: &[u8]) -> Result<Vec<Opcode>, String> {
    let mut r = Be { b: bytes, at: 0 };
    let count = r.u32()?;
    if count as usize > bytes.len() / 16 {
        return Err(format!(
            "the opcode list claims {count} opcodes in {} bytes",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = r.u32()?;
        let _version = r.u32()?;
        let flags = r.u32()?;
        let len = r.u32()? as usize;
        let params = r.take(len)?;
        let mut p = Be { b: params, at: 0 };
        let op = match id {
            1 => {
                let n = p.u32()? as usize;
                if n == 0 || n > 4 || len != 4 + 48 * n + 16 {
                    return Err(format!("WarpRectilinear has {len} bytes for {n} planes"));
                }
                let mut planes = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut k = [0.0; 6];
                    for v in &mut k {
                        *v = p.f64()?;
                    }
                    planes.push(k);
                }
                Opcode::WarpRectilinear {
                    planes,
                    centre: [p.f64()?, p.f64()?],
                }
            }
            3 => {
                if len != 56 {
                    return Err(format!("FixVignetteRadial has {len} bytes, not 56"));
                }
                let mut k = [0.0; 5];
                for v in &mut k {
                    *v = p.f64()?;
                }
                Opcode::FixVignetteRadial {
                    k,
                    centre: [p.f64()?, p.f64()?],
                }
            }
            9 => {
                let area = [p.u32()?, p.u32()?, p.u32()?, p.u32()?];
                let (plane, planes) = (p.u32()?, p.u32()?);
                let pitch = [p.u32()?, p.u32()?];
                let points = [p.u32()?, p.u32()?];
                let spacing = [p.f64()?, p.f64()?];
                let origin = [p.f64()?, p.f64()?];
                let map_planes = p.u32()?;
                let n = (points[0] as u64) * (points[1] as u64) * (map_planes as u64);
                if n == 0 || len as u64 != 76 + 4 * n || planes == 0 || pitch.contains(&0) {
                    return Err(format!(
                        "GainMap of {}×{}×{map_planes} gains has {len} bytes",
                        points[0], points[1]
                    ));
                }
                let gains = (0..n).map(|_| p.f32()).collect::<Result<Vec<_>, _>>()?;
                Opcode::GainMap(GainMap {
                    area,
                    plane,
                    planes,
                    pitch,
                    points,
                    spacing,
                    origin,
                    map_planes,
                    gains,
                })
            }
            7 => {
                let area = Area::read(&mut p)?;
                let n = p.u32()? as usize;
                if n == 0 || n > 65536 || len != 36 + 2 * n {
                    return Err(format!("MapTable of {n} entries has {len} bytes"));
                }
                let table = (0..n)
                    .map(|_| p.take(2).map(|b| u16::from_be_bytes([b[0], b[1]])))
                    .collect::<Result<Vec<_>, _>>()?;
                Opcode::MapTable { area, table }
            }
            8 => {
                let area = Area::read(&mut p)?;
                let degree = p.u32()? as usize;
                if degree > 8 || len != 36 + 8 * (degree + 1) {
                    return Err(format!("MapPolynomial of degree {degree} has {len} bytes"));
                }
                let coefficients = (0..=degree)
                    .map(|_| p.f64())
                    .collect::<Result<Vec<_>, _>>()?;
                Opcode::MapPolynomial { area, coefficients }
            }
            10..=13 => {
                let area = Area::read(&mut p)?;
                let n = p.u32()? as usize;
                if len != 36 + 4 * n {
                    return Err(format!("{} of {n} values has {len} bytes", name(id)));
                }
                let values = (0..n).map(|_| p.f32()).collect::<Result<Vec<_>, _>>()?;
                Opcode::PerLine {
                    area,
                    per_column: id == 11 || id == 13,
                    scale: id >= 12,
                    values,
                }
            }
            _ => Opcode::Other {
                id,
                optional: flags & 1 != 0,
            },
        };
        out.push(op);
    }
    Ok(out)
}

impl GainMap {
    /// The gain of map plane `mp` at a pixel centre given as fractions (v, h) of the image.
    fn gain(&self, mp: usize, v: f64, h: f64) -> f32 {
        let axis = |rel: f64, k: usize| -> (usize, usize, f64) {
            let n = self.points[k] as usize;
            let (spacing, origin) = if n == 1 {
                (1.0, 0.0)
            } else {
                (self.spacing[k], self.origin[k])
            };
            let f = if spacing > 0.0 {
                (rel - origin) / spacing
            } else {
                0.0
            };
            if f <= 0.0 {
                (0, 0, 0.0)
            } else if f >= (n - 1) as f64 {
                (n - 1, n - 1, 0.0)
            } else {
                let i = f.floor() as usize;
                (i, i + 1, f - i as f64)
            }
        };
        let (i0, i1, fv) = axis(v, 0);
        let (j0, j1, fh) = axis(h, 1);
        let (ph, np) = (self.points[1] as usize, self.map_planes as usize);
        let at = |i: usize, j: usize| self.gains[(i * ph + j) * np + mp] as f64;
        let top = at(i0, j0) + (at(i0, j1) - at(i0, j0)) * fh;
        let bot = at(i1, j0) + (at(i1, j1) - at(i1, j0)) * fh;
        (top + (bot - top) * fv) as f32
    }

    /// The area in an image of `w`×`h`, clamped, as (top, left, bottom, right).
    fn bounds(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let [t, l, b, r] = self.area.map(|v| v as usize);
        if t == 0 && l == 0 && b == 0 && r == 0 {
            (0, 0, h, w)
        } else {
            (t.min(h), l.min(w), b.min(h), r.min(w))
        }
    }

    /// Whether this map touches plane `p` (of a `planes`-plane image).
    fn covers(&self, p: usize) -> bool {
        p >= self.plane as usize && p < (self.plane + self.planes) as usize
    }

    /// The gain one row of an image gets, for the pixels it affects: `(column, gain)`.
    /// `row` and columns are in the frame of a `w`×`h` image; `plane` its plane.
    pub fn row_gains(
        &self,
        row: usize,
        plane: usize,
        w: usize,
        h: usize,
        out: &mut Vec<(usize, f32)>,
    ) {
        out.clear();
        let (t, l, b, r) = self.bounds(w, h);
        if row < t
            || row >= b
            || !(row - t).is_multiple_of(self.pitch[0] as usize)
            || !self.covers(plane)
        {
            return;
        }
        let mp = plane.min(self.map_planes as usize - 1);
        let v = (row as f64 + 0.5) / h as f64;
        let mut col = l;
        while col < r {
            out.push((col, self.gain(mp, v, (col as f64 + 0.5) / w as f64)));
            col += self.pitch[1] as usize;
        }
    }
}

/// Whether develop's fused first pass can take `list2` (gain maps only).
pub fn only_gain_maps(list: &[Opcode]) -> bool {
    list.iter()
        .all(|op| matches!(op, Opcode::GainMap(_) | Opcode::Other { .. }))
}

/// Applies the value opcodes of a list (GainMap, MapPolynomial, MapTable, Delta/Scale per
/// row/column) in order to `data` (0..1 values; `frame` says where the list's image is),
/// clipping to 0..1 after each, as the specification asks. `integer` says the samples
/// were integers, whose per-line deltas the DNG SDK reads in 1/65535 of full scale.
pub fn apply_values(ops: &[Opcode], data: &mut [f32], frame: Frame, integer: bool) {
    for op in ops {
        match op {
            Opcode::GainMap(map) => {
                let (w, h) = (frame.w, frame.h);
                let stride = frame.stride * frame.planes;
                data.par_chunks_mut(stride)
                    .enumerate()
                    .for_each(|(sy, row)| {
                        let Some(y) = sy.checked_sub(frame.y).filter(|&y| y < h) else {
                            return;
                        };
                        let mut gains = Vec::new();
                        for p in 0..frame.planes {
                            map.row_gains(y, p, w, h, &mut gains);
                            for &(x, g) in &gains {
                                let v = &mut row[(frame.x + x) * frame.planes + p];
                                *v = (*v * g).clamp(0.0, 1.0);
                            }
                        }
                    });
            }
            Opcode::MapPolynomial { area, coefficients } => {
                area.for_each(data, frame, |_, _, v| {
                    let x = *v as f64;
                    let y = coefficients.iter().rev().fold(0.0, |acc, c| acc * x + c);
                    *v = y.clamp(0.0, 1.0) as f32;
                });
            }
            Opcode::MapTable { area, table } => {
                let last = table.len() - 1;
                area.for_each(data, frame, |_, _, v| {
                    let i = ((*v * 65535.0).round().clamp(0.0, 65535.0) as usize).min(last);
                    *v = table[i] as f32 / 65535.0;
                });
            }
            Opcode::PerLine {
                area,
                per_column,
                scale,
                values,
            } => {
                let unit = if integer && !scale {
                    1.0 / 65535.0
                } else {
                    1.0
                };
                let (rp, cp) = (area.pitch[0] as usize, area.pitch[1] as usize);
                area.for_each(data, frame, |y, x, v| {
                    let i = if *per_column { x / cp } else { y / rp };
                    let Some(&k) = values.get(i) else { return };
                    *v = if *scale { *v * k } else { *v + k * unit }.clamp(0.0, 1.0);
                });
            }
            _ => {}
        }
    }
}

/// Multiplies a mosaic or single-plane image (`w`×`h`, one value per pixel; `plane_of`
/// gives a pixel's plane) by the gain maps in `ops`, clipping at 1 as the specification
/// asks after each opcode.
pub fn apply_gain_maps_mosaic(ops: &[Opcode], data: &mut [f32], w: usize, h: usize) {
    for op in ops {
        let Opcode::GainMap(map) = op else { continue };
        data.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
            let mut gains = Vec::new();
            map.row_gains(y, 0, w, h, &mut gains);
            for &(x, g) in &gains {
                row[x] = (row[x] * g).min(1.0);
            }
        });
    }
}

/// Applies OpcodeList3's corrections to interleaved camera RGB of `w`×`h` (the ActiveArea
/// frame), in list order: gain maps per plane, vignetting, distortion (resampled with a
/// Catmull-Rom cubic, as the SDK resamples bicubically). `clip` is each plane's clip level.
pub fn apply_rgb(ops: &[Opcode], data: &mut Vec<f32>, w: usize, h: usize, clip: [f32; 3]) {
    for op in ops {
        match op {
            Opcode::GainMap(map) => {
                data.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
                    let mut gains = Vec::new();
                    for p in 0..3 {
                        map.row_gains(y, p, w, h, &mut gains);
                        for &(x, g) in &gains {
                            let v = &mut row[x * 3 + p];
                            *v = (*v * g).min(clip[p]);
                        }
                    }
                });
            }
            Opcode::FixVignetteRadial { k, centre } => {
                let g = Radial::new(*centre, w, h);
                data.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
                    for (x, px) in row.chunks_exact_mut(3).enumerate() {
                        let r2 = g.r2(x as f64 + 0.5, y as f64 + 0.5);
                        let gain =
                            1.0 + r2 * (k[0] + r2 * (k[1] + r2 * (k[2] + r2 * (k[3] + r2 * k[4]))));
                        for p in 0..3 {
                            px[p] = (px[p] * gain as f32).min(clip[p]);
                        }
                    }
                });
            }
            Opcode::WarpRectilinear { planes, centre } => {
                *data = warp(data, w, h, planes, *centre, clip);
            }
            Opcode::MapPolynomial { .. } | Opcode::MapTable { .. } | Opcode::PerLine { .. } => {
                let frame = Frame {
                    stride: w,
                    planes: 3,
                    x: 0,
                    y: 0,
                    w,
                    h,
                };
                apply_values(std::slice::from_ref(op), data, frame, false);
            }
            Opcode::Other { .. } => {}
        }
    }
}

/// Centre and normalising radius of the radial corrections (the SDK's convention: exclusive
/// bounds, radius to the farthest corner).
struct Radial {
    cx: f64,
    cy: f64,
    inv_m: f64,
}

impl Radial {
    fn new(centre: [f64; 2], w: usize, h: usize) -> Radial {
        let (cx, cy) = (centre[0] * w as f64, centre[1] * h as f64);
        let mx = cx.max(w as f64 - cx);
        let my = cy.max(h as f64 - cy);
        let m = mx.hypot(my).max(1.0);
        Radial {
            cx,
            cy,
            inv_m: 1.0 / m,
        }
    }

    fn r2(&self, x: f64, y: f64) -> f64 {
        let dx = (x - self.cx) * self.inv_m;
        let dy = (y - self.cy) * self.inv_m;
        (dx * dx + dy * dy).min(1.0)
    }
}

fn catmull_rom(t: f32) -> [f32; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ]
}

/// WarpRectilinear: every output pixel samples the source where the lens put it.
fn warp(
    src: &[f32],
    w: usize,
    h: usize,
    planes: &[[f64; 6]],
    centre: [f64; 2],
    clip: [f32; 3],
) -> Vec<f32> {
    let g = Radial::new(centre, w, h);
    let m = 1.0 / g.inv_m;
    let mut out = vec![0f32; src.len()];
    let sample = |p: usize, sx: f64, sy: f64| -> f32 {
        let sx = sx.clamp(0.0, (w - 1) as f64);
        let sy = sy.clamp(0.0, (h - 1) as f64);
        let (x0, y0) = (sx.floor() as isize, sy.floor() as isize);
        let wx = catmull_rom((sx - x0 as f64) as f32);
        let wy = catmull_rom((sy - y0 as f64) as f32);
        let mut acc = 0.0;
        for (j, wyj) in wy.iter().enumerate() {
            let yy = (y0 + j as isize - 1).clamp(0, h as isize - 1) as usize;
            let row = &src[yy * w * 3..(yy + 1) * w * 3];
            let mut r = 0.0;
            for (i, wxi) in wx.iter().enumerate() {
                let xx = (x0 + i as isize - 1).clamp(0, w as isize - 1) as usize;
                r += wxi * row[xx * 3 + p];
            }
            acc += wyj * r;
        }
        acc.clamp(0.0, clip[p])
    };
    out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let dx = (x as f64 - g.cx) * g.inv_m;
            let dy = (y as f64 - g.cy) * g.inv_m;
            let r2 = (dx * dx + dy * dy).min(1.0);
            let mut last: Option<([f64; 6], f64, f64)> = None;
            for p in 0..3 {
                let k = planes[p.min(planes.len() - 1)];
                let (sx, sy) = match last {
                    Some((lk, sx, sy)) if lk == k => (sx, sy),
                    _ => {
                        let f = k[0] + r2 * (k[1] + r2 * (k[2] + r2 * k[3]));
                        let tx = k[4] * 2.0 * dx * dy + k[5] * (r2 + 2.0 * dx * dx);
                        let ty = k[5] * 2.0 * dx * dy + k[4] * (r2 + 2.0 * dy * dy);
                        let sx = g.cx + m * (f * dx + tx);
                        let sy = g.cy + m * (f * dy + ty);
                        last = Some((k, sx, sy));
                        (sx, sy)
                    }
                };
                px[p] = sample(p, sx, sy);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn bef(out: &mut Vec<u8>, v: f64) {
        out.extend_from_slice(&v.to_be_bytes());
    }

    /// An opcode list with a 2×2 gain map (×1 left, ×2 right), a vignette and an unknown op,
    /// written as the specification lays them out.
    fn list() -> Vec<u8> {
        let mut params = Vec::new();
        for v in [0, 0, 0, 0, 0, 1, 1, 1, 2, 2] {
            be(&mut params, v);
        }
        for v in [1.0, 1.0, 0.0, 0.0] {
            bef(&mut params, v);
        }
        be(&mut params, 1);
        for g in [1.0f32, 2.0, 1.0, 2.0] {
            params.extend_from_slice(&g.to_be_bytes());
        }
        let mut out = Vec::new();
        be(&mut out, 3);
        for v in [9, 0x0103_0000, 1, params.len() as u32] {
            be(&mut out, v);
        }
        out.extend_from_slice(&params);
        for v in [3, 0x0103_0000, 0, 56] {
            be(&mut out, v);
        }
        for v in [0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5] {
            bef(&mut out, v);
        }
        for v in [4, 0x0103_0000, 1, 8, 0, 0] {
            be(&mut out, v);
        }
        out
    }

    #[test]
    fn an_opcode_list_is_parsed_as_the_specification_lays_it_out() {
        let ops = parse(&list()).unwrap();
        assert_eq!(ops.len(), 3);
        let Opcode::GainMap(g) = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((g.points, g.map_planes, g.gains.len()), ([2, 2], 1, 4));
        assert!(matches!(ops[1], Opcode::FixVignetteRadial { k, .. } if k[0] == 0.5));
        assert_eq!(
            ops[2],
            Opcode::Other {
                id: 4,
                optional: true
            }
        );
        let lists = OpcodeLists {
            list2: ops,
            ..Default::default()
        };
        let skipped = lists.not_applied();
        assert!(
            skipped.iter().any(|s| s.contains("FixBadPixelsConstant")),
            "{skipped:?}"
        );
        assert!(
            skipped.iter().any(|s| s.contains("FixVignetteRadial")),
            "{skipped:?}"
        );
        // Truncated lists are refused, not read past their end.
        let bytes = list();
        for cut in [3, 20, 60, bytes.len() - 1] {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_gain_map_interpolates_between_its_points_at_pixel_centres() {
        let ops = parse(&list()).unwrap();
        let (w, h) = (101, 4);
        let mut data = vec![0.25f32; w * h];
        apply_gain_maps_mosaic(&ops[..1], &mut data, w, h);
        // The centre of pixel x is at (x + 0.5) / w: gain 1 + that.
        for x in [0, 50, 100] {
            let expect = 0.25 * (1.0 + (x as f32 + 0.5) / w as f32);
            assert!(
                (data[x] - expect).abs() < 1e-6,
                "{x}: {} vs {expect}",
                data[x]
            );
        }
    }

    #[test]
    fn vignetting_brightens_corners_by_the_polynomial_and_leaves_the_centre() {
        let ops = parse(&list()).unwrap();
        let (w, h) = (64, 48);
        let mut data = vec![0.2f32; w * h * 3];
        apply_rgb(&ops[1..2], &mut data, w, h, [1.0; 3]);
        let centre = data[(24 * w + 32) * 3];
        let corner = data[0];
        assert!((centre - 0.2).abs() < 1e-3, "{centre}");
        // The corner pixel's centre is at r² just under 1: gain ≈ 1.5.
        assert!((corner - 0.3).abs() < 5e-3, "{corner}");
    }

    #[test]
    fn a_barrel_warp_moves_content_outward_and_identity_keeps_it() {
        let (w, h) = (80, 60);
        let mut img = vec![0f32; w * h * 3];
        // A bright vertical line at x = 60.
        for y in 0..h {
            for p in 0..3 {
                img[(y * w + 60) * 3 + p] = 1.0;
            }
        }
        let ident = Opcode::WarpRectilinear {
            planes: vec![[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
            centre: [0.5, 0.5],
        };
        let mut same = img.clone();
        apply_rgb(&[ident], &mut same, w, h, [1.0; 3]);
        assert!(same.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-5));
        // kr0 < 1: each output pixel samples nearer the centre, so the line moves outward.
        let warp = Opcode::WarpRectilinear {
            planes: vec![[0.9, 0.0, 0.0, 0.0, 0.0, 0.0]],
            centre: [0.5, 0.5],
        };
        let mut out = img.clone();
        apply_rgb(&[warp], &mut out, w, h, [1.0; 3]);
        let row = 30;
        let peak = (0..w)
            .max_by(|&a, &b| out[(row * w + a) * 3].total_cmp(&out[(row * w + b) * 3]))
            .unwrap();
        // Source x = 40 + 0.9 (x - 40) = 60 → x ≈ 62.2.
        assert!((62..=63).contains(&peak), "{peak}");
    }
}
