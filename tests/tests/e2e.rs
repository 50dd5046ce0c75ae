//! End-to-end: the real `luminary` binary, a real daemon on a real socket, temporary XDG
//! folders, and photos made from real photographs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use luminary_tests::daemon::{results, Env};
use luminary_tests::*;
use serde_json::Value;

#[path = "e2e/plugins.rs"]
mod plugins;

#[cfg(target_os = "linux")]
#[path = "e2e/darktable.rs"]
mod darktable;

#[cfg(target_os = "linux")]
#[path = "e2e/gimp.rs"]
mod gimp;

#[cfg(unix)]
#[path = "e2e/lightroom.rs"]
mod lightroom;

/// Helpers the Linux-only modules share: a raw protocol frame, and process liveness from
/// /proc.
#[cfg(target_os = "linux")]
mod linux_helpers {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    pub fn frame(s: &mut UnixStream, v: &Value) {
        let body = serde_json::to_vec(v).unwrap();
        s.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&body).unwrap();
    }

    pub fn alive(pid: i32) -> bool {
        // A zombie counts as gone, but only once all its threads have exited too: a killed
        // process's leader turns zombie while its other threads still hold its files (the
        // listening socket, the lock), and a client arriving then meets a dying daemon.
        let zombie = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s.split(") ").nth(1).unwrap_or("").starts_with('Z'),
            Err(_) => return false,
        };
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        !zombie || threads > 1
    }

    pub fn wait_gone(pid: i32, within: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < within {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

#[cfg(target_os = "linux")]
#[path = "e2e/hardening.rs"]
mod hardening;

#[cfg(target_os = "linux")]
#[path = "e2e/lifetime.rs"]
mod lifetime;

#[cfg(target_os = "linux")]
#[path = "e2e/install.rs"]
mod install;

#[cfg(target_os = "linux")]
#[path = "e2e/decoder.rs"]
mod decoder;

#[cfg(target_os = "linux")]
#[path = "e2e/engines.rs"]
mod engines;

#[cfg(target_os = "linux")]
#[path = "e2e/cameras.rs"]
mod cameras;

#[path = "e2e/dng.rs"]
mod dng;

#[path = "e2e/previews.rs"]
mod previews;

#[cfg(target_os = "linux")]
#[path = "e2e/windows.rs"]
mod windows;

#[cfg(target_os = "linux")]
#[path = "e2e/archives.rs"]
mod archives;

/// Fixtures shared by every test in this binary (generating a 24 MP DNG takes a while).
struct Fixtures {
    _dir: tempfile::TempDir,
    /// Upright source photo at 24 MP (what the big DNG was made from).
    big_photo: Photo,
    /// 24 MP, 14-bit, RGGB, black 512.
    dng_rggb_14: PathBuf,
    /// 12 MP, 12-bit, GRBG, black 256.
    dng_grbg_12: PathBuf,
    /// The 12 MP photo.
    mid_photo: Photo,
    /// 16-bit TIFF, sRGB without ICC.
    tiff16: PathBuf,
    /// 8-bit TIFF.
    tiff8: PathBuf,
    /// 16-bit TIFF in Adobe RGB with its ICC profile.
    tiff16_adobe: PathBuf,
    /// JPEG stored sideways with EXIF orientation 6.
    jpeg_rot: PathBuf,
    /// Upright version of the JPEG's picture.
    jpeg_upright: Photo,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let flower = load_photo("flower.png").unwrap();
        let big_photo = flower.mirror_tile(6000, 4000);
        let dng_rggb_14 = dir.path().join("IMG_0042.dng");
        write_dng(
            &dng_rggb_14,
            &big_photo,
            &RawSpec {
                cfa: Cfa::Rggb,
                bits: 14,
                black: 512,
                orientation: 1,
            },
        )
        .unwrap();
        let mid_photo = flower.mirror_tile(4256, 2848);
        let dng_grbg_12 = dir.path().join("DSC_1234.dng");
        write_dng(
            &dng_grbg_12,
            &mid_photo,
            &RawSpec {
                cfa: Cfa::Grbg,
                bits: 12,
                black: 256,
                orientation: 1,
            },
        )
        .unwrap();
        let tiff16 = dir.path().join("scan16.tif");
        write_tiff(&tiff16, &flower, true, None).unwrap();
        let tiff8 = dir.path().join("scan8.tif");
        write_tiff(&tiff8, &flower, false, None).unwrap();
        let tiff16_adobe = dir.path().join("scan16-adobe.tif");
        write_tiff(
            &tiff16_adobe,
            &flower,
            true,
            Some(moxcms::ColorProfile::new_adobe_rgb()),
        )
        .unwrap();
        let jpeg_upright = load_photo("portrait.png").unwrap().mirror_tile(1200, 800);
        let jpeg_rot = dir.path().join("phone.jpg");
        write_rotated_jpeg(&jpeg_rot, &jpeg_upright).unwrap();
        Fixtures {
            _dir: dir,
            big_photo,
            dng_rggb_14,
            dng_grbg_12,
            mid_photo,
            tiff16,
            tiff8,
            tiff16_adobe,
            jpeg_rot,
            jpeg_upright,
        }
    })
}

/// Copies a fixture into the test's own folder (tests run in parallel).
fn copy_into(env: &Env, src: &Path) -> PathBuf {
    let dst = env.work.join(src.file_name().unwrap());
    std::fs::copy(src, &dst).unwrap();
    dst
}

fn enhance(env: &Env, args: &[&str]) -> (Vec<Value>, std::process::Output) {
    let mut all = vec!["enhance", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    (results(&out.stdout), out)
}

fn ok_result(env: &Env, args: &[&str]) -> Value {
    let (res, out) = enhance(env, args);
    assert!(
        out.status.success(),
        "luminary {args:?} failed: {}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        env.daemon_log()
    );
    assert_eq!(res.len(), 1);
    res.into_iter().next().unwrap()
}

/// Decodes an output to sRGB-encoded floats.
fn decode(path: &Path) -> Photo {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb32f();
    Photo {
        width: img.width() as usize,
        height: img.height() as usize,
        data: img.into_raw(),
    }
}

fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// 16-bit samples, bit depth and ICC profile of a TIFF, read with the `tiff` crate.
fn read_tiff16(path: &Path) -> (u32, u32, Vec<u16>, Vec<u8>) {
    let mut dec =
        tiff::decoder::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
            .unwrap();
    let (w, h) = dec.dimensions().unwrap();
    let bits = dec.get_tag_u32_vec(tiff::tags::Tag::BitsPerSample).unwrap();
    assert_eq!(
        bits,
        vec![16, 16, 16],
        "{} is not 16-bit RGB",
        path.display()
    );
    let icc = dec
        .get_tag_u8_vec(tiff::tags::Tag::Unknown(34675))
        .unwrap_or_default();
    let tiff::decoder::DecodingResult::U16(data) = dec.read_image().unwrap() else {
        panic!("not 16-bit")
    };
    (w, h, data, icc)
}

fn exif_text(path: &Path, tag: exif::Tag) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::BufReader::new(f))
        .ok()?;
    let field = exif.get_field(tag, exif::In::PRIMARY)?;
    Some(field.display_value().to_string())
}

fn no_hidden_files(env: &Env, dir: &Path) {
    let hidden = env.hidden_files(dir);
    assert!(
        hidden.is_empty(),
        "temporary files left behind in {}: {hidden:?}",
        dir.display()
    );
}

#[test]
fn raw_to_16_bit_tiff_keeps_size_colour_profile_exif_and_the_original() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.dng_rggb_14);
    let before = fingerprint(&src);
    let r = ok_result(
        &env,
        &[
            src.to_str().unwrap(),
            "--preset",
            "vivid-landscape",
            "--intensity",
            "0.7",
        ],
    );

    let out = PathBuf::from(r["output"].as_str().unwrap());
    assert_eq!(out, env.work.join("IMG_0042-luminary-vivid-landscape.tif"));
    for key in [
        "input",
        "output",
        "preset",
        "intensity",
        "engine",
        "cached",
        "timings_ms",
    ] {
        assert!(r.get(key).is_some(), "result lacks {key}: {r}");
    }
    assert_eq!(r["engine"], "local");
    assert_eq!(r["cached"], false);
    for stage in [
        "ingest", "render", "preview", "preset", "engine", "blend", "encode", "total",
    ] {
        assert!(
            r["timings_ms"][stage].is_u64(),
            "no timing for {stage}: {r}"
        );
    }

    let (w, h, _, icc) = read_tiff16(&out);
    assert_eq!(
        (w as usize, h as usize),
        (f.big_photo.width, f.big_photo.height)
    );
    let profile = moxcms::ColorProfile::new_from_slice(&icc).expect("embedded ICC profile parses");
    assert!(profile.red_trc.is_some());

    assert_eq!(
        exif_text(&out, exif::Tag::Make).as_deref(),
        Some("\"Sony\"")
    );
    assert_eq!(
        exif_text(&out, exif::Tag::Model).as_deref(),
        Some("\"ILCE-7M3\"")
    );
    assert!(exif_text(&out, exif::Tag::DateTimeOriginal)
        .unwrap()
        .contains("2026-05-17 18:42:07"));
    assert!(exif_text(&out, exif::Tag::LensModel)
        .unwrap()
        .contains("FE 85mm"));
    assert!(exif_text(&out, exif::Tag::GPSLatitude)
        .unwrap()
        .starts_with("48 deg 51 min"));
    assert_eq!(
        exif_text(&out, exif::Tag::Orientation).as_deref(),
        Some("row 0 at top and column 0 at left")
    );
    let bytes = std::fs::read(&out).unwrap();
    let text =
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(1 << 20).min(bytes.len())..])
            .into_owned()
            + &String::from_utf8_lossy(&bytes[..(1 << 16).min(bytes.len())]);
    assert!(
        text.contains("luminary:Preset=\"vivid-landscape\""),
        "XMP provenance missing"
    );

    assert_eq!(fingerprint(&src), before, "the original changed");
    no_hidden_files(&env, &env.work);
}

#[test]
fn intensity_zero_is_the_base_one_is_the_edit_and_half_is_halfway() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.dng_grbg_12);
    let before = fingerprint(&src);
    let run = |i: &str| {
        let r = ok_result(
            &env,
            &[
                src.to_str().unwrap(),
                "--preset",
                "warm-film",
                "--intensity",
                i,
            ],
        );
        PathBuf::from(r["output"].as_str().unwrap())
    };
    let (o0, o5, o1) = (run("0"), run("0.5"), run("1"));
    // Never overwritten: same preset three times gives -2 and -3.
    assert!(o5.to_string_lossy().ends_with("-2.tif") && o1.to_string_lossy().ends_with("-3.tif"));

    // Intensity 0 is the base render, computed here independently through the library.
    let limits = luminary::config::Limits::default();
    let ingested = luminary::ingest::ingest(&src, &limits).unwrap();
    let mut base = ingested.image;
    luminary::pipeline::render::render_base(&mut base, ingested.rendering);
    let want = luminary::pipeline::encode::to_u16(&base, luminary::color::OutputSpace::Srgb);
    let (w, h, got, _) = read_tiff16(&o0);
    assert_eq!(
        (w as usize, h as usize),
        (f.mid_photo.width, f.mid_photo.height)
    );
    let max_diff = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(
        max_diff <= 1,
        "intensity 0 differs from the base by {max_diff} codes"
    );

    // The base of a RAW made from a photo is that photo as a camera would render its
    // scene: the photo's light through the same exposure and tone curve (colour pipeline
    // check: levels, white balance, matrix and demosaic recover the scene).
    let zero = decode(&o0);
    let (pw, ph) = (f.mid_photo.width, f.mid_photo.height);
    let mut scene = luminary::color::to_working(pw, ph, f.mid_photo.data.clone(), None).unwrap();
    luminary::pipeline::render::render_base(
        &mut scene,
        luminary::ingest::Rendering::Camera { exposure_ev: 0.0 },
    );
    let truth = luminary::pipeline::encode::to_u16(&scene, luminary::color::OutputSpace::Srgb);
    let truth: Vec<f32> = truth.iter().map(|&v| v as f32 / 65535.0).collect();
    let p = psnr(&zero.data, &truth);
    println!("developed DNG vs its scene, rendered: {p:.1} dB");
    assert!(
        p > 32.0,
        "developed RAW is far from the scene it was made from: {p:.1} dB"
    );

    // Halfway in linear light. Samples clipped by the output gamut in any of the three
    // renders are skipped: clipping is per channel, so everywhere else blending is exact.
    let (half, one) = (decode(&o5), decode(&o1));
    assert!(
        psnr(&one.data, &zero.data) < 35.0,
        "the preset changed too little to test blending"
    );
    let inside = |v: f32| v > 1e-4 && v < 0.9999;
    let mut errs: Vec<f32> = (0..zero.data.len())
        .step_by(7)
        .filter(|&i| inside(zero.data[i]) && inside(one.data[i]) && inside(half.data[i]))
        .map(|i| {
            let (a, b, m) = (
                srgb_to_linear(zero.data[i]),
                srgb_to_linear(one.data[i]),
                srgb_to_linear(half.data[i]),
            );
            (m - (a + b) / 2.0).abs()
        })
        .collect();
    assert!(
        errs.len() > zero.data.len() / 20,
        "too few unclipped samples"
    );
    errs.sort_by(f32::total_cmp);
    let p99 = errs[errs.len() * 99 / 100];
    let mean = errs.iter().sum::<f32>() / errs.len() as f32;
    assert!(
        mean < 5e-5 && p99 < 3e-4,
        "intensity 0.5 is not halfway: mean {mean}, p99 {p99}"
    );
    assert_eq!(fingerprint(&src), before);
    no_hidden_files(&env, &env.work);
}

#[test]
fn tiffs_in_8_and_16_bit_and_embedded_profiles_are_honoured() {
    let f = fixtures();
    let env = Env::new();
    let mut outs = Vec::new();
    for src in [&f.tiff16, &f.tiff8, &f.tiff16_adobe] {
        let src = copy_into(&env, src);
        let r = ok_result(
            &env,
            &[
                src.to_str().unwrap(),
                "--preset",
                "auto",
                "--intensity",
                "0",
                "--format",
                "png",
            ],
        );
        let out = PathBuf::from(r["output"].as_str().unwrap());
        // 16-bit PNG with an ICC profile and the provenance XMP.
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
        let reader = dec.read_info().unwrap();
        assert_eq!(reader.info().bit_depth, png::BitDepth::Sixteen);
        let icc = reader
            .info()
            .icc_profile
            .as_ref()
            .expect("PNG carries an ICC profile");
        assert!(moxcms::ColorProfile::new_from_slice(icc).is_ok());
        assert!(reader
            .info()
            .utf8_text
            .iter()
            .any(|t| t.keyword == "XML:com.adobe.xmp"));
        outs.push(decode(&out));
    }
    // A PNG input too (the photo itself, sRGB).
    let png_src = photos_dir().unwrap().join("flower.png");
    let dir = env.work.to_str().unwrap();
    let r = ok_result(
        &env,
        &[
            png_src.to_str().unwrap(),
            "--preset",
            "auto",
            "--intensity",
            "0",
            "--out-dir",
            dir,
        ],
    );
    let (w, h, _, _) = read_tiff16(Path::new(r["output"].as_str().unwrap()));
    assert_eq!((w, h), (2268, 1512));
    let original = load_photo("flower.png").unwrap();
    let p16 = psnr(&outs[0].data, &original.data);
    let p8 = psnr(&outs[1].data, &original.data);
    let padobe = psnr(&outs[2].data, &original.data);
    println!("16-bit {p16:.1} dB, 8-bit {p8:.1} dB, Adobe RGB with ICC {padobe:.1} dB");
    assert!(
        p16 > 50.0 && p8 > 45.0,
        "rendered input not reproduced at intensity 0"
    );
    // Read as sRGB (profile ignored) the Adobe RGB file would be visibly desaturated.
    assert!(
        padobe > 40.0,
        "the embedded Adobe RGB profile was not honoured ({padobe:.1} dB)"
    );
}

#[test]
fn jpeg_exif_orientation_is_applied_and_outputs_carry_icc_exif_and_xmp() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.jpeg_rot);
    let r = ok_result(
        &env,
        &[
            src.to_str().unwrap(),
            "--preset",
            "auto",
            "--intensity",
            "0",
            "--format",
            "png",
        ],
    );
    let out = PathBuf::from(r["output"].as_str().unwrap());
    let img = decode(&out);
    assert_eq!(
        (img.width, img.height),
        (f.jpeg_upright.width, f.jpeg_upright.height),
        "not turned upright"
    );
    let p = psnr(&img.data, &f.jpeg_upright.data);
    assert!(
        p > 30.0,
        "upright output does not match the upright picture ({p:.1} dB)"
    );
    assert_eq!(
        exif_text(&out, exif::Tag::Make).as_deref(),
        Some("\"Sony\"")
    );
    assert_eq!(
        exif_text(&out, exif::Tag::Orientation).as_deref(),
        Some("row 0 at top and column 0 at left")
    );

    let r = ok_result(
        &env,
        &[
            src.to_str().unwrap(),
            "--preset",
            "bw-classic",
            "--format",
            "jpeg",
            "--color-space",
            "display-p3",
        ],
    );
    let jpg = PathBuf::from(r["output"].as_str().unwrap());
    let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&jpg).unwrap(),
    ))
    .unwrap();
    use image::ImageDecoder;
    let icc = dec
        .icc_profile()
        .unwrap()
        .expect("JPEG carries an ICC profile");
    let prof = moxcms::ColorProfile::new_from_slice(&icc).unwrap();
    let p3 = moxcms::ColorProfile::new_display_p3();
    assert!(
        (prof.red_colorant.x - p3.red_colorant.x).abs() < 1e-3,
        "not the Display P3 profile"
    );
    assert_eq!(
        exif_text(&jpg, exif::Tag::Model).as_deref(),
        Some("\"ILCE-7M3\"")
    );
    let bytes = std::fs::read(&jpg).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("luminary:Preset=\"bw-classic\""));
}

#[test]
fn every_bad_input_gets_a_clear_error_and_the_daemon_keeps_serving() {
    let f = fixtures();
    let env = Env::new();
    env.write_config("[limits]\nmax_pixels = 20_000_000\n");
    let w = &env.work;
    std::fs::write(w.join("empty.dng"), b"").unwrap();
    std::fs::write(
        w.join("notes.dng"),
        b"These are my notes, not a RAW file.\n".repeat(50),
    )
    .unwrap();
    std::fs::write(w.join("drawing.bmp"), b"BM\x00\x00 not really").unwrap();
    let full = std::fs::read(&f.dng_grbg_12).unwrap();
    std::fs::write(w.join("truncated.dng"), &full[..full.len() / 3]).unwrap();
    let big = copy_into(&env, &f.dng_rggb_14);
    let good = copy_into(&env, &f.tiff8);

    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![
                w.join("missing.dng").display().to_string(),
                "--preset".into(),
                "auto".into(),
            ],
            "not_found",
            "missing.dng",
        ),
        (
            vec![
                w.join("empty.dng").display().to_string(),
                "--preset".into(),
                "auto".into(),
            ],
            "corrupt_input",
            "empty",
        ),
        (
            vec![
                w.join("truncated.dng").display().to_string(),
                "--preset".into(),
                "auto".into(),
            ],
            "corrupt_input",
            "truncated.dng",
        ),
        (
            vec![
                w.join("notes.dng").display().to_string(),
                "--preset".into(),
                "auto".into(),
            ],
            "",
            "notes.dng",
        ),
        (
            vec![
                w.join("drawing.bmp").display().to_string(),
                "--preset".into(),
                "auto".into(),
            ],
            "unsupported_format",
            "drawing.bmp",
        ),
        (
            vec![big.display().to_string(), "--preset".into(), "auto".into()],
            "too_large",
            "max_pixels",
        ),
        (
            vec![
                good.display().to_string(),
                "--preset".into(),
                "no-such-preset".into(),
            ],
            "unknown_preset",
            "no-such-preset",
        ),
        (
            vec![
                good.display().to_string(),
                "--preset".into(),
                "auto".into(),
                "--intensity".into(),
                "1.5".into(),
            ],
            "bad_request",
            "intensity",
        ),
        (
            vec![
                good.display().to_string(),
                "--preset".into(),
                "auto".into(),
                "--param".into(),
                "strength=9".into(),
            ],
            "bad_request",
            "strength",
        ),
    ];
    let before: Vec<_> = ["truncated.dng", "notes.dng", "IMG_0042.dng", "scan8.tif"]
        .iter()
        .map(|n| fingerprint(&w.join(n)))
        .collect();
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (res, out) = enhance(&env, &args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} should fail with exit 1"
        );
        assert_eq!(res.len(), 1, "{args:?}");
        let r = &res[0];
        assert_eq!(r["ok"], false);
        if !code.is_empty() {
            assert_eq!(r["code"], code, "{args:?}: {r}");
        } else {
            let c = r["code"].as_str().unwrap();
            assert!(c == "corrupt_input" || c == "unsupported_format", "{r}");
        }
        assert!(
            r["message"].as_str().unwrap().contains(needle),
            "message should name {needle}: {r}"
        );
        let status = env.run(&["status", "--json", "--no-spawn"]);
        assert!(
            status.status.success(),
            "daemon died after {args:?}: {}",
            env.daemon_log()
        );
    }
    // Human output names the file too.
    let out = env.run(&[
        "enhance",
        w.join("empty.dng").to_str().unwrap(),
        "--preset",
        "auto",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.dng"));
    let after: Vec<_> = ["truncated.dng", "notes.dng", "IMG_0042.dng", "scan8.tif"]
        .iter()
        .map(|n| fingerprint(&w.join(n)))
        .collect();
    assert_eq!(before, after, "an input was modified");
    no_hidden_files(&env, w);
    let outputs: Vec<_> = std::fs::read_dir(w)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-luminary-"))
        .collect();
    assert!(outputs.is_empty(), "failed jobs left outputs");
}

#[cfg(unix)]
mod socket {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;

    fn frame(stream: &mut UnixStream, v: &Value) {
        let body = serde_json::to_vec(v).unwrap();
        stream
            .write_all(&(body.len() as u32).to_le_bytes())
            .unwrap();
        stream.write_all(&body).unwrap();
    }

    fn read_event(stream: &mut UnixStream) -> Option<Value> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        stream.read_exact(&mut body).ok()?;
        Some(serde_json::from_slice(&body).unwrap())
    }

    fn connect(env: &Env) -> UnixStream {
        // Start the daemon through the CLI, then speak raw protocol.
        assert!(env.run(&["status", "--json"]).status.success());
        let mut s = UnixStream::connect(env.socket()).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        frame(
            &mut s,
            &serde_json::json!({"type": "hello", "protocol": "1.0", "client": "test"}),
        );
        let welcome = read_event(&mut s).unwrap();
        assert_eq!(welcome["type"], "welcome");
        assert_eq!(welcome["protocol"], "1.0");
        s
    }

    #[test]
    fn socket_is_private_to_the_user() {
        let env = Env::new();
        assert!(env.run(&["status"]).status.success());
        let sock = std::fs::metadata(env.socket())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let dir = std::fs::metadata(env.socket().parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(sock, 0o600, "socket mode {sock:o}");
        assert_eq!(dir, 0o700, "socket folder mode {dir:o}");
        // Another user cannot talk to it (socket mode, folder mode, and the peer-uid check
        // behind them).
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::process::CommandExt;
            let out = env
                .cmd()
                .args(["status", "--no-spawn"])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            assert!(!out.status.success(), "another user reached the daemon");
        }
        // A second daemon for the same socket refuses and names the first.
        let second = env.run(&["serve"]);
        assert!(!second.status.success());
        assert!(String::from_utf8_lossy(&second.stderr).contains("already serves"));
    }

    #[test]
    fn malformed_and_oversized_frames_and_foreign_protocols_are_refused_without_harm() {
        let env = Env::new();
        let mut s = connect(&env);
        let body = b"{this is not json";
        s.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
        s.write_all(body).unwrap();
        let e = read_event(&mut s).unwrap();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request"))
        );
        // The connection survives a malformed request…
        frame(&mut s, &serde_json::json!({"type": "status", "id": "s1"}));
        let d = read_event(&mut s).unwrap();
        assert_eq!(
            (d["type"].as_str(), d["id"].as_str()),
            (Some("done"), Some("s1"))
        );
        // …but not a frame over the limit.
        s.write_all(&(8u32 << 20).to_le_bytes()).unwrap();
        let e = read_event(&mut s).unwrap();
        assert!(e["message"].as_str().unwrap().contains("limit"), "{e}");
        assert!(read_event(&mut s).is_none(), "connection should be closed");

        let mut other = UnixStream::connect(env.socket()).unwrap();
        frame(
            &mut other,
            &serde_json::json!({"type": "hello", "protocol": "2.3", "client": "future-bridge/9"}),
        );
        let e = read_event(&mut other).unwrap();
        assert_eq!(e["code"], "protocol_mismatch");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("2.3") && msg.contains("1.0"), "{msg}");

        assert!(
            env.run(&["status", "--no-spawn"]).status.success(),
            "daemon died"
        );
    }

    #[test]
    fn a_client_that_disconnects_mid_job_cancels_it_and_leaves_nothing() {
        let f = fixtures();
        let env = Env::new();
        let src = copy_into(&env, &f.dng_rggb_14);
        let before = fingerprint(&src);
        let out_dir = env.work.join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let mut s = connect(&env);
        frame(
            &mut s,
            &serde_json::json!({"type": "enhance", "id": "j1", "source": src, "preset": "auto",
                                          "output": {"dir": out_dir}}),
        );
        // Wait until the job is really running, then vanish.
        loop {
            let ev = read_event(&mut s).unwrap();
            if ev["type"] == "progress" && ev["stage"] != "queued" {
                break;
            }
        }
        drop(s);
        // The daemon notices, cancels, and is idle again.
        let mut idle = false;
        for _ in 0..200 {
            let st = env.run(&["status", "--json", "--no-spawn"]);
            let v: Value = serde_json::from_slice(&st.stdout).unwrap();
            if v["jobs_running"] == 0 {
                idle = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(idle, "job still running after its client left");
        let st: Value = serde_json::from_slice(&env.run(&["status", "--json"]).stdout).unwrap();
        assert_eq!(
            st["jobs_failed"], 1,
            "the job should have been cancelled: {st}"
        );
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "cancelled job left files: {left:?}");
        assert_eq!(fingerprint(&src), before);
    }
}

#[test]
fn batches_report_progress_and_results_to_files_and_run_alongside_other_clients() {
    let f = fixtures();
    let env = Env::new();
    let a = copy_into(&env, &f.tiff8);
    let b = copy_into(&env, &f.tiff16);
    let progress = env.work.join("progress.jsonl");
    let result = env.work.join("result.jsonl");
    // A second client enhancing at the same time.
    let other = env
        .cmd()
        .args([
            "enhance",
            "--json",
            a.to_str().unwrap(),
            "--preset",
            "moody",
            "--format",
            "jpeg",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = env.run(&[
        "enhance",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--preset",
        "soft-portrait",
        "--param",
        "strength=1.5",
        "--result-file",
        result.to_str().unwrap(),
        "--progress-file",
        progress.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other_out = other.wait_with_output().unwrap();
    assert!(other_out.status.success());
    assert_eq!(results(&other_out.stdout)[0]["preset"], "moody");

    let lines = results(&std::fs::read(&result).unwrap());
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["ok"], true);
        assert!(Path::new(l["output"].as_str().unwrap()).exists());
    }
    let prog = luminary_tests::daemon::json_lines(&std::fs::read(&progress).unwrap());
    let stages: Vec<&str> = prog.iter().filter_map(|p| p["stage"].as_str()).collect();
    for s in ["ingest", "engine", "encode", "done"] {
        assert!(stages.contains(&s), "no {s} progress in {stages:?}");
    }
    let fractions: Vec<f64> = prog
        .iter()
        .filter(|p| p["index"] == "1")
        .filter_map(|p| p["fraction"].as_f64())
        .collect();
    assert!(
        fractions.windows(2).all(|w| w[1] >= w[0]),
        "progress went backwards: {fractions:?}"
    );
}

#[cfg(unix)]
#[test]
fn the_python_protocol_example_enhances_a_photo() {
    let f = fixtures();
    let env = Env::new();
    let src = copy_into(&env, &f.tiff8);
    assert!(env.run(&["status"]).status.success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/protocol_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(env.socket())
        .arg(&src)
        .arg("warm-film")
        .arg("0.6")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = luminary_tests::daemon::json_lines(&out.stdout);
    assert!(events
        .iter()
        .any(|e| e["type"] == "progress" && e["stage"] == "engine"));
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["intensity"], 0.6);
    assert!(Path::new(done["output"].as_str().unwrap()).exists());
}

/// In Lightroom's stack and darktable's group, the output's name is what the photographer
/// sees: the original's stem stays exactly as written, and `--out` is honoured as given
/// (only a no-clobber `-2` is ever added).
#[test]
fn output_names_keep_the_stem_and_the_out_path_as_written() {
    let f = fixtures();
    let env = Env::new();
    let wedding = env.work.join("Braut & Bräutigam 2024.05.01 (1).dng");
    std::fs::copy(&f.dng_grbg_12, &wedding).unwrap();
    let r = ok_result(&env, &[wedding.to_str().unwrap(), "--preset", "warm-film"]);
    assert_eq!(
        PathBuf::from(r["output"].as_str().unwrap()),
        env.work
            .join("Braut & Bräutigam 2024.05.01 (1)-luminary-warm-film.tif")
    );

    let edit = env.work.join("IMG_0042.edit.v2.tif");
    std::fs::copy(&f.tiff8, &edit).unwrap();
    let r = ok_result(&env, &[edit.to_str().unwrap(), "--preset", "warm-film"]);
    assert_eq!(
        PathBuf::from(r["output"].as_str().unwrap()),
        env.work.join("IMG_0042.edit.v2-luminary-warm-film.tif")
    );

    let out = env.work.join("final 0.5 (v2).tif");
    for expected in ["final 0.5 (v2).tif", "final 0.5 (v2)-2.tif"] {
        let r = ok_result(
            &env,
            &[
                edit.to_str().unwrap(),
                "--preset",
                "warm-film",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(
            PathBuf::from(r["output"].as_str().unwrap()),
            env.work.join(expected)
        );
        assert!(env.work.join(expected).is_file());
    }
    no_hidden_files(&env, &env.work);
}

/// A selection too long for a command line goes through `--files-from`: every listed
/// photo, names as written, Windows line ends and all; a missing list is named.
#[test]
fn files_from_enhances_every_listed_photo() {
    let f = fixtures();
    let env = Env::new();
    let a = env.work.join("Hochzeit 100% & Co ^ (1)! Ω.tif");
    let b = env.work.join("IMG_0042.edit.v2.tif");
    std::fs::copy(&f.tiff8, &a).unwrap();
    std::fs::copy(&f.tiff16, &b).unwrap();
    let list = env.work.join("selection.txt");
    std::fs::write(&list, format!("{}\r\n{}\r\n", a.display(), b.display())).unwrap();
    let (res, out) = enhance(
        &env,
        &[
            "--files-from",
            list.to_str().unwrap(),
            "--preset",
            "auto",
            "--format",
            "jpeg",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(res.len(), 2, "{res:?}");
    // Results come as jobs finish, not in the list's order.
    let mut got: Vec<PathBuf> = res
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r}");
            PathBuf::from(r["output"].as_str().unwrap())
        })
        .collect();
    got.sort();
    let want: Vec<PathBuf> = ["Hochzeit 100% & Co ^ (1)! Ω", "IMG_0042.edit.v2"]
        .iter()
        .map(|stem| env.work.join(format!("{stem}-luminary-auto.jpg")))
        .collect();
    assert_eq!(got, want);
    assert!(want.iter().all(|p| p.is_file()));
    let missing = env.work.join("no such list.txt");
    let (_, out) = enhance(
        &env,
        &[
            "--files-from",
            missing.to_str().unwrap(),
            "--preset",
            "auto",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no such list.txt: cannot read the list of photos"),
        "{err}"
    );
}
