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
        let r = run_job(&req, &config, &registry, &|_, _| {}, &Cancel::default())
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
