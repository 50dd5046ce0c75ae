//! Makes a camera-like DNG from a real photograph (see the crate docs), for the README's
//! demo and for benchmarks: `make-dng OUT.dng [--mp 24] [--bits 14] [--cfa rggb|grbg|gbrg|bggr] [--black 512]`.

use anyhow::{bail, Context};
use luminary_tests::{load_photo, write_dng, Cfa, RawSpec};

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: make-dng OUT.dng [--mp N] [--bits 12|14] [--cfa rggb] [--black N]";
    let mut args = std::env::args().skip(1);
    let out = args.next().context(USAGE)?;
    // `make-dng --help` once wrote a 48 MB DNG named "--help".
    if out.starts_with('-') {
        if out == "--help" || out == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        bail!("the output path comes first, not {out}\n{USAGE}");
    }
    let (mut mp, mut bits, mut cfa, mut black) = (24.0f64, 14u32, Cfa::Rggb, 512u16);
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mp" => mp = v.parse()?,
            "--bits" => bits = v.parse()?,
            "--black" => black = v.parse()?,
            "--cfa" => {
                cfa = match v.as_str() {
                    "rggb" => Cfa::Rggb,
                    "grbg" => Cfa::Grbg,
                    "gbrg" => Cfa::Gbrg,
                    "bggr" => Cfa::Bggr,
                    _ => bail!("unknown CFA {v}"),
                }
            }
            _ => bail!("unknown option {flag}"),
        }
    }
    // 3:2 like most cameras, even dimensions for the 2x2 CFA.
    let w = ((mp * 1e6 * 1.5).sqrt() as usize) & !1;
    let h = ((w as f64 / 1.5) as usize) & !1;
    let photo = load_photo("flower.png")?.mirror_tile(w, h);
    write_dng(
        out.as_ref(),
        &photo,
        &RawSpec {
            cfa,
            bits,
            black,
            orientation: 1,
        },
    )?;
    println!(
        "{out}: {w}x{h} {bits}-bit {cfa:?} DNG from flower.png (libjxl-testdata, BSD-3-Clause)"
    );
    Ok(())
}
