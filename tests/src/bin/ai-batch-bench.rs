//! A shoot through an AI engine that answers in a fixed time (issue #20 point 5):
//! `ai-batch-bench [--photos 50] [--latency-s 2] [--concurrency 4,8] [--mp 12]`.
//!
//! Runs the real `luminary enhance` (built next to this binary) on distinct photos cut from
//! a real one, against the Gemini mock of `luminary-engines` answering each call after the
//! latency, once per `[engines.gemini] concurrency` given, each on a fresh daemon with the
//! default `max_jobs`. Prints the batch's wall time beside the engine's floor
//! (photos / concurrency × latency) and the local work (every job's time outside the
//! engine, spread over the cores), and how long the engine had fewer calls in flight than
//! it allows while photos were still waiting for it: the time local work made it wait.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use luminary_engines::mock::{Fault, MockKind, MockServer, TEST_KEY};
use luminary_tests::load_photo;

fn main() -> anyhow::Result<()> {
    let (mut photos, mut latency_s, mut concurrencies, mut mp) =
        (50usize, 2.0f64, vec![4, 8], 12.0f64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--photos" => photos = v.parse()?,
            "--latency-s" => latency_s = v.parse()?,
            "--mp" => mp = v.parse()?,
            "--concurrency" => {
                concurrencies = v.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            _ => bail!("unknown option {flag}"),
        }
    }
    let exe = std::env::current_exe()?;
    let luminary = exe.with_file_name(format!("luminary{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        luminary.exists(),
        "{} is missing: build the workspace first",
        luminary.display()
    );
    let work = tempfile::tempdir()?;
    let shots = make_photos(work.path(), photos, mp)?;
    let latency = Duration::from_secs_f64(latency_s);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{photos} distinct {mp:.0} MP JPEGs through the gemini mock answering in {latency_s} s, \
         default max_jobs, {cores} cores:"
    );
    for c in concurrencies {
        run(&luminary, work.path(), &shots, latency, c, cores)?;
    }
    Ok(())
}

/// Distinct photos (each tile of the real photo a few pixels wider than the last, so every
/// preview, and so every engine call, differs), as camera JPEGs.
fn make_photos(dir: &Path, n: usize, mp: f64) -> anyhow::Result<Vec<PathBuf>> {
    let flower = load_photo("flower.png")?;
    let h = ((mp * 1e6 * 3.0 / 4.0).sqrt()) as usize;
    let w = h * 4 / 3;
    (0..n)
        .map(|i| {
            let p = flower.mirror_tile(w + 8 * i, h);
            let img = image::RgbImage::from_raw(p.width as u32, p.height as u32, p.to_u8())
                .context("photo buffer")?;
            let path = dir.join(format!("IMG_{:04}.jpg", 1000 + i));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 92).encode_image(&img)?;
            Ok(path)
        })
        .collect()
}

fn run(
    luminary: &Path,
    work: &Path,
    shots: &[PathBuf],
    latency: Duration,
    concurrency: usize,
    cores: usize,
) -> anyhow::Result<()> {
    let n = shots.len();
    let mock = MockServer::start(MockKind::Gemini, vec![Fault::Latency(latency); n]);
    let home = work.join(format!("home-{concurrency}"));
    let out = home.join("out");
    std::fs::create_dir_all(&out)?;
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[engines.gemini]\nbase_url = \"{}\"\nconcurrency = {concurrency}\n\
             request_timeout_s = 60\ntotal_timeout_s = 600\n",
            mock.base_url
        ),
    )?;
    let cmd = || {
        let mut c = Command::new(luminary);
        for (k, d) in [
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_RUNTIME_DIR", "runtime"),
        ] {
            let dir = home.join(d);
            std::fs::create_dir_all(&dir).ok();
            c.env(k, dir);
        }
        for v in [
            "OPENAI_API_KEY",
            "FAL_KEY",
            "REPLICATE_API_TOKEN",
            "LUMINARY_SOCKET",
        ] {
            c.env_remove(v);
        }
        c.env("LUMINARY_CONFIG", &config)
            .env("GEMINI_API_KEY", TEST_KEY);
        c
    };
    let t = Instant::now();
    let o = cmd()
        .args([
            "enhance",
            "--json",
            "--preset",
            "warm-film",
            "--engine",
            "gemini",
            "--format",
            "jpeg",
            "--out-dir",
        ])
        .arg(&out)
        .args(shots)
        .output()?;
    let wall = t.elapsed();
    let _ = cmd().arg("stop").output();
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["type"] == "result")
        .collect();
    let ok = results.iter().filter(|r| r["ok"] == true).count();
    if ok != n {
        bail!(
            "{ok} of {n} photos came back:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every job's time outside the engine, spread over the cores.
    let local_ms: u64 = results
        .iter()
        .map(|r| {
            let t = &r["timings_ms"];
            t["total"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(t["engine"].as_u64().unwrap_or(0))
        })
        .sum();
    let local = Duration::from_millis(local_ms / cores as u64);
    // Where a job's local time goes (medians per stage).
    let mut stages = String::new();
    if let Some(t) = results[0]["timings_ms"].as_object() {
        for stage in t
            .keys()
            .filter(|k| !["total", "engine"].contains(&k.as_str()))
        {
            let mut v: Vec<u64> = results
                .iter()
                .filter_map(|r| r["timings_ms"][stage].as_u64())
                .collect();
            v.sort_unstable();
            if let Some(m) = v.get(v.len() / 2).filter(|&&m| m > 0) {
                stages += &format!(" {stage} {m}");
            }
        }
    }
    let floor = latency.mul_f64(n as f64 / concurrency as f64);
    // Calls in flight over time, from the submits' arrival (each answered `latency` later).
    let submits: Vec<Instant> = mock
        .requests_to("POST", "/v1beta/models/*")
        .iter()
        .map(|r| r.at)
        .collect();
    let starved = starved_while_waiting(&submits, latency, concurrency);
    println!(
        "  concurrency {concurrency}: {:>5.1} s for {n} photos; engine floor {:.1} s, local work {:.1} s \
         ({:.0} ms per photo on {cores} cores); at most {} calls at once; the engine had fewer \
         than {concurrency} calls while photos waited for {:.1} s\n    a job's local stages, median ms:{stages}",
        wall.as_secs_f64(),
        floor.as_secs_f64(),
        local.as_secs_f64(),
        local_ms as f64 / n as f64,
        mock.max_in_flight(),
        starved.as_secs_f64(),
    );
    Ok(())
}

/// How long, between the first and the last submit (photos still waiting to go out),
/// fewer than `limit` calls were in flight.
fn starved_while_waiting(submits: &[Instant], latency: Duration, limit: usize) -> Duration {
    let (Some(&first), Some(&last)) = (submits.iter().min(), submits.iter().max()) else {
        return Duration::ZERO;
    };
    let step = Duration::from_millis(5);
    let mut starved = Duration::ZERO;
    let mut t = first;
    while t < last {
        let in_flight = submits
            .iter()
            .filter(|&&s| s <= t && t < s + latency)
            .count();
        if in_flight < limit {
            starved += step;
        }
        t += step;
    }
    starved
}
