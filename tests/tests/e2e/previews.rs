//! #16: live previews on the offline engine — what a new preset or a new intensity costs,
//! and the same errors as `enhance` for bad input. (The paid-engine side — one engine call
//! shared by the preview and the full-resolution job — is in `engines.rs`.)

use std::path::Path;

use luminary_tests::daemon::{json_lines, Env};
use serde_json::Value;

use super::{copy_into, fixtures};

fn preview(env: &Env, args: &[&str]) -> (Value, std::process::Output) {
    let mut all = vec!["preview", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let line = json_lines(&out.stdout).pop().unwrap_or(Value::Null);
    (line, out)
}

#[test]
fn local_previews_reuse_the_photo_and_the_edit_and_fail_like_enhance() {
    let f = fixtures();
    let env = Env::new();
    let dng = copy_into(&env, &f.dng_grbg_12);
    let d = dng.to_str().unwrap();
    let outs = tempfile::tempdir().unwrap();
    let out = |n: &str| outs.path().join(n).to_string_lossy().into_owned();
    let before: Vec<_> = std::fs::read_dir(&env.work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();

    let (first, o) = preview(
        &env,
        &[d, "--preset", "vivid-landscape", "--out", &out("a.jpg")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(first["reused"], "none", "{first}");
    assert_eq!(
        (first["engine"].as_str(), first["cost"].as_f64()),
        (Some("local"), Some(0.0))
    );
    // 4256×2848 at a long edge of 1024.
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(1024), Some(685)),
        "{first}"
    );
    let img = image::open(out("a.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (1024, 685));
    // Another preset on the same photo: no decode.
    let (second, _) = preview(&env, &[d, "--preset", "bw-classic", "--out", &out("b.jpg")]);
    assert_eq!(second["reused"], "base", "{second}");
    // Another intensity of the same edit: only a blend.
    let (third, _) = preview(
        &env,
        &[
            d,
            "--preset",
            "bw-classic",
            "--intensity",
            "0.2",
            "--out",
            &out("c.png"),
        ],
    );
    assert_eq!(third["reused"], "edit", "{third}");
    let png = image::open(out("c.png")).unwrap();
    assert_eq!(png.width(), 1024);
    // A larger preview of it is edited at its own size (the photo is still kept).
    let (big, _) = preview(
        &env,
        &[
            d,
            "--preset",
            "bw-classic",
            "--size",
            "2048",
            "--out",
            &out("d.jpg"),
        ],
    );
    assert_eq!(
        (big["reused"].as_str(), big["width"].as_u64()),
        (Some("base"), Some(2048)),
        "{big}"
    );
    println!(
        "preview timings (ms): first {} (decode), new preset {}, new intensity {}",
        first["timings_ms"]["total"], second["timings_ms"]["total"], third["timings_ms"]["total"]
    );
    // Nothing appeared beside the original.
    let after: Vec<_> = std::fs::read_dir(&env.work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);

    // Bad input: the codes `enhance` gives.
    let missing = env.work.join("gone.dng");
    for (args, code) in [
        (
            vec![missing.to_str().unwrap(), "--preset", "auto"],
            "not_found",
        ),
        (vec![d, "--preset", "no-such-preset"], "unknown_preset"),
        (vec![d, "--preset", "auto", "--size", "4096"], "bad_request"),
        (
            vec![d, "--preset", "auto", "--intensity", "1.5"],
            "bad_request",
        ),
        (
            vec![d, "--preset", "auto", "--engine", "gemini"],
            "engine_auth",
        ),
    ] {
        let (v, o) = preview(&env, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {v}");
        assert_eq!(v["code"], code, "{args:?}: {v}");
        assert_eq!(v["ok"], false);
    }
    let corrupt = env.work.join("broken.dng");
    std::fs::write(&corrupt, b"II*\0not really a tiff").unwrap();
    let (v, _) = preview(&env, &[corrupt.to_str().unwrap(), "--preset", "auto"]);
    assert_eq!(v["code"], "corrupt_input", "{v}");
    assert!(Path::new(d).is_file());
}
