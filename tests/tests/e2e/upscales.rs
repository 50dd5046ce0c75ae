//! Issue #21 point 4, upscaling: the full-resolution photo goes out in overlapping tiles
//! (said before the first tile, with the cost), each tile is a cached, ledgered call, the
//! answers are cross-faded without seams and streamed to a 16-bit TIFF (BigTIFF past 4 GB)
//! or PNG, a cancel stops the remaining tiles and keeps the paid ones.

use super::*;

fn fal_table(mock: &MockServer) -> String {
    format!(
        "[engines.fal]\nbase_url = \"{}\"\nconnect_timeout_s = 2\nrequest_timeout_s = 20\n",
        mock.base_url
    )
}

/// A real photo as a 16-bit TIFF of `w`×`h`.
fn photo_tif(dir: &Path, name: &str, w: usize, h: usize) -> PathBuf {
    let path = dir.join(name);
    let photo = load_photo("flower.png").unwrap().mirror_tile(w, h);
    write_tiff(&path, &photo, true, None).unwrap();
    path
}

fn area_down(img: &image::ImageBuffer<image::Rgb<u16>, Vec<u16>>, f: u32) -> Vec<f64> {
    let (w, h) = (img.width() / f, img.height() / f);
    let mut out = vec![0f64; (w * h * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut s = 0f64;
                for dy in 0..f {
                    for dx in 0..f {
                        s += img.get_pixel(x * f + dx, y * f + dy)[c] as f64;
                    }
                }
                out[(y * w + x) as usize * 3 + c] = s / (f * f) as f64 / 65535.0;
            }
        }
    }
    out
}

fn psnr(a: &[f64], b: &[f64]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

#[test]
fn an_upscale_goes_out_in_tiles_said_first_and_comes_back_seamless() {
    let mock = MockServer::start(MockKind::Fal, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&fal_table(&mock));
    lum.set_keys(&[("FAL_KEY", TEST_KEY)]);
    let src = photo_tif(&lum.env.work, "print.tif", 1500, 1000);
    let s = src.to_str().unwrap();
    let tiles = luminary::pipeline::upscale::tile_count(1500, 1000);
    assert_eq!(tiles, 12);

    // The estimate says the whole photo goes out, in how many tiles, for how much.
    let est = lum.json(&["estimate", s, "--preset", "upscale", "--json"]);
    assert_eq!(
        (
            est["engine"].as_str(),
            est["calls"].as_u64(),
            est["sends_full_photo"].as_bool()
        ),
        (Some("fal"), Some(tiles as u64), Some(true)),
        "{est}"
    );
    assert!((est["cost_usd"].as_f64().unwrap() - 0.002 * tiles as f64).abs() < 1e-9);
    // JPEG is refused before anything is sent; so is a preview.
    let jpeg = lum.failed(&[s, "--preset", "upscale", "--format", "jpeg"]);
    assert!(
        jpeg["message"].as_str().unwrap().contains("--format tiff"),
        "{jpeg}"
    );
    assert_eq!(mock.requests().len(), 0);
    let preview = lum.run(&["preview", s, "--preset", "upscale", "--json"]);
    assert!(!preview.status.success());
    assert!(
        String::from_utf8_lossy(&preview.stdout).contains("no preview")
            || String::from_utf8_lossy(&preview.stderr).contains("no preview")
    );

    // The run: the notice comes first on standard error, then one call per tile.
    let out = lum.run(&["enhance", s, "--preset", "upscale"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("sends the whole full-resolution photo") && err.contains("12 tile(s)"),
        "{err}"
    );
    let submits = mock.requests_to("POST", "/fal-ai/esrgan");
    assert_eq!(submits.len(), tiles);
    for sub in &submits {
        let b = sub.json.as_ref().unwrap();
        assert_eq!(
            (b["scale"].as_u64(), b["model"].as_str()),
            (Some(2), Some("RealESRGAN_x2plus")),
            "{b}"
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(b["image_url"].as_str().unwrap().split_once(',').unwrap().1)
            .unwrap();
        let t = image::load_from_memory(&png).unwrap();
        assert!(
            t.width() <= 512 && t.height() <= 512,
            "tile {}×{}",
            t.width(),
            t.height()
        );
    }
    let output = lum.env.work.join("print-luminary-upscale.tif");
    let big = image::open(&output).unwrap();
    let image::DynamicImage::ImageRgb16(big) = big else {
        panic!("not 16-bit RGB: {:?}", big.color())
    };
    assert_eq!(big.dimensions(), (3000, 2000));
    // Scaled back down it is the original, and it is seamless: against one Catmull-Rom
    // upscale of the whole photo (what the mock does per tile) the tile borders vanish.
    let source = image::open(&src).unwrap().into_rgb16();
    let orig: Vec<f64> = source
        .as_raw()
        .iter()
        .map(|&v| v as f64 / 65535.0)
        .collect();
    let back = psnr(&area_down(&big, 2), &orig);
    let whole = image::imageops::resize(
        &image::open(&src).unwrap().into_rgb8(),
        3000,
        2000,
        image::imageops::FilterType::CatmullRom,
    );
    let got: Vec<f64> = big.as_raw().iter().map(|&v| v as f64 / 65535.0).collect();
    let ideal: Vec<f64> = whole.as_raw().iter().map(|&v| v as f64 / 255.0).collect();
    let seamless = psnr(&got, &ideal);
    println!("upscale 2×: scaled back {back:.2} dB against the original; {seamless:.2} dB against one whole-picture upscale");
    assert!(back >= 38.0, "{back:.2} dB");
    assert!(seamless >= 40.0, "seams: {seamless:.2} dB");

    // Every tile is in the ledger with its price; the same upscale again is all cached.
    let usage = lum.json(&["usage", "--json"]);
    let row = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["engine"] == "fal")
        .cloned()
        .unwrap_or_else(|| panic!("{usage}"));
    assert_eq!(row["calls"].as_u64(), Some(tiles as u64), "{usage}");
    let again = lum.ok(&[s, "--preset", "upscale", "--format", "png"]);
    assert_eq!(
        (again["cached"].clone(), again["cost"].as_f64()),
        (json!(true), Some(0.0)),
        "{again}"
    );
    assert_eq!(mock.requests_to("POST", "/fal-ai/esrgan").len(), tiles);
    let png = image::open(again["output"].as_str().unwrap()).unwrap();
    assert!(matches!(png, image::DynamicImage::ImageRgb16(_)) && png.width() == 3000);

    // BigTIFF (chosen past 4 GB; forced here in a debug build) reads back as the same picture.
    lum.stop_daemon();
    lum.set_keys(&[("FAL_KEY", TEST_KEY), ("LUMINARY_TEST_BIGTIFF", "1")]);
    let bigtiff = lum.ok(&[s, "--preset", "upscale"]);
    let path = PathBuf::from(bigtiff["output"].as_str().unwrap());
    let head = std::fs::read(&path).unwrap();
    assert_eq!(&head[..4], b"II\x2b\x00", "not a BigTIFF");
    let mut dec = tiff::decoder::Decoder::new(std::io::Cursor::new(head)).unwrap();
    assert_eq!(dec.dimensions().unwrap(), (3000, 2000));
    let tiff::decoder::DecodingResult::U16(px) = dec.read_image().unwrap() else {
        panic!("not 16-bit")
    };
    assert_eq!(px, *big.as_raw(), "the BigTIFF holds another picture");
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// Cancel stops the remaining tiles and leaves nothing; the tiles already paid for are
/// answered from the cache when the job runs again.
#[test]
fn cancelling_an_upscale_stops_its_tiles_and_keeps_the_paid_ones() {
    let mock = MockServer::start(MockKind::Fal, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&fal_table(&mock));
    lum.set_keys(&[("FAL_KEY", TEST_KEY)]);
    let src = photo_tif(&lum.env.work, "print.tif", 1500, 1000);
    let out = lum.env.work.join("out");
    std::fs::create_dir(&out).unwrap();
    let mut s = lum.connect();
    frame(
        &mut s,
        &json!({"type": "enhance", "id": "u", "source": src, "preset": "upscale",
                "params": {"scale": "4x"}, "output": {"dir": out}}),
    );
    loop {
        let ev = lum.event(&mut s).expect("job events");
        assert!(ev["type"] != "error" && ev["type"] != "done", "{ev}");
        if ev["stage"]
            .as_str()
            // Tiles go out two at a time: when the fifth starts, four are answered.
            .is_some_and(|st| st.starts_with("engine · tile 5 of 12"))
        {
            break;
        }
    }
    frame(&mut s, &json!({"type": "cancel", "id": "c", "job": "u"}));
    let end = loop {
        let ev = lum.event(&mut s).expect("an answer to the cancel");
        if ev["id"] == "u" && (ev["type"] == "error" || ev["type"] == "done") {
            break ev;
        }
    };
    assert_eq!(end["code"], "cancelled", "{end}");
    let sent = mock.requests_to("POST", "/fal-ai/esrgan").len();
    assert!(
        (4..12).contains(&sent),
        "{sent} tiles sent before the cancel"
    );
    assert!(all_files(&out).is_empty(), "{:?}", all_files(&out));
    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "upscale",
        "--param",
        "scale=4x",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    // The four answered tiles come from the cache; every other tile is sent (and paid) once.
    let new_calls = mock.requests_to("POST", "/fal-ai/esrgan").len() - sent;
    assert!(new_calls <= 8, "{new_calls} tiles sent again");
    assert!(
        (r["cost"].as_f64().unwrap() - new_calls as f64 * 0.002).abs() < 1e-9,
        "{r} after {new_calls} new calls"
    );
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(6000), Some(4000))
    );
}

/// 4× of a 24 MP photo — 384 MP, 2.3 GB of 16-bit TIFF — with the daemon's memory bounded.
#[test]
fn a_4x_upscale_of_24_mp_streams_to_disk_in_bounded_memory() {
    let mock = MockServer::start(MockKind::Fal, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&fal_table(&mock));
    lum.set_keys(&[("FAL_KEY", TEST_KEY)]);
    let src = photo_tif(&lum.env.work, "poster.tif", 6000, 4000);
    let pid = lum.daemon_pid();
    let t = Instant::now();
    let r = lum.ok(&[
        src.to_str().unwrap(),
        "--preset",
        "upscale",
        "--param",
        "scale=4x",
    ]);
    let secs = t.elapsed().as_secs_f64();
    let peak = peak_rss_kb(pid);
    let out = PathBuf::from(r["output"].as_str().unwrap());
    let bytes = std::fs::metadata(&out).unwrap().len();
    println!(
        "4× of 24 MP: {}×{}, {:.2} GB in {secs:.1} s, daemon peak {:.0} MB",
        r["width"],
        r["height"],
        bytes as f64 / 1e9,
        peak as f64 / 1024.0
    );
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(24000), Some(16000))
    );
    assert!(bytes > 2_300_000_000, "{bytes}");
    assert!(peak < 1_500_000, "daemon peaked at {} MB", peak / 1024);
    // A few rows, read back with the tiff crate, carry the photo.
    let mut dec =
        tiff::decoder::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
            .unwrap();
    assert_eq!(dec.dimensions().unwrap(), (24000, 16000));
    assert_eq!(dec.colortype().unwrap(), tiff::ColorType::RGB(16));
    std::fs::remove_file(&out).unwrap();
}
