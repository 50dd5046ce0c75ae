//! Issue #21, free-text edits: `--prompt` is an ad-hoc preset on an AI engine, with the
//! guards appended, cached by its exact text, recorded in the output, refused clearly when
//! empty, too long for the engine, or sent to the offline engine.

use super::*;

/// The text parts of a Gemini request, as the mock received them.
fn sent_text(req: &luminary_engines::mock::Recorded) -> String {
    let body = req.json.as_ref().expect("a JSON request");
    let mut text = String::new();
    for content in body["contents"].as_array().expect("contents") {
        for part in content["parts"].as_array().expect("parts") {
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    text
}

#[test]
fn a_free_text_edit_is_guarded_cached_by_its_words_and_recorded_in_the_output() {
    let p = photos();
    let mock = MockServer::start(MockKind::Gemini, vec![]);
    let lum = Lum::new();
    lum.env.write_config(&gemini_table(&mock));
    lum.set_keys(&[("GEMINI_API_KEY", TEST_KEY)]);
    let dng = copy_to(&lum.env.work, &p.dng6);
    let d = dng.to_str().unwrap();
    let words = "Make the petals a deep purple";
    let r = lum.ok(&[
        d, "--prompt", words, "--engine", "gemini", "--format", "jpeg",
    ]);
    assert_eq!(
        (r["preset"].clone(), r["cached"].clone()),
        (json!("prompt"), json!(false)),
        "{r}"
    );
    assert!((r["cost"].as_f64().unwrap() - PRICE).abs() < 1e-9, "{r}");
    assert_eq!(mock.billed(), 1);
    let sent = sent_text(&gemini_posts(&mock)[0]);
    assert!(sent.starts_with(words), "{sent}");
    assert!(
        sent.contains(luminary::pipeline::prompt::GUARD),
        "no guard: {sent}"
    );
    let out = std::fs::read(r["output"].as_str().unwrap()).unwrap();
    assert!(
        String::from_utf8_lossy(&out).contains(&format!("luminary:Prompt=\"{words}\"")),
        "the prompt is not in the output's XMP"
    );
    assert!(
        r["output"]
            .as_str()
            .unwrap()
            .ends_with("DSC_0815-luminary-prompt.jpg"),
        "{r}"
    );
    // The same words at another intensity: the cache; other words: a new call.
    let again = lum.ok(&[
        d,
        "--prompt",
        words,
        "--engine",
        "gemini",
        "--intensity",
        "0.5",
        "--format",
        "jpeg",
    ]);
    assert_eq!(
        (again["cached"].clone(), mock.billed()),
        (json!(true), 1),
        "{again}"
    );
    let other = lum.ok(&[
        d,
        "--prompt",
        "Make the petals orange",
        "--engine",
        "gemini",
        "--format",
        "jpeg",
    ]);
    assert_eq!(
        (other["cached"].clone(), mock.billed()),
        (json!(false), 2),
        "{other}"
    );

    // Refusals, each before anything is sent or decoded.
    let empty = lum.failed(&[d, "--prompt", "   ", "--engine", "gemini"]);
    assert!(
        empty["message"]
            .as_str()
            .unwrap()
            .contains("the prompt is empty"),
        "{empty}"
    );
    let long = "a".repeat(2_001);
    let too_long = lum.failed(&[d, "--prompt", &long, "--engine", "replicate"]);
    let m = too_long["message"].as_str().unwrap();
    assert!(
        m.contains("2001 characters") && m.contains("replicate takes at most 2000"),
        "{m}"
    );
    let offline = lum.failed(&[d, "--prompt", words, "--engine", "local"]);
    assert!(
        offline["message"]
            .as_str()
            .unwrap()
            .contains("needs an AI engine"),
        "{offline}"
    );
    assert_eq!(mock.billed(), 2);
    // The estimate knows a free-text edit like any preset: the same words are cached.
    let est = lum.json(&[
        "estimate",
        d,
        "--preset",
        "prompt",
        "--param",
        &format!("prompt={words}"),
        "--engine",
        "gemini",
        "--json",
    ]);
    assert_eq!(est["items"][0]["cached"], true, "{est}");
}
