//! `luminary plugins check FILE`: what a plugin author runs before shipping.
//!
//! Loads the library in a runner exactly as the daemon would, reports every descriptor
//! problem, then runs each valid preset (defaults filled from its schema) through the real
//! pipeline on a real photograph, and prints the time its request and its engine work take
//! per megapixel.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Map};

use crate::config::Config;
use crate::error::Cancel;
use crate::paths::Paths;
use crate::pipeline::{run_job, EnhanceRequest, OutputRequest};
use crate::plugins::Registry;

const CHECK_PHOTO: &[u8] = include_bytes!("../assets/check-photo.png");

/// Runs the check; exit code 0 when the plugin loaded and every preset ran.
pub fn run(
    paths: &Paths,
    file: &Path,
    photo: Option<&Path>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let config = Config::load(&paths.config_file)?;
    let file = std::path::absolute(file)?;
    let registry = Registry::from_files(
        std::slice::from_ref(&file),
        &crate::plugins::runner::RunnerLimits::from_config(&config.plugins),
    );
    let report = registry.reports().into_iter().next().context("no report")?;
    let work = tempfile::tempdir()?;
    let photo = match photo {
        Some(p) => std::path::absolute(p)?,
        None => {
            let p = work.path().join("check-photo.png");
            std::fs::write(&p, CHECK_PHOTO)?;
            p
        }
    };
    let mut ok = report.state == "loaded" && report.problems.is_empty();
    let mut runs = Vec::new();
    for preset in registry.presets() {
        let id = preset.descriptor.id.clone();
        if preset.descriptor.ai_only {
            // Nothing to run offline: its request is built (the plugin's code runs, its
            // parameters' defaults are valid), as a job on an AI engine would build it.
            let built = registry.preset(&id).and_then(|(p, plugin)| {
                let params = crate::plugins::resolve_params(&p.descriptor, &Map::new())?;
                plugin.build_request(&id, &params, &Default::default())
            });
            match built {
                Ok(_) => runs.push(json!({"preset": id, "ok": true, "ai_only": true})),
                Err(e) => {
                    ok = false;
                    runs.push(json!({"preset": id, "ok": false, "code": e.code.as_str(), "message": e.message}));
                }
            }
            continue;
        }
        let req = EnhanceRequest {
            source: photo.clone(),
            preset: id.clone(),
            look: None,
            intensity: Some(1.0),
            params: Map::new(),
            engine: Some("local".into()),
            output: OutputRequest {
                dir: Some(work.path().to_path_buf()),
                ..Default::default()
            },
        };
        match run_job(
            &req,
            &config,
            &registry,
            &crate::engine::remote::Engines::without_storage(&config),
            &|_, _| {},
            &crate::engine::stay_on_cpu,
            &Cancel::default(),
        ) {
            Ok(r) => {
                let mp = r.width as f64 * r.height as f64 / 1e6;
                let ms = (r.timings_ms["preset"] + r.timings_ms["engine"]) as f64;
                runs.push(json!({"preset": id, "ok": true, "ms_per_megapixel": ms / mp}));
                let _ = std::fs::remove_file(&r.output);
            }
            Err(e) => {
                ok = false;
                runs.push(json!({"preset": id, "ok": false, "code": e.code.as_str(), "message": e.message}));
            }
        }
    }
    if json_out {
        println!(
            "{}",
            json!({"ok": ok, "plugin": report, "photo": photo, "presets": runs})
        );
    } else {
        let name = report
            .info
            .as_ref()
            .map(|i| format!("{} {} ({})", i.name, i.version, i.id))
            .unwrap_or_default();
        println!("{}: {} {name}", file.display(), report.state);
        for p in &report.problems {
            println!("  problem: {p}");
        }
        for r in &runs {
            match r["ok"].as_bool() {
                Some(true) if r["ai_only"] == true => println!(
                    "  {:<24} ok    request built (AI engines only)",
                    r["preset"].as_str().unwrap_or("")
                ),
                Some(true) => println!(
                    "  {:<24} ok    {:>8.1} ms/MP",
                    r["preset"].as_str().unwrap_or(""),
                    r["ms_per_megapixel"].as_f64().unwrap_or(0.0)
                ),
                _ => println!(
                    "  {:<24} FAIL  {}",
                    r["preset"].as_str().unwrap_or(""),
                    r["message"].as_str().unwrap_or("")
                ),
            }
        }
        println!(
            "{}",
            if ok {
                "plugin OK"
            } else {
                "plugin has problems"
            }
        );
    }
    Ok(if ok { 0 } else { 1 })
}
