//! Real cameras: every sample RAW (`scripts/fetch-raw-samples`: Debian's dcraw and hdrmerge
//! packages, `../shared/raw-samples/`) decodes upright at its size, and its base looks like
//! what the camera showed — measured against the JPEG preview embedded in the same file,
//! beside LibRaw (rawpy) on the same file, by `luminary bench --colour`. ExifTool's
//! header-only files of many more formats fail quickly and clearly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use luminary::error::{Cancel, ErrorCode};
use luminary::ingest::{ingest_with, RawDecoding};
use luminary_tests::daemon::{luminary_bin, Env};
use luminary_tests::{python, raw_samples_dir, RAW_SAMPLES};
use serde_json::Value;

/// Previews smaller than this are thumbnails (the Kodak DC50's is 96×64, made in 1995):
/// too small and too crudely rendered to judge colour by. Those files are checked for
/// decoding, orientation and size only.
const MIN_PREVIEW: u64 = 256;

/// Targets (issue #15): median Δab ≤ 4, p90 ≤ 10, |ΔL*| ≤ 5, never more than 1 Δab worse
/// than LibRaw.
const DAB_MEDIAN: f64 = 4.0;
const DAB_P90: f64 = 10.0;
const DL: f64 = 5.0;

/// Samples that do not meet every target yet, with the figures they must not get worse
/// than (median Δab, p90, |ΔL*|) and why. Each is reported on every run.
const SHORTFALLS: &[(&str, [f64; 3], &str)] = &[
    (
        "canon_d30__boostgil_RAW_CANON_D30_SRGB.CRW",
        [9.5, 17.0, 12.5],
        "auto white balance in-camera: the file holds no as-shot balance, so ours is estimated \
         from the picture; and a 2000 camera's dark, contrasty JPEG (no baseline exposure is \
         known for non-DNG RAWs)",
    ),
    (
        "canon_eos30d__dcraw_IMG_0848.CR2",
        [5.0, 6.5, 5.0],
        "Adobe's published matrix renders the deep blue sky more cyan than Canon's JPEG \
         (LibRaw, on the same matrix, is further off)",
    ),
];

/// `luminary bench --colour` over the samples, once for all tests here (it decodes every
/// file and runs LibRaw on it).
fn bench_rows(dir: &Path) -> &'static [Value] {
    static ROWS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    ROWS.get_or_init(|| {
        let env = Env::new();
        let out = env.run(&[
            "bench",
            "--colour",
            dir.to_str().unwrap(),
            "--json",
            "--python",
            &python(),
        ]);
        assert!(
            out.status.success(),
            "luminary bench --colour failed (needs Python with rawpy and Pillow: \
             `pip install rawpy pillow`, or LUMINARY_PYTHON): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

fn name(row: &Value) -> String {
    Path::new(row["file"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_real_camera_raw_renders_with_its_cameras_colour_and_brightness() {
    let dir = raw_samples_dir().unwrap();
    let rows = bench_rows(&dir);
    let mut failures = Vec::new();
    let mut measured = 0;
    for sample in RAW_SAMPLES {
        let row = rows
            .iter()
            .find(|r| name(r) == *sample)
            .unwrap_or_else(|| panic!("{sample}: not measured"));
        assert!(row["error"].is_null(), "{sample}: {}", row["error"]);
        let size = row["preview_size"].as_array();
        let big = size.is_some_and(|s| s.iter().any(|v| v.as_u64().unwrap() >= MIN_PREVIEW));
        if !big {
            println!("{sample}: preview {size:?} too small to judge colour by; decoding checked elsewhere");
            continue;
        }
        measured += 1;
        let ours = &row["luminary"];
        let theirs = &row["libraw"];
        let (m, p90, dl) = (
            ours["dab_median"].as_f64().unwrap(),
            ours["dab_p90"].as_f64().unwrap(),
            ours["dl"].as_f64().unwrap(),
        );
        let libraw = theirs["dab_median"].as_f64().unwrap_or(f64::INFINITY);
        println!(
            "{sample}: Δab {m:.1} / p90 {p90:.1}, ΔL* {dl:+.1}; LibRaw Δab {libraw:.1} / p90 {:.1}, ΔL* {:+.1}; white {}",
            theirs["dab_p90"].as_f64().unwrap_or(f64::NAN),
            theirs["dl"].as_f64().unwrap_or(f64::NAN),
            row["white"]
        );
        if m > libraw + 1.0 {
            failures.push(format!(
                "{sample}: Δab {m:.1} is more than 1 worse than LibRaw's {libraw:.1}"
            ));
        }
        let bounds = match SHORTFALLS.iter().find(|s| s.0 == *sample) {
            Some((_, b, why)) => {
                println!("  NOT YET AT TARGET (≤ {DAB_MEDIAN} / {DAB_P90} / ±{DL}): {why}");
                *b
            }
            None => [DAB_MEDIAN, DAB_P90, DL],
        };
        if m > bounds[0] || p90 > bounds[1] || dl.abs() > bounds[2] {
            failures.push(format!(
                "{sample}: Δab {m:.1} / p90 {p90:.1}, ΔL* {dl:+.1} (allowed {bounds:?})"
            ));
        }
    }
    assert!(
        measured >= 5,
        "only {measured} samples have a usable preview"
    );
    // The EOS D30 shot on auto white balance writes no as-shot balance (vendor/rawler's
    // patch): develop must say it estimated one, not take the numbers rawler used to give.
    let d30 = rows
        .iter()
        .find(|r| name(r).starts_with("canon_d30"))
        .unwrap();
    assert!(
        d30["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("auto white balance")),
        "{d30}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Real blown highlights: in the samples where a tenth of the picture or more is near white
/// (the brightest frames of hdrmerge's bracket), the base there is neutral. (That the clip
/// itself is at the neutral is `develop`'s unit test on a synthetic sensor.)
#[test]
fn blown_highlights_of_real_raws_are_neutral() {
    let dir = raw_samples_dir().unwrap();
    let rows = bench_rows(&dir);
    let mut checked = 0;
    for row in rows.iter().filter(|r| r["error"].is_null()) {
        let (share, chroma) = (
            row["highlights"][0].as_f64().unwrap(),
            row["highlights"][1].as_f64().unwrap(),
        );
        println!(
            "{}: {:.1} % near white, chroma p99 {chroma:.1}",
            name(row),
            share * 100.0
        );
        if share >= 0.1 {
            checked += 1;
            assert!(
                chroma <= 8.0,
                "{}: blown highlights have chroma {chroma:.1}",
                name(row)
            );
        }
    }
    assert!(
        checked >= 2,
        "only {checked} samples with large blown areas"
    );
}

#[test]
fn every_real_camera_raw_decodes_upright_at_the_size_libraw_gives() {
    let dir = raw_samples_dir().unwrap();
    let rows = bench_rows(&dir);
    for sample in RAW_SAMPLES {
        let row = rows.iter().find(|r| name(r) == *sample).expect("measured");
        assert!(row["error"].is_null(), "{sample}: {}", row["error"]);
        let (w, h) = (
            row["width"].as_u64().unwrap(),
            row["height"].as_u64().unwrap(),
        );
        let lw = row["libraw_size"][0].as_u64().expect("LibRaw read it");
        let lh = row["libraw_size"][1].as_u64().unwrap();
        // LibRaw keeps a few border pixels our develop crops (DefaultCrop, masked areas).
        let near = |a: u64, b: u64| (a as f64 / b as f64 - 1.0).abs() < 0.03;
        assert!(
            near(w, lw) && near(h, lh),
            "{sample}: {w}×{h}, LibRaw {lw}×{lh}"
        );
        assert_eq!(
            row["libraw_turns"].as_u64(),
            Some(0),
            "{sample}: LibRaw's develop matches ours only turned: orientation differs"
        );
    }
}

/// The sensor values themselves, before any develop: rawler (with the patched lossless-JPEG
/// decoder and Huffman caches, vendor/rawler/PATCHES.md 3) reads these samples exactly as
/// LibRaw does, every value of every row. The CR2 and the three Nikon DNGs are lossless
/// JPEG (the DNGs in 204 tiles, two components each); the D30's CRW is Canon's own Huffman
/// code. One wrong bit in one sample fails. (The Kodak DC50's RADC code is not compared:
/// rawler's and LibRaw's versions of it differ by a code value or two.)
#[test]
fn real_camera_raws_decode_to_the_sensor_values_libraw_reads() {
    const SAMPLES: [&str; 5] = [
        "canon_d30__boostgil_RAW_CANON_D30_SRGB.CRW",
        "canon_eos30d__dcraw_IMG_0848.CR2",
        "nikon_d5000__hdrmerge_sample1.dng",
        "nikon_d5000__hdrmerge_sample2.dng",
        "nikon_d5000__hdrmerge_sample3.dng",
    ];
    let dir = raw_samples_dir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, rawpy
out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    a = rawpy.imread(path).raw_image
    open(f"{out}/{i}.u16", "wb").write(a.astype("<u2").tobytes())
    print(a.shape[1], a.shape[0])
"#;
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(tmp.path())
        .args(SAMPLES.iter().map(|s| dir.join(s)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rawpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shapes: Vec<Vec<usize>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    for (i, sample) in SAMPLES.iter().enumerate() {
        let raw = rawler::decode_file(dir.join(sample)).unwrap();
        let rawler::RawImageData::Integer(ours) = &raw.data else {
            panic!("{sample}: not integer samples")
        };
        assert_eq!(
            (raw.width * raw.cpp, raw.height),
            (shapes[i][0], shapes[i][1]),
            "{sample}: rawler's size (width × samples per pixel, height) against LibRaw's"
        );
        let bytes = std::fs::read(tmp.path().join(format!("{i}.u16"))).unwrap();
        let libraw: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let differ = ours.iter().zip(&libraw).filter(|(a, b)| a != b).count();
        assert!(
            differ == 0 && ours.len() == libraw.len(),
            "{sample}: {differ} of {} sensor values differ from LibRaw's",
            libraw.len()
        );
    }
}

/// The header-only files of ExifTool's test images: NEF, RAF, RW2, CR3, IIQ, X3F, MRW, …
/// None decodes (they hold no pixels), and each must fail with a clear error naming the
/// file, quickly, without crashing or hanging the decoder.
#[test]
fn header_only_files_of_many_formats_fail_clearly_and_quickly() {
    let dir = raw_samples_dir().unwrap().join("exiftool");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{}: {files:?}", dir.display());
    let how = RawDecoding::Process(luminary_bin());
    for f in &files {
        let t = Instant::now();
        let r = ingest_with(
            f,
            &luminary::config::Limits::default(),
            &how,
            &Cancel::default(),
        );
        let took = t.elapsed();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        match r {
            Ok(i) => println!("{name}: decoded {}×{}", i.image.width, i.image.height),
            Err(e) => {
                println!("{name}: {:?} in {took:?}: {}", e.code, e.message);
                assert!(
                    matches!(
                        e.code,
                        ErrorCode::UnsupportedFormat | ErrorCode::CorruptInput
                    ),
                    "{name}: {e:?}"
                );
                assert!(
                    e.message.contains(&name),
                    "{name}: the error does not name the file: {}",
                    e.message
                );
            }
        }
        assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
    }
}

/// Formats nobody reads here fail as `unsupported_format`, naming the file and the reason:
/// a real headerless Kodak file (known to LibRaw only by its size), and a GoPro GPR (a DNG
/// whose image is VC-5 compressed; made here from a DNG by setting its Compression to 9).
#[test]
fn headerless_kodak_files_and_gopro_gpr_are_unsupported_formats_with_a_reason() {
    let env = Env::new();
    let kodak = raw_samples_dir()
        .unwrap()
        .join("kodak_c330__kimageformats_RAW_KODAK_C330_FORMAT_NONE_YRGB.raw");
    let kodak = super::copy_into(&env, &kodak);
    let photo = luminary_tests::load_photo("blossom.png").unwrap();
    let gpr = env.work.join("GOPR0042.GPR");
    luminary_tests::write_dng(
        &gpr,
        &photo,
        &luminary_tests::RawSpec {
            cfa: luminary_tests::Cfa::Rggb,
            bits: 12,
            black: 64,
            orientation: 1,
        },
    )
    .unwrap();
    set_tiff_tag(&gpr, 259, 9);
    for (file, reason) in [(&kodak, "headerless"), (&gpr, "VC-5")] {
        let (res, out) = super::enhance(&env, &[file.to_str().unwrap(), "--preset", "auto"]);
        assert!(!out.status.success());
        let r = &res[0];
        assert_eq!(r["code"], "unsupported_format", "{r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.contains(file.file_name().unwrap().to_str().unwrap()) && msg.contains(reason),
            "{msg}"
        );
    }
    assert!(env.run(&["status"]).status.success(), "the daemon stays up");
}

/// Overwrites the (short, inline) value of `tag` in the first IFD of a little-endian TIFF.
fn set_tiff_tag(path: &Path, tag: u16, value: u16) {
    let mut b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"II*\0");
    let ifd = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes([b[ifd], b[ifd + 1]]) as usize;
    let at = (0..n)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes([b[e], b[e + 1]]) == tag)
        .expect("tag present");
    b[at + 8..at + 10].copy_from_slice(&value.to_le_bytes());
    std::fs::write(path, b).unwrap();
}
