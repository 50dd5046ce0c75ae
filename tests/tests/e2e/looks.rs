//! Issue #18 end to end: a shoot's look learned with one engine call, applied to many photos
//! with none, saved and exported as a `.cube` that an independent implementation
//! (colour-science) applies the same way.

use super::*;

/// A look learned on Gemini costs one call, through the cache and the ledger; applying it
/// calls no engine (there is not even a key); every output says which look it carries;
/// and on the reference photo the look does what the engine's own full edit does.
#[test]
fn one_gemini_call_learns_a_look_that_every_photo_gets_with_no_engine() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let jpeg = copy_to(&lum.env.work, &p.jpeg_rot);
    let look = lum.env.work.join("wedding.look");
    let out = lum.run(&[
        "look",
        "learn",
        dng.to_str().unwrap(),
        "--preset",
        "warm-film",
        "--engine",
        "gemini",
        "--out",
        look.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = results(&out.stdout).pop().expect("a result line")["result"].clone();
    assert_eq!(
        (r["engine_calls"].as_u64(), r["cached"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert!((r["cost"].as_f64().unwrap() - PRICE).abs() < 1e-9, "{r}");
    assert!(r["timings_ms"]["learn"].as_u64().unwrap() < 1000, "{r}");
    assert_eq!(mock.billed(), 1);
    let size = std::fs::metadata(&look).unwrap().len();
    assert!(size < 300_000, "a look is small: {size} bytes");

    // What the file says about itself.
    let shown = lum.json(&["look", "show", look.to_str().unwrap(), "--json"]);
    assert_eq!(shown["info"]["preset"], "warm-film", "{shown}");
    assert_eq!(shown["info"]["engine"], "gemini", "{shown}");
    assert_eq!(shown["lut_size"], 33, "{shown}");
    let reference = &shown["info"]["references"][0];
    assert_eq!(reference["name"], "DSC_0815.dng", "{reference}");
    assert_eq!(
        reference["sha256"].as_str().unwrap().len(),
        64,
        "{reference}"
    );
    assert_eq!(
        reference["cache_key"].as_str().unwrap().len(),
        64,
        "{reference}"
    );

    // Applied with no key at all: no engine can be reached, none is needed.
    lum.set_keys(&[]);
    let (res, out) = lum.enhance(&[
        dng.to_str().unwrap(),
        tiff.to_str().unwrap(),
        jpeg.to_str().unwrap(),
        "--look",
        look.to_str().unwrap(),
        "--format",
        "jpeg",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(res.len(), 3);
    for r in &res {
        assert_eq!(
            (r["ok"].clone(), r["engine"].clone(), r["cost"].as_f64()),
            (json!(true), json!("look"), Some(0.0)),
            "{r}"
        );
        let bytes = std::fs::read(r["output"].as_str().unwrap()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("luminary:Look=\"wedding.look: warm-film on gemini"),
            "the output names its look"
        );
    }
    assert_eq!(mock.billed(), 1, "applying a look called the engine");
    let names: Vec<String> = res
        .iter()
        .map(|r| {
            Path::new(r["output"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        names.contains(&"DSC_0815-luminary-wedding.jpg".to_string()),
        "{names:?}"
    );

    // The engine's own edit of the reference, from the cache (no new call): the look
    // gives the same picture within a global look's precision.
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let full = lum.ok(&[
        dng.to_str().unwrap(),
        "-p",
        "warm-film",
        "--engine",
        "gemini",
        "--format",
        "jpeg",
        "--intensity",
        "1",
    ]);
    assert_eq!(
        (full["cached"].clone(), mock.billed()),
        (json!(true), 1),
        "{full}"
    );
    let a = decode8(Path::new(full["output"].as_str().unwrap()));
    let b = decode8(&lum.env.work.join("DSC_0815-luminary-wedding.jpg"));
    let db = psnr8(&a, &b);
    println!("look vs the engine's own full edit of the reference: {db:.1} dB");
    assert!(
        db > 32.0,
        "the look differs from the engine's edit: {db:.1} dB"
    );

    // The ledger has the one call.
    let usage = lum.json(&["usage", "--json"]);
    assert!(
        (usage["total_cost_usd"].as_f64().unwrap() - PRICE).abs() < 1e-9,
        "{usage}"
    );
}

/// `enhance --same-look`: the first photo is the reference, one engine call for the whole
/// selection, and the summary says so.
#[test]
fn same_look_makes_one_engine_call_for_a_selection_and_says_so() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let jpeg = copy_to(&lum.env.work, &p.jpeg_rot);
    let (res, out) = lum.enhance(&[
        dng.to_str().unwrap(),
        tiff.to_str().unwrap(),
        jpeg.to_str().unwrap(),
        "-p",
        "warm-film",
        "--engine",
        "gemini",
        "--same-look",
        "--format",
        "jpeg",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(res.len(), 3);
    assert!(res.iter().all(|r| r["ok"] == true && r["engine"] == "look"));
    assert_eq!(mock.billed(), 1);
    let summary = json_lines(&out.stdout)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .expect("a summary line");
    assert_eq!(
        (summary["photos"].as_u64(), summary["engine_calls"].as_u64()),
        (Some(3), Some(1)),
        "{summary}"
    );
    assert!(
        Path::new(summary["look"].as_str().unwrap()).is_file(),
        "{summary}"
    );
    // Outputs are named for the preset, as without --same-look.
    assert!(lum.env.work.join("scan16-luminary-warm-film.jpg").is_file());
    // In words, for people.
    let out = lum.run(&[
        "enhance",
        tiff.to_str().unwrap(),
        "-p",
        "warm-film",
        "--engine",
        "gemini",
        "--same-look",
        "--format",
        "jpeg",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("engine call") || text.contains("from the cache"),
        "{text}"
    );
    assert!(text.contains("for 1 photo"), "{text}");
}

/// A look carries colour, not objects; a damaged look file is named and refused, and
/// the daemon stays up.
#[test]
fn content_presets_and_damaged_look_files_are_refused_clearly() {
    let p = photos();
    let lum = Lum::new();
    let tiff = copy_to(&lum.env.work, &p.tiff16);
    let look = lum.env.work.join("sky.look");
    let out = lum.run(&[
        "look",
        "learn",
        tiff.to_str().unwrap(),
        "--preset",
        "virtual-twilight",
        "--out",
        look.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("content preset"),
        "{err}"
    );
    assert!(!look.exists());

    // A good look, then damaged copies of it.
    let out = lum.run(&[
        "look",
        "learn",
        tiff.to_str().unwrap(),
        "--preset",
        "golden-hour",
        "--out",
        look.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&look).unwrap();
    let cut = lum.env.work.join("cut.look");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let future = lum.env.work.join("future.look");
    let mut f = bytes.clone();
    f[8..12].copy_from_slice(&9u32.to_le_bytes());
    std::fs::write(&future, &f).unwrap();
    let photo = lum.env.work.join("not-a-look.look");
    std::fs::copy(&tiff, &photo).unwrap();
    for (file, words) in [
        (&cut, "damaged"),
        (&future, "update Luminary"),
        (&photo, "not a Luminary look"),
    ] {
        let r = lum.failed(&[tiff.to_str().unwrap(), "--look", file.to_str().unwrap()]);
        let m = r["message"].as_str().unwrap();
        assert!(
            m.contains(file.to_str().unwrap()) && m.contains(words),
            "{m}"
        );
    }
    // --look with an engine is a mistake, said before anything runs.
    let out = lum.run(&[
        "enhance",
        tiff.to_str().unwrap(),
        "--look",
        look.to_str().unwrap(),
        "--engine",
        "gemini",
    ]);
    assert!(!out.status.success());
    let status = lum.json(&["status", "--json"]);
    assert!(
        status["pid"].as_u64().is_some(),
        "the daemon is up: {status}"
    );
}

/// The exported `.cube`, applied by colour-science's `LUT3D` (trilinear, like Luminary),
/// gives what Luminary's own application of the look gives: within 1/255 on average and
/// 3/255 at the 99th percentile, on three real photos.
#[test]
fn the_exported_cube_applies_the_same_in_colour_science() {
    let lum = Lum::new();
    let dir = luminary_tests::photos_dir().unwrap();
    let names = ["flower.png", "blossom.png", "portrait.png"];
    let copies: Vec<PathBuf> = names
        .iter()
        .map(|n| copy_to(&lum.env.work, &dir.join(n)))
        .collect();
    let look = lum.env.work.join("film.look");
    let out = lum.run(&[
        "look",
        "learn",
        copies[0].to_str().unwrap(),
        "--preset",
        "kodachrome-64",
        "--out",
        look.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cube = lum.env.work.join("film.cube");
    let out = lum.run(&[
        "look",
        "export",
        look.to_str().unwrap(),
        "--cube",
        cube.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for src in &copies {
        let r = lum.ok(&[
            src.to_str().unwrap(),
            "--look",
            look.to_str().unwrap(),
            "--format",
            "png",
        ]);
        let ours = image::open(r["output"].as_str().unwrap())
            .unwrap()
            .into_rgb16();
        let (w, h) = ours.dimensions();
        let raw_src = lum.env.work.join("src.rgb");
        let raw_ours = lum.env.work.join("ours.rgb");
        std::fs::write(&raw_src, image::open(src).unwrap().into_rgb8().as_raw()).unwrap();
        let ours8: Vec<u8> = ours
            .as_raw()
            .iter()
            .map(|&v| ((v as f32) / 257.0).round() as u8)
            .collect();
        std::fs::write(&raw_ours, &ours8).unwrap();
        let script = format!(
            "import warnings; warnings.filterwarnings('ignore')\n\
             import colour, numpy as np, json\n\
             w, h = {w}, {h}\n\
             src = np.fromfile(r'{}', dtype=np.uint8).reshape(h, w, 3) / 255.0\n\
             ours = np.fromfile(r'{}', dtype=np.uint8).reshape(h, w, 3).astype(np.float64)\n\
             lut = colour.read_LUT(r'{}')\n\
             theirs = np.round(np.clip(lut.apply(src), 0, 1) * 255.0)\n\
             d = np.abs(theirs - ours)\n\
             print(json.dumps({{'mean': float(d.mean()), 'p99': float(np.percentile(d, 99)), 'changed': float(np.abs(ours - src * 255).mean())}}))\n",
            raw_src.display(),
            raw_ours.display(),
            cube.display()
        );
        let out = Command::new(python())
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "colour-science (scripts/python-env installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        println!(
            "{}: cube in colour-science vs Luminary, 8-bit: {v}",
            src.display()
        );
        // The look must change the picture, or agreeing proves nothing.
        assert!(v["changed"].as_f64().unwrap() > 3.0, "{v}");
        assert!(v["mean"].as_f64().unwrap() <= 1.0, "{}: {v}", src.display());
        assert!(v["p99"].as_f64().unwrap() <= 3.0, "{}: {v}", src.display());
    }
}
