//! Issue #21 point 1, virtual staging: an AI-only content preset that runs on Replicate's
//! Qwen image edit by default (a model of its own on the shared engine, configurable per
//! preset), whose furniture reaches the full-resolution photo inside the change mask while
//! the room keeps its own pixels everywhere else.

use super::*;
use luminary_engines::mock::furniture_at;

fn replicate_table(mock: &MockServer, extra: &str) -> String {
    format!(
        "[engines.replicate]\nbase_url = \"{}\"\nprice_per_image = {PRICE}\nconnect_timeout_s = 2\n\
         request_timeout_s = 20\ntotal_timeout_s = 60\nmax_attempts = 3\n{extra}",
        mock.base_url
    )
}

/// Where a pixel is, relative to the furniture the mock pasted: `Some(true)` well inside
/// it, `Some(false)` well away from it (the room), `None` near an edge (the feather).
fn region(x: u32, y: u32, w: u32, h: u32, margin: f32) -> Option<bool> {
    let (fx, fy) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
    let (mx, my) = (margin, margin * w as f32 / h as f32);
    let mut inside = 0;
    let mut n = 0;
    for dy in [-my, 0.0, my] {
        for dx in [-mx, 0.0, mx] {
            n += 1;
            inside += furniture_at(fx + dx, fy + dy).is_some() as usize;
        }
    }
    match inside {
        0 => Some(false),
        i if i == n => Some(true),
        _ => None,
    }
}

fn psnr_where(a: &RgbImage, b: &RgbImage, keep: impl Fn(u32, u32) -> bool) -> (f64, usize) {
    let (mut sum, mut n) = (0f64, 0usize);
    for (x, y, pa) in a.enumerate_pixels() {
        if keep(x, y) {
            let pb = b.get_pixel(x, y);
            for c in 0..3 {
                sum += (pa[c] as f64 - pb[c] as f64).powi(2);
            }
            n += 3;
        }
    }
    let mse = sum / n.max(1) as f64;
    (10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10(), n / 3)
}

#[test]
fn staging_furnishes_the_room_on_qwen_and_keeps_every_other_pixel_of_the_photo() {
    let p = photos();
    let mock = MockServer::start(MockKind::Replicate, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&replicate_table(&mock, ""));
    let dng = copy_to(&lum.env.work, &p.dng6);
    let d = dng.to_str().unwrap();

    // No AI engine set up: refused before anything is decoded or sent, saying what to do.
    let refused = lum.failed(&[d, "--preset", "virtual-staging"]);
    let msg = refused["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("needs an AI engine") && msg.contains("--engine replicate"),
        "{refused}"
    );
    let offline = lum.failed(&[d, "--preset", "virtual-staging", "--engine", "local"]);
    assert_eq!(offline["code"], "bad_request", "{offline}");
    assert_eq!(
        visible_files(&lum.env.work),
        vec!["DSC_0815.dng".to_string()]
    );
    assert_eq!(mock.requests().len(), 0);

    // With a key, the preset's engine and model are chosen without being named.
    lum.stop_daemon();
    lum.set_keys(&[("REPLICATE_API_TOKEN", TEST_KEY)]);
    let args = [
        d,
        "--preset",
        "virtual-staging",
        "--param",
        "room=bedroom",
        "--param",
        "style=scandinavian",
        "--format",
        "tiff",
    ];
    let est = lum.json(&["estimate", d, "--preset", "virtual-staging", "--json"]);
    assert_eq!(
        (est["engine"].as_str(), est["calls"].as_u64()),
        (Some("replicate"), Some(1)),
        "{est}"
    );
    let r = lum.ok(&args);
    assert_eq!(
        (r["engine"].as_str(), r["model"].as_str()),
        (Some("replicate"), Some("qwen/qwen-image-edit")),
        "{r}"
    );
    // Qwen's list price, not the configured price of the engine's own model.
    assert!((r["cost"].as_f64().unwrap() - 0.03).abs() < 1e-9, "{r}");
    let creates = mock.requests_to("POST", "/v1/models/*");
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].path,
        "/v1/models/qwen/qwen-image-edit/predictions"
    );
    let input = &creates[0].json.as_ref().unwrap()["input"];
    let prompt = input["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("Virtually stage this bedroom") && prompt.contains("Scandinavian"),
        "{prompt}"
    );
    assert!(input["image"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    let out_path = PathBuf::from(r["output"].as_str().unwrap());
    let xmp = String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned();
    assert!(
        xmp.contains("qwen/qwen-image-edit"),
        "the model is not in the provenance"
    );

    // The room as Luminary renders it: the same job at intensity 0 (the cached answer).
    let mut at0 = args.to_vec();
    at0.extend(["--intensity", "0"]);
    let r0 = lum.ok(&at0);
    assert_eq!(r0["cached"], true, "{r0}");
    assert_eq!(mock.requests_to("POST", "/v1/models/*").len(), 1);
    let base = decode8(Path::new(r0["output"].as_str().unwrap()));
    let staged = decode8(&out_path);
    let (w, h) = staged.dimensions();
    assert_eq!((w, h), (3008, 2000), "staging is not at full resolution");

    // What a perfect staging gives: the furniture drawn at full resolution into the room.
    let mut ideal = base.clone();
    for (x, y, px) in ideal.enumerate_pixels_mut() {
        if let Some(c) = furniture_at((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32) {
            px.0 = c;
        }
    }
    let margin = 0.02;
    let (room_db, room_n) = psnr_where(&staged, &base, |x, y| {
        region(x, y, w, h, margin) == Some(false)
    });
    let (furniture_db, furniture_n) = psnr_where(&staged, &ideal, |x, y| {
        region(x, y, w, h, margin) == Some(true)
    });
    let (edge_db, _) = psnr_where(&staged, &ideal, |x, y| region(x, y, w, h, margin).is_none());
    let (bicubic_room_db, _) = {
        let answer = image::load_from_memory(&mock_answer(&mock))
            .unwrap()
            .to_rgb8();
        let up = image::imageops::resize(&answer, w, h, image::imageops::FilterType::CatmullRom);
        psnr_where(&up, &base, |x, y| region(x, y, w, h, margin) == Some(false))
    };
    println!(
        "virtual staging at 6 MP: room (unchanged, {room_n} px) {room_db:.2} dB against the \
         original (bicubic answer {bicubic_room_db:.2} dB); furniture ({furniture_n} px) \
         {furniture_db:.2} dB against the engine's; edges {edge_db:.2} dB against the ideal"
    );
    assert!(
        room_db >= 38.0,
        "the room lost its own pixels: {room_db:.2} dB"
    );
    assert!(
        room_db >= bicubic_room_db + 8.0,
        "no better than the upscaled answer"
    );
    assert!(
        furniture_db >= 35.0,
        "the furniture does not follow the engine: {furniture_db:.2} dB"
    );
    assert!(
        edge_db >= 25.0,
        "a seam or ghost along the furniture: {edge_db:.2} dB"
    );

    // Another model for this preset only, by configuration: a new call on that model.
    lum.stop_daemon();
    lum.env.write_config(&replicate_table(
        &mock,
        "[engines.replicate.preset_models]\nvirtual-staging = \"black-forest-labs/flux-kontext-max\"\n",
    ));
    let kontext = lum.ok(&args);
    assert_eq!(
        kontext["model"], "black-forest-labs/flux-kontext-max",
        "{kontext}"
    );
    assert_eq!(
        kontext["cached"], false,
        "another model's answer came from the cache"
    );
    let creates = mock.requests_to("POST", "/v1/models/*");
    assert_eq!(
        creates[1].path,
        "/v1/models/black-forest-labs/flux-kontext-max/predictions"
    );
    assert!(creates[1].json.as_ref().unwrap()["input"]["input_image"].is_string());

    // Gemini works too, on its own model, with the same staging instruction.
    let gemini = MockServer::start(MockKind::Gemini, vec![]);
    lum.stop_daemon();
    lum.env.write_config(&format!(
        "{}{}",
        replicate_table(&mock, ""),
        gemini_table(&gemini)
    ));
    lum.set_keys(&[
        ("REPLICATE_API_TOKEN", TEST_KEY),
        ("GEMINI_API_KEY", TEST_KEY),
    ]);
    let mut on_gemini = args.to_vec();
    on_gemini.extend(["--engine", "gemini"]);
    let g = lum.ok(&on_gemini);
    assert_eq!(
        (g["engine"].as_str(), g["model"].as_str()),
        (Some("gemini"), Some("gemini-2.5-flash-image")),
        "{g}"
    );
    let posts = gemini_posts(&gemini);
    assert_eq!(posts.len(), 1);
    assert!(String::from_utf8_lossy(&posts[0].body).contains("Virtually stage this bedroom"));
    lum.assert_no_secret(&[TEST_KEY], &[]);
}

/// The PNG the mock answered the first prediction with.
fn mock_answer(mock: &MockServer) -> Vec<u8> {
    let sent = &mock.requests_to("POST", "/v1/models/*")[0];
    let uri = sent.json.as_ref().unwrap()["input"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        uri.split_once(',').unwrap().1,
    )
    .unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    let mut out = Vec::new();
    luminary_engines::mock::stage_room(&img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}
