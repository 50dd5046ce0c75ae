//! Export of a look as an Adobe / Resolve `.cube` 3D LUT (Adobe's Cube LUT Specification
//! 1.0: `LUT_3D_SIZE`, `DOMAIN_MIN`/`DOMAIN_MAX` 0..1, one `R G B` line per node, red index
//! fastest), so other software applies the same look.
//!
//! A `.cube` file has no colour space of its own: its input and output are whatever the
//! software feeds it. So the export says which: `--input srgb` (the default; also
//! `display-p3`, `adobe-rgb`, `prophoto`) makes a LUT from values encoded in that space to
//! values encoded in the same space, each node taken through the look exactly as Luminary
//! applies it (decode, into linear Rec. 2020, the look's LUT, back, encode; colours outside
//! the space clipped). `--input look` writes the look's own encoding, `sqrt` of linear
//! Rec. 2020, node for node.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Look;
use crate::color::OutputSpace;

/// What the `.cube`'s numbers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CubeInput {
    /// Values encoded in an RGB space (its transfer curve and primaries), in and out.
    Space(OutputSpace),
    /// The look's own encoding: `sqrt` of linear Rec. 2020.
    Look,
}

impl CubeInput {
    /// From its command-line name.
    pub fn parse(s: &str) -> Result<CubeInput, String> {
        if s == "look" {
            return Ok(CubeInput::Look);
        }
        OutputSpace::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .map(CubeInput::Space)
            .ok_or_else(|| {
                let names: Vec<&str> = OutputSpace::ALL.iter().map(|o| o.name()).collect();
                format!("unknown --input '{s}'; choose {} or look", names.join(", "))
            })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            CubeInput::Space(o) => o.name(),
            CubeInput::Look => "look",
        }
    }
}

/// The `.cube` text for `look`, `size` nodes per axis.
pub fn cube_text(look: &Look, size: usize, input: CubeInput) -> String {
    let n = size;
    let m = (n - 1) as f32;
    let mut nodes = Vec::with_capacity(n * n * n * 3);
    for b in 0..n {
        for g in 0..n {
            for r in 0..n {
                nodes.extend([r as f32 / m, g as f32 / m, b as f32 / m]);
            }
        }
    }
    let out: Vec<f32> = match input {
        CubeInput::Look => nodes
            .chunks_exact(3)
            .flat_map(|p| look.lut.lookup([p[0], p[1], p[2]]))
            .collect(),
        CubeInput::Space(space) => {
            let lin = crate::color::to_working(n * n, n, nodes, Some(space.icc()))
                .expect("built-in profiles convert");
            let enc = space.encoder();
            lin.data
                .chunks_exact(3)
                .flat_map(|p| {
                    let e = enc.encode(&look.map_linear(p));
                    e.map(|v| v.clamp(0.0, 1.0))
                })
                .collect()
        }
    };
    let mut s = String::with_capacity(out.len() * 9 + 512);
    let info = &look.info;
    let _ = writeln!(
        s,
        "TITLE \"Luminary look: {} ({})\"",
        info.preset, info.engine
    );
    let _ = writeln!(
        s,
        "# Made by Luminary {} from a look learned with preset {} on {} ({}), from {} reference photo(s).",
        env!("CARGO_PKG_VERSION"),
        info.preset,
        info.engine,
        info.model,
        info.references.len()
    );
    let _ = writeln!(
        s,
        "# Input and output: {}.",
        match input {
            CubeInput::Space(o) => format!(
                "{} encoded values (its primaries and transfer curve)",
                o.name()
            ),
            CubeInput::Look => "sqrt of linear Rec.2020 (D65)".to_string(),
        }
    );
    let _ = writeln!(s, "LUT_3D_SIZE {n}");
    let _ = writeln!(s, "DOMAIN_MIN 0.0 0.0 0.0");
    let _ = writeln!(s, "DOMAIN_MAX 1.0 1.0 1.0");
    for p in out.chunks_exact(3) {
        let _ = writeln!(s, "{:.6} {:.6} {:.6}", p[0], p[1], p[2]);
    }
    s
}

/// Writes the `.cube` beside nothing it could replace (`name-2.cube`, … when taken), whole
/// or not at all; returns the name used.
pub fn write_cube(
    look: &Look,
    size: usize,
    input: CubeInput,
    path: &Path,
) -> Result<PathBuf, super::file::LookError> {
    let text = cube_text(look, size, input);
    super::file::write_bytes(text.as_bytes(), path, "cube")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::look::{Global, LookInfo, Lut};

    fn look() -> Look {
        let mut lut = Lut::identity(33);
        for v in lut.values.chunks_exact_mut(3) {
            let (r, g, b) = (v[0], v[1], v[2]);
            v.copy_from_slice(&[(r * 1.1).min(1.0), g, b * 0.8]);
        }
        Look {
            info: LookInfo {
                preset: "warm-film".into(),
                preset_version: 1,
                params: Default::default(),
                engine: "local".into(),
                model: "offline".into(),
                references: vec![],
                coverage: 1.0,
                created: 0,
            },
            global: Global::identity(),
            lut,
        }
    }

    #[test]
    fn cube_has_the_header_and_one_line_per_node_red_fastest() {
        let text = cube_text(&look(), 17, CubeInput::Look);
        assert!(text.contains("LUT_3D_SIZE 17\n"));
        let rows: Vec<Vec<f32>> = text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows.len(), 17 * 17 * 17);
        // Node (r=1, g=0, b=0) is the second line; (0, 0, 1) the 17·17+1-th.
        assert!((rows[1][0] - 1.1 / 16.0).abs() < 1e-5, "{:?}", rows[1]);
        assert!(
            (rows[17 * 17][2] - 0.8 / 16.0).abs() < 1e-5,
            "{:?}",
            rows[17 * 17]
        );
    }

    #[test]
    fn unknown_input_is_refused_with_the_choices() {
        let e = CubeInput::parse("rec709").unwrap_err();
        assert!(e.contains("srgb") && e.contains("look"), "{e}");
        assert_eq!(CubeInput::parse("display-p3").unwrap().name(), "display-p3");
    }
}
