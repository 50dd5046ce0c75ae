//! DNG tags that change the picture, on DNGs made from a real photograph (exact ground
//! truth): a lens-shading GainMap in OpcodeList2 is undone, and BaselineExposure brightens
//! the base as the file says. Real cameras' files are in `cameras.rs`.

use luminary::color::OutputSpace;
use luminary::ingest::Rendering;
use luminary_tests::daemon::Env;
use luminary_tests::*;

use super::{decode, ok_result};

/// The scene of `photo` rendered as a camera-like base with `exposure_ev`, sRGB 0..1.
fn rendered_truth(photo: &Photo, exposure_ev: f32) -> Vec<f32> {
    let mut scene =
        luminary::color::to_working(photo.width, photo.height, photo.data.clone(), None).unwrap();
    luminary::pipeline::render::render_base(&mut scene, Rendering::Camera { exposure_ev });
    luminary::pipeline::encode::to_u16(&scene, OutputSpace::Srgb)
        .iter()
        .map(|&v| v as f32 / 65535.0)
        .collect()
}

fn base_of(env: &Env, photo: &Photo, name: &str, extras: &DngExtras) -> Photo {
    let path = env.work.join(name);
    let spec = RawSpec {
        cfa: Cfa::Rggb,
        bits: 14,
        black: 512,
        orientation: 1,
    };
    write_dng_with(&path, photo, &spec, extras).unwrap();
    let r = ok_result(
        env,
        &[
            path.to_str().unwrap(),
            "--preset",
            "auto",
            "--intensity",
            "0",
        ],
    );
    decode(std::path::Path::new(r["output"].as_str().unwrap()))
}

#[test]
fn a_lens_shading_gain_map_in_opcode_list_2_is_undone() {
    let env = Env::new();
    let photo = load_photo("flower.png").unwrap();
    let truth = rendered_truth(&photo, 0.0);
    let plain = base_of(&env, &photo, "plain.dng", &DngExtras::default());
    let shaded = base_of(
        &env,
        &photo,
        "shaded.dng",
        &DngExtras {
            lens_shading: Some(0.5),
            ..Default::default()
        },
    );
    let (p_plain, p_shaded) = (psnr(&plain.data, &truth), psnr(&shaded.data, &truth));
    println!("base vs truth: plain {p_plain:.1} dB, shaded with its GainMap {p_shaded:.1} dB");
    // The shading took half the light at the corners: without the map the corners would be
    // a stop darker. With it, the result is as good as the file without shading.
    assert!(
        p_shaded > 32.0 && p_shaded > p_plain - 1.5,
        "{p_shaded:.1} vs {p_plain:.1} dB"
    );
    let w = photo.width;
    let corner = |img: &Photo| -> f32 {
        (0..40)
            .flat_map(|y| (0..40).map(move |x| (y, x)))
            .map(|(y, x)| img.data[(y * w + x) * 3 + 1])
            .sum::<f32>()
    };
    let (c_shaded, c_truth) = (
        corner(&shaded),
        corner(&Photo {
            data: truth.clone(),
            ..photo.clone()
        }),
    );
    assert!(
        (c_shaded / c_truth - 1.0).abs() < 0.03,
        "corner {c_shaded} vs {c_truth}"
    );
}

#[test]
fn baseline_exposure_brightens_the_base_as_the_dng_says() {
    let env = Env::new();
    let photo = load_photo("blossom.png").unwrap();
    // The photo's scene a stop darker, as a camera exposing for highlights records it; the
    // DNG says +1 EV.
    let darker = Photo {
        data: photo
            .data
            .iter()
            .map(|&v| {
                let l = if v <= 0.04045 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                } * 0.5;
                if l <= 0.0031308 {
                    12.92 * l
                } else {
                    1.055 * l.powf(1.0 / 2.4) - 0.055
                }
            })
            .collect(),
        ..photo.clone()
    };
    let base = base_of(
        &env,
        &darker,
        "under.dng",
        &DngExtras {
            baseline_exposure: Some(1.0),
            ..Default::default()
        },
    );
    let at_plus_one = psnr(&base.data, &rendered_truth(&darker, 1.0));
    let at_zero = psnr(&base.data, &rendered_truth(&darker, 0.0));
    println!("base vs the scene rendered at +1 EV: {at_plus_one:.1} dB, at 0 EV: {at_zero:.1} dB");
    // (Sensor noise, doubled by the +1 EV, is what keeps this under the 32 dB of a
    // normally exposed file.)
    assert!(at_plus_one > 28.0, "{at_plus_one:.1} dB");
    assert!(
        at_zero < at_plus_one - 6.0,
        "BaselineExposure made no difference: {at_zero:.1} dB"
    );
}

/// A batch's next photo of the same size develops into the last job's picture buffer
/// (no fresh pages to zero): its result must be exactly what a daemon that never ran a
/// job gives, with no trace of the photo before, for a RAW and for a rendered photo.
#[test]
fn a_picture_buffer_kept_from_the_last_job_gives_the_same_result() {
    let f = super::fixtures();
    let env = Env::new();
    let portrait = load_photo("portrait.png").unwrap().mirror_tile(4256, 2848);
    let spec = RawSpec {
        cfa: Cfa::Grbg,
        bits: 12,
        black: 256,
        orientation: 1,
    };
    let second = env.work.join("portrait.dng");
    write_dng(&second, &portrait, &spec).unwrap();
    // The first call starts the daemon, with debug logging (which says when a buffer is
    // reused).
    let run = |env: &Env, path: &std::path::Path| {
        let out = env
            .cmd()
            .env("LUMINARY_LOG", "debug")
            .args(["enhance", "--json", path.to_str().unwrap()])
            .args(["--preset", "vivid-landscape"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = luminary_tests::daemon::results(&out.stdout);
        std::path::PathBuf::from(r[0]["output"].as_str().unwrap())
    };
    let tiff = env.work.join("portrait.tif");
    write_tiff(&tiff, &portrait, true, None).unwrap();
    // The flower DNG first (same size, other pixels), then the portrait as a DNG and as a
    // 16-bit TIFF (converted into the kept buffer), one right after the other (an idle
    // daemon drops what it kept).
    let first = run(&env, &super::copy_into(&env, &f.dng_grbg_12));
    let reused = run(&env, &second);
    let reused_tiff = run(&env, &tiff);
    let (first, reused, reused_tiff) = (decode(&first), decode(&reused), decode(&reused_tiff));
    let log_count = |env: &Env| env.daemon_log().matches("kept from the last job").count();
    assert_eq!(
        log_count(&env),
        2,
        "the second and third photos should go into the one before's picture buffer:\n{}",
        env.daemon_log()
    );
    let fresh_env = Env::new();
    let fresh = decode(&run(&fresh_env, &super::copy_into(&fresh_env, &second)));
    assert_eq!((reused.width, reused.height), (fresh.width, fresh.height));
    assert!(
        reused.data == fresh.data,
        "a kept picture buffer changed the result"
    );
    assert!(
        first.data != fresh.data,
        "the two photos must differ for this to test anything"
    );
    let never_ran = Env::new();
    let fresh = decode(&run(&never_ran, &super::copy_into(&never_ran, &tiff)));
    assert_eq!(log_count(&fresh_env) + log_count(&never_ran), 0);
    let reused = reused_tiff;
    assert!(
        reused.data == fresh.data,
        "a kept picture buffer changed a TIFF's result"
    );
}
