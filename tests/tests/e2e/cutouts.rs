//! Issue #21 point 3, cut-outs: `remove-background` sends the preview to a segmentation
//! model (BiRefNet on fal by default, a Replicate BiRefNet as the alternative), refines the
//! matte on the full-resolution photo and writes the photo with straight alpha — a 16-bit
//! RGBA TIFF or PNG; JPEG is refused.

use super::*;
use luminary::matte::score::score;

/// A studio photo whose true matte is known: a subject (from one real photo) with hair
/// strands, pasted onto another real photo, 3000×2000, as a 16-bit TIFF.
pub(crate) struct Studio {
    _dir: tempfile::TempDir,
    pub(crate) tif: PathBuf,
    pub(crate) truth: Vec<f32>,
    w: usize,
    h: usize,
}

pub(crate) fn studio() -> &'static Studio {
    static S: OnceLock<Studio> = OnceLock::new();
    S.get_or_init(|| {
        let (w, h) = (3000, 2000);
        let fg = load_photo("portrait.png").unwrap().mirror_tile(w, h);
        let bg = load_photo("blossom.png").unwrap().mirror_tile(w, h);
        let truth = luminary::matte::bench::truth(w, h, 200);
        let mut photo = bg.clone();
        for (i, a) in truth.iter().enumerate() {
            for k in 0..3 {
                let j = i * 3 + k;
                photo.data[j] += a * (fg.data[j] - photo.data[j]);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let tif = dir.path().join("studio.tif");
        write_tiff(&tif, &photo, true, None).unwrap();
        Studio {
            _dir: dir,
            tif,
            truth,
            w,
            h,
        }
    })
}

pub(crate) fn truth_image(s: &Studio) -> image::GrayImage {
    image::GrayImage::from_fn(s.w as u32, s.h as u32, |x, y| {
        image::Luma([(s.truth[y as usize * s.w + x as usize] * 255.0).round() as u8])
    })
}

/// An RGBA output as (RGB 0..1, alpha 0..1), failing unless it is 16-bit RGBA.
fn rgba16(path: &Path) -> (Vec<f32>, Vec<f32>) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let image::DynamicImage::ImageRgba16(img) = img else {
        panic!("{} is {:?}, not 16-bit RGBA", path.display(), img.color());
    };
    let mut rgb = Vec::with_capacity(img.len() / 4 * 3);
    let mut alpha = Vec::with_capacity(img.len() / 4);
    for p in img.pixels() {
        rgb.extend(p.0[..3].iter().map(|&v| v as f32 / 65535.0));
        alpha.push(p.0[3] as f32 / 65535.0);
    }
    (rgb, alpha)
}

#[test]
fn a_cutout_is_the_photo_with_its_refined_matte_as_straight_alpha() {
    let s = studio();
    let mock = MockServer::start(MockKind::Fal, vec![]);
    mock.set_matte(truth_image(s));
    let lum = Lum::new();
    lum.env.write_config(&format!(
        "[engines.fal]\nbase_url = \"{}\"\nconnect_timeout_s = 2\nrequest_timeout_s = 20\n",
        mock.base_url
    ));
    let src = copy_to(&lum.env.work, &s.tif);
    let sp = src.to_str().unwrap();

    // JPEG cannot hold it: refused before anything is decoded or sent. So is a job with no
    // AI engine set up.
    lum.set_keys(&[("FAL_KEY", TEST_KEY)]);
    let jpeg = lum.failed(&[sp, "--preset", "remove-background", "--format", "jpeg"]);
    assert!(
        jpeg["message"]
            .as_str()
            .unwrap()
            .contains("JPEG cannot hold"),
        "{jpeg}"
    );
    assert_eq!(mock.requests().len(), 0);

    // With FAL_KEY set, the preset's engine and model are chosen without being named.
    let r = lum.ok(&[sp, "--preset", "remove-background"]);
    assert_eq!(
        (r["engine"].as_str(), r["model"].as_str()),
        (Some("fal"), Some("fal-ai/birefnet/v2")),
        "{r}"
    );
    assert!((r["cost"].as_f64().unwrap() - 0.005).abs() < 1e-9, "{r}");
    let submits = mock.requests_to("POST", "/fal-ai/birefnet/v2");
    assert_eq!(submits.len(), 1, "{:?}", mock.requests());
    let body = submits[0].json.as_ref().unwrap();
    assert!(body["image_url"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(
        (body["output_mask"].clone(), body["output_format"].clone()),
        (json!(true), json!("png")),
        "{body}"
    );
    assert!(
        body.get("prompt").is_none(),
        "a segmentation model takes no prompt: {body}"
    );

    let out = PathBuf::from(r["output"].as_str().unwrap());
    assert!(out
        .to_str()
        .unwrap()
        .ends_with("studio-luminary-remove-background.tif"));
    let (rgb, alpha) = rgba16(&out);
    let (w, h) = (s.w, s.h);
    assert_eq!(alpha.len(), w * h);
    let refined = score(&alpha, &s.truth, w, h, 2);

    // Straight alpha: the colour is the photo's own everywhere, transparent pixels too.
    let source = image::open(&src).unwrap().into_rgb16();
    let (mut diff, mut bright, mut n) = (0f64, 0f64, 0usize);
    for (i, a) in alpha.iter().enumerate() {
        if *a == 0.0 {
            for k in 0..3 {
                diff += (rgb[i * 3 + k] - source.as_raw()[i * 3 + k] as f32 / 65535.0).abs() as f64;
                bright += rgb[i * 3 + k] as f64;
            }
            n += 3;
        }
    }
    assert!(n > w * h, "no fully transparent background: {n}");
    let (diff, bright) = (diff / n as f64, bright / n as f64);
    assert!(
        diff < 1.0 / 255.0,
        "the colour under alpha is not the photo's: {diff}"
    );
    assert!(
        bright > 0.2,
        "transparent pixels are black (premultiplied?): {bright}"
    );

    // Only upscaled (refinement off): the same paid answer, from the cache, softer edges.
    let plain = lum.ok(&[
        sp,
        "--preset",
        "remove-background",
        "--param",
        "refine_edges=false",
    ]);
    assert_eq!(plain["cached"], true, "{plain}");
    assert_eq!(mock.requests_to("POST", "/fal-ai/birefnet/v2").len(), 1);
    let (_, up_alpha) = rgba16(Path::new(plain["output"].as_str().unwrap()));
    let upscaled = score(&up_alpha, &s.truth, w, h, 2);
    println!(
        "cut-out at 6 MP (200 strands): refined IoU {:.4}, boundary F {:.4}, edge error {:.4}; \
         upscaled {:.4} / {:.4} / {:.4}",
        refined.iou,
        refined.boundary_f,
        refined.edge_error,
        upscaled.iou,
        upscaled.boundary_f,
        upscaled.edge_error
    );
    assert!(refined.iou >= 0.97, "{refined:?}");
    assert!(
        refined.iou >= upscaled.iou - 0.002,
        "{refined:?} vs {upscaled:?}"
    );
    assert!(
        refined.boundary_f >= upscaled.boundary_f + 0.3,
        "the refinement does not follow the photo's edges: {refined:?} vs {upscaled:?}"
    );

    // A 16-bit PNG with alpha too; at intensity 0.5 the background is half transparent.
    let png = lum.ok(&[
        sp,
        "--preset",
        "remove-background",
        "--format",
        "png",
        "--intensity",
        "0.5",
    ]);
    let (_, half) = rgba16(Path::new(png["output"].as_str().unwrap()));
    let bg = half
        .iter()
        .zip(&alpha)
        .filter(|(_, a)| **a == 0.0)
        .map(|(h, _)| *h as f64);
    let (sum, count) = bg.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    assert!(
        (sum / count as f64 - 0.5).abs() < 0.01,
        "{}",
        sum / count as f64
    );

    // The output's provenance names the model.
    let bytes = std::fs::read(&out).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("fal-ai/birefnet/v2"));
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// The Replicate alternative: a community model run by version, answering an RGBA cut-out
/// (whose alpha is the matte) instead of a mask.
#[test]
fn a_cutout_on_replicate_reads_the_models_rgba_answer() {
    let s = studio();
    let mock = MockServer::start(MockKind::Replicate, vec![]);
    mock.set_matte(truth_image(s));
    let lum = Lum::new();
    lum.env.write_config(&format!(
        "[engines.replicate]\nbase_url = \"{}\"\nconnect_timeout_s = 2\nrequest_timeout_s = 20\n",
        mock.base_url
    ));
    lum.set_keys(&[("REPLICATE_API_TOKEN", TEST_KEY)]);
    let src = copy_to(&lum.env.work, &s.tif);
    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "remove-background",
        "--engine",
        "replicate",
        "--format",
        "png",
    ]);
    assert!(
        r["model"]
            .as_str()
            .unwrap()
            .starts_with("men1scus/birefnet:"),
        "{r}"
    );
    let creates = mock.requests_to("POST", "/v1/predictions");
    assert_eq!(creates.len(), 1, "{:?}", mock.requests());
    let body = creates[0].json.as_ref().unwrap();
    assert_eq!(
        body["version"],
        "f74986db0355b58403ed20963af156525e2891ea3c2d499bfbfb2a28cd87c5d7"
    );
    assert!(body["input"]["image"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png"));
    assert!(body["input"].get("prompt").is_none(), "{body}");
    let (_, alpha) = rgba16(Path::new(r["output"].as_str().unwrap()));
    let sc = score(&alpha, &s.truth, s.w, s.h, 2);
    assert!(sc.iou >= 0.97 && sc.boundary_f >= 0.6, "{sc:?}");
}
