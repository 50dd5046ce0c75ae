//! `luminary bench FILE --preview`: live previews end to end through the socket, on a
//! daemon of the bench's own (private folders, its own socket), with the offline engine:
//!
//! * the first preview of the photo (decode, render, edit);
//! * a preview with another preset (the photo's bases kept: no decode) — target ≤ 150 ms;
//! * a preview at another intensity (the edit kept: one blend and a small JPEG) —
//!   target ≤ 50 ms.
//!
//! Each is the wall time a client sees, from sending the request to reading `done`.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::client::Client;
use crate::paths::Paths;
use crate::pipeline::live::PreviewRequest;
use crate::protocol::{Event, Request};

/// One request's wall time through the socket, ms, and what the daemon reused.
fn timed(client: &mut Client, n: &mut u64, job: PreviewRequest) -> anyhow::Result<(f64, String)> {
    *n += 1;
    let id = n.to_string();
    let t = Instant::now();
    client.send(&Request::Preview {
        id: id.clone(),
        job,
    })?;
    loop {
        match client.next_event()? {
            Event::Done { id: got, result } if got == id => {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                return Ok((ms, result["reused"].as_str().unwrap_or("?").to_string()));
            }
            Event::Error {
                id: got, message, ..
            } if got.as_deref() == Some(id.as_str()) || got.is_none() => {
                anyhow::bail!("preview failed: {message}")
            }
            _ => {}
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the preview benchmark on `file` (`runs` timed requests per kind).
pub fn run(file: &Path, runs: usize) -> anyhow::Result<i32> {
    let source = std::path::absolute(file)?;
    let home = super::home::private_home()?;
    let socket = home.path().join("runtime/bench.sock");
    let paths = Paths::resolve(None, Some(socket.to_string_lossy().into_owned()))?;
    let mut client = Client::connect(&paths, true).context("starting the bench daemon")?;
    let mut n = 0;
    let job = |preset: &str, intensity: f64, size: u32| PreviewRequest {
        source: source.clone(),
        preset: preset.into(),
        intensity: Some(intensity),
        engine: Some("local".into()),
        size: Some(size),
        ..Default::default()
    };
    let presets = [
        "auto",
        "warm-film",
        "bw-classic",
        "vivid-landscape",
        "portra-400",
        "moody",
    ];
    let (cold, _) = timed(&mut client, &mut n, job("auto", 0.8, 1024))?;
    let mut new_preset = Vec::new();
    let mut new_intensity = Vec::new();
    let mut new_intensity_2048 = Vec::new();
    for i in 0..runs.max(1) {
        let preset = presets[1 + i % (presets.len() - 1)];
        // A preset not yet seen at this point of the loop: the base is kept, the edit is new.
        let (ms, reused) = timed(&mut client, &mut n, job(preset, 0.8, 1024))?;
        if reused == "base" {
            new_preset.push(ms);
        }
        let intensity = 0.1 + 0.8 * (i as f64 + 0.5) / runs.max(1) as f64;
        let (ms, reused) = timed(&mut client, &mut n, job(preset, intensity, 1024))?;
        anyhow::ensure!(
            reused == "edit",
            "a new intensity re-ran more than the blend ({reused})"
        );
        new_intensity.push(ms);
        let (ms, _) = timed(&mut client, &mut n, job(preset, 1.0 - intensity, 2048))?;
        new_intensity_2048.push(ms);
    }
    let _ = client.send(&Request::Stop { id: "stop".into() });
    let mark = |ms: f64, target: f64| if ms <= target { "ok" } else { "OVER" };
    println!(
        "live previews of {} through the socket (offline engine):",
        file.display()
    );
    println!("  first preview, 1024 px (decode + render + edit)      {cold:>8.1} ms");
    if new_preset.is_empty() {
        println!("  another preset: every run found its edit kept (raise --runs)");
    } else {
        let m = median(new_preset.clone());
        println!(
            "  another preset, 1024 px (photo kept), median of {}  {m:>8.1} ms  target ≤ 150: {}",
            new_preset.len(),
            mark(m, 150.0)
        );
    }
    let m = median(new_intensity.clone());
    println!(
        "  another intensity, 1024 px (edit kept), median of {} {m:>8.1} ms  target ≤ 50: {}",
        new_intensity.len(),
        mark(m, 50.0)
    );
    let m2 = median(new_intensity_2048);
    println!("  another intensity, 2048 px (edit kept)               {m2:>8.1} ms");
    Ok(0)
}
