//! `luminary bench FILE`: per-stage throughput of a whole job, in this process, against
//! LibRaw's develop of the same file measured in the same run.
//!
//! Figures are ratios against a reference timed on the same machine at the same moment,
//! so they mean something on a laptop and on a loaded CI box alike.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context};

use crate::cli::BenchArgs;
use crate::config::Config;
use crate::error::Cancel;
use crate::paths::Paths;
use crate::pipeline::{run_job, EnhanceRequest, OutputRequest};
use crate::plugins::{search_path, Registry};

/// LibRaw through rawpy: AHD demosaic, 16-bit output, the usual "develop" of a RAW.
const LIBRAW_SCRIPT: &str = r#"
import sys, time, rawpy
path, runs = sys.argv[1], int(sys.argv[2])
best = 1e9
for _ in range(runs + 1):
    t = time.perf_counter()
    with rawpy.imread(path) as raw:
        rgb = raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, output_bps=16)
    best = min(best, time.perf_counter() - t)
print(best * 1000.0)
"#;

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs the benchmark and prints a table.
pub fn run(paths: &Paths, args: BenchArgs) -> anyhow::Result<i32> {
    let config = Config::load(&paths.config_file)?;
    let registry = Registry::discover(
        &search_path(&paths.data_dir, &config.daemon.plugin_dirs),
        &config.plugins.limits(),
    );
    let out = tempfile::tempdir()?;
    let req = EnhanceRequest {
        source: std::path::absolute(&args.file)?,
        preset: args.preset.clone(),
        intensity: Some(0.8),
        params: Default::default(),
        engine: Some("local".into()),
        output: OutputRequest {
            dir: Some(out.path().to_path_buf()),
            ..Default::default()
        },
    };
    let mut runs: Vec<BTreeMap<String, u64>> = Vec::new();
    let mut mp = 0.0;
    for i in 0..=args.runs.max(1) {
        let r = run_job(
            &req,
            &config,
            &registry,
            &crate::engine::remote::Engines::without_storage(&config),
            &|_, _| {},
            &Cancel::default(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::remove_file(&r.output).ok();
        mp = r.width as f64 * r.height as f64 / 1e6;
        if i > 0 {
            runs.push(r.timings_ms);
        }
    }
    let stages: Vec<String> = runs[0].keys().cloned().collect();
    let med: BTreeMap<String, u64> = stages
        .iter()
        .map(|s| (s.clone(), median(runs.iter().map(|r| r[s]).collect())))
        .collect();
    println!(
        "{} — {:.1} MP, preset {}, median of {} runs",
        args.file.display(),
        mp,
        args.preset,
        runs.len()
    );
    println!("{:<10} {:>9} {:>10}", "stage", "ms", "MP/s");
    for s in [
        "ingest", "render", "preview", "preset", "engine", "transfer", "blend", "encode", "total",
    ] {
        if let Some(ms) = med.get(s) {
            let rate = if *ms > 0 {
                format!("{:.1}", mp / (*ms as f64 / 1000.0))
            } else {
                "-".into()
            };
            println!("{s:<10} {ms:>9} {rate:>10}");
        }
    }
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (RSS high-water mark of this process): {} MB = {:.0} bytes per pixel",
            kb / 1024,
            kb as f64 * 1024.0 / (mp * 1e6)
        );
    }
    isolation_cost(&registry, &config, &req, mp, med["total"] as f64)?;
    if args.python.is_empty() {
        return Ok(0);
    }
    let output = Command::new(&args.python)
        .args(["-c", LIBRAW_SCRIPT])
        .arg(&args.file)
        .arg(args.runs.max(1).to_string())
        .output()
        .with_context(|| format!("cannot run {}", args.python))?;
    if !output.status.success() {
        bail!(
            "LibRaw reference failed (is rawpy installed?): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let libraw_ms: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("LibRaw reference output")?;
    let total = med["total"] as f64;
    let without_engine = total - med["engine"] as f64;
    println!("LibRaw develop (rawpy, AHD, 16-bit): {libraw_ms:.0} ms");
    println!(
        "ratio whole local job / LibRaw develop:        {:.2}",
        total / libraw_ms
    );
    println!(
        "ratio job without engine / LibRaw develop:     {:.2}",
        without_engine / libraw_ms
    );
    Ok(0)
}

/// What running the plugin in its own process costs on this job: the same plugin calls
/// made in this process (as if the plugin were loaded into the daemon) against the
/// runner round trips the pipeline makes, pixels through shared memory included.
fn isolation_cost(
    registry: &Registry,
    config: &Config,
    req: &EnhanceRequest,
    mp: f64,
    job_ms: f64,
) -> anyhow::Result<()> {
    use luminary_plugin_api::host::LoadedPlugin;
    use std::time::Instant;
    let (preset, handle) = registry
        .preset(&req.preset)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let d = &preset.descriptor;
    let params = crate::plugins::resolve_params(d, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut base = crate::pipeline::ingest::ingest(&req.source, &config.limits)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .image;
    crate::pipeline::render::render_base(&mut base);
    let preview = crate::pipeline::preview::downscale(&base, config.engine.preview_size as usize);
    let facts = crate::pipeline::preview::facts(&preview, base.width, base.height, false);
    let in_process = LoadedPlugin::open(&handle.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cancel = Cancel::default();

    let t = Instant::now();
    in_process
        .build_request(&d.id, &params, &facts)
        .map_err(|e| anyhow::anyhow!(e))?;
    let build_in = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    handle
        .build_request(&d.id, &params, &facts)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let build_iso = t.elapsed().as_secs_f64() * 1000.0;
    let (mut pix_in, mut pix_iso) = (0.0, 0.0);
    if d.pixel_function {
        let mut data = base.data.clone();
        let t = Instant::now();
        in_process
            .process_pixels(
                &d.id,
                &params,
                &facts,
                &mut data,
                base.width as u32,
                base.height as u32,
            )
            .map_err(|e| anyhow::anyhow!(e))?;
        pix_in = t.elapsed().as_secs_f64() * 1000.0;
        drop(data);
        let t = Instant::now();
        let mut shm = crate::plugins::shm::SharedPixels::create(base.data.len())?;
        shm.as_mut_slice().copy_from_slice(&base.data);
        handle
            .process_pixels(
                &d.id,
                &params,
                &facts,
                &shm,
                base.width,
                base.height,
                &cancel,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        base.data.copy_from_slice(shm.as_slice());
        pix_iso = t.elapsed().as_secs_f64() * 1000.0;
    }
    let cost = (build_iso - build_in) + (pix_iso - pix_in);
    println!(
        "plugin isolation ({}, {:.1} MP{}):",
        d.id,
        mp,
        if d.pixel_function {
            ", pixel function"
        } else {
            ""
        }
    );
    println!("  build request   in-process {build_in:>8.2} ms   runner {build_iso:>8.2} ms");
    if d.pixel_function {
        println!("  pixel function  in-process {pix_in:>8.1} ms   runner + shared memory {pix_iso:>8.1} ms");
    }
    println!(
        "  isolation cost {cost:.1} ms = {:.1}% of the job (target < 10%)",
        100.0 * cost / job_ms
    );
    Ok(())
}

/// Peak resident memory of this process (Linux), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
