//! `luminary bench FILE`: per-stage throughput of a whole job, in this process, against
//! LibRaw's develop of the same file measured in the same run.
//!
//! `--colour DIR` (`colour.rs`) measures colour and brightness against cameras' own
//! previews instead.
//!
//! Figures are ratios against a reference timed on the same machine at the same moment,
//! so they mean something on a laptop and on a loaded CI box alike.

use std::collections::BTreeMap;
use std::process::Command;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::config::Config;
use crate::error::Cancel;
use crate::paths::Paths;
use crate::pipeline::{run_job, EnhanceRequest, OutputRequest};
use crate::plugins::{search_path, Registry};

mod batch;
mod colour;
mod home;
mod preview;

/// One job in this process on the offline engine, its output removed: what the stage
/// tables time.
fn local_job(
    req: &EnhanceRequest,
    config: &Config,
    registry: &Registry,
) -> anyhow::Result<crate::pipeline::EnhanceResult> {
    let r = run_job(
        req,
        config,
        registry,
        &crate::engine::remote::Engines::without_storage(config),
        &|_, _| {},
        &crate::engine::stay_on_cpu,
        &Cancel::default(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", req.preset))?;
    std::fs::remove_file(&r.output).ok();
    Ok(r)
}

/// `bench --look`: the look table (`look::fidelity`) over the photos given.
fn looks(files: &[PathBuf]) -> anyhow::Result<i32> {
    use crate::look::fidelity::{cross, header, line, Photo};
    use crate::transfer::fidelity::{working_to_srgb, Edit, Scene};
    let mut photos = Vec::new();
    for f in files {
        let ingested = crate::ingest::ingest(f, &Default::default())
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let mut base = ingested.image;
        crate::pipeline::render::render_base(&mut base, ingested.rendering);
        photos.push(Photo {
            name: f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            scene: Scene::new(working_to_srgb(&base), 1024),
        });
    }
    println!("{}", header());
    for edit in [Edit::GlobalLook, Edit::Combined] {
        let rows = cross(&photos, edit);
        for r in &rows {
            println!("{}", line(r));
        }
        let n = rows.len() as f64;
        println!(
            "{}: a look {:.1} dB on average, per-photo transfer {:.1} dB",
            edit.name(),
            rows.iter().map(|r| r.look_db).sum::<f64>() / n,
            rows.iter().map(|r| r.transfer_db).sum::<f64>() / n
        );
    }
    Ok(0)
}

/// `luminary bench`
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A photo, ideally a 24 MP RAW.
    #[arg(required_unless_present_any = ["colour", "look", "matte"])]
    pub file: Option<PathBuf>,
    /// Preset to run.
    #[arg(long, default_value = "auto")]
    pub preset: String,
    /// Timed runs (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Instead of a job: the transfer stage's fidelity table (Luminary vs bicubic upscaling
    /// of the engine's answer, on FILE tiled to 24 MP) and its speed figures.
    #[arg(long)]
    pub transfer: bool,
    /// With `--transfer`: skip the fidelity table, print only the speed figures (fit and
    /// apply, best and median of `--runs`), for quick measurements while optimising.
    #[arg(long, requires = "transfer")]
    pub speed_only: bool,
    /// With `--transfer`: only the rows for answers as generative models give them (their
    /// canvas, moved content, re-drawn texture, JPEG), each degradation alone and all
    /// together.
    #[arg(long, requires = "transfer", conflicts_with = "speed_only")]
    pub generative: bool,
    /// Instead of a job: for every camera RAW in DIR, the base's colour and brightness
    /// against the JPEG preview the camera embedded, beside LibRaw's (rawpy) on the same
    /// file.
    #[arg(long, value_name = "DIR", conflicts_with = "transfer")]
    pub colour: Option<PathBuf>,
    /// Instead of a job: live previews of FILE through the socket of a daemon of the
    /// bench's own — the first, another preset, another intensity — against their targets.
    #[arg(long, conflicts_with_all = ["transfer", "colour"])]
    pub preview: bool,
    /// Instead of a job: a shoot's look learned on each of these photos (RAW or rendered,
    /// at least two) and applied at full resolution to the others, against the same known
    /// edit made on them — a global look, and one with local parts (clarity, vignette)
    /// beside per-photo transfer.
    #[arg(long, value_name = "PHOTO", num_args = 2.., conflicts_with_all = ["transfer", "colour", "preview"])]
    pub look: Vec<PathBuf>,
    /// Instead of a job: a cut-out's matte, refined at full resolution against only
    /// upscaled, on a subject with a known matte cut from FOREGROUND and pasted onto
    /// BACKGROUND at 24 MP (IoU, boundary F-measure, edge error, time).
    #[arg(long, value_names = ["FOREGROUND", "BACKGROUND"], num_args = 2, conflicts_with_all = ["transfer", "colour", "preview", "look"])]
    pub matte: Vec<PathBuf>,
    /// With `--colour`: also write each base as a JPEG into this folder, to look at.
    #[arg(long, value_name = "DIR", requires = "colour")]
    pub save: Option<PathBuf>,
    /// With `--colour`: one JSON object per file instead of a table.
    #[arg(long, requires = "colour")]
    pub json: bool,
    /// After the job's table: every offline preset (AI-only ones left out) run once on
    /// FILE, its engine stage and whole job in wall and CPU time.
    #[arg(long, conflicts_with_all = ["transfer", "colour", "preview", "look", "matte"])]
    pub every_preset: bool,
    /// Instead of a job: a shoot of N copies of FILE through a daemon of the bench's own,
    /// one job at a time and then overlapped (`max_jobs` default): photos per second, how
    /// busy the cores were, peak memory.
    #[arg(long, value_name = "N", conflicts_with_all = ["transfer", "colour", "preview", "look", "matte", "every_preset"])]
    pub batch: Option<usize>,
    /// Python interpreter with rawpy for the LibRaw reference ("" to skip).
    #[arg(long, default_value = "python3")]
    pub python: String,
}

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
    if let Some(dir) = &args.colour {
        return colour::run(paths, dir, &args.python, args.json, args.save.as_deref());
    }
    if !args.look.is_empty() {
        return looks(&args.look);
    }
    if let [fg, bg] = args.matte.as_slice() {
        let load = |f: &PathBuf| -> anyhow::Result<crate::image::RgbF32> {
            let ingested = crate::ingest::ingest(f, &Default::default())
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let mut base = ingested.image;
            crate::pipeline::render::render_base(&mut base, ingested.rendering);
            Ok(base)
        };
        let (w, h) = (6000, 4000);
        let rows = crate::matte::bench::run(&load(fg)?, &load(bg)?, w, h, 1024);
        crate::matte::bench::print(&rows, w, h);
        return Ok(0);
    }
    let file = args.file.clone().context("a photo to measure")?;
    if args.transfer {
        return transfer(&file, &args);
    }
    if args.preview {
        return preview::run(&file, args.runs.max(5));
    }
    if let Some(count) = args.batch {
        return batch::run(&file, &args.preset, count);
    }
    let config = Config::load(&paths.config_file)?;
    let registry = Registry::discover(
        &search_path(&paths.data_dir, &config.daemon.plugin_dirs),
        &crate::plugins::runner::RunnerLimits::from_config(&config.plugins),
    );
    let out = tempfile::tempdir()?;
    let req = EnhanceRequest {
        source: std::path::absolute(&file)?,
        preset: args.preset.clone(),
        look: None,
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
        let r = local_job(&req, &config, &registry)?;
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
        file.display(),
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
    // The encode stage in the other formats (targets: 16-bit TIFF ≥ 150 MP/s above, JPEG
    // q95 and 16-bit PNG ≥ 60 MP/s).
    for format in [crate::config::Format::Jpeg, crate::config::Format::Png] {
        let req = EnhanceRequest {
            output: OutputRequest {
                format: Some(format),
                ..req.output.clone()
            },
            ..req.clone()
        };
        let mut encode = Vec::new();
        for i in 0..=args.runs.max(1) {
            let r = local_job(&req, &config, &registry)?;
            if i > 0 {
                encode.push(r.timings_ms["encode"]);
            }
        }
        let ms = median(encode);
        let name = match format {
            crate::config::Format::Jpeg => {
                format!("encode as JPEG q{}", config.output.jpeg_quality)
            }
            _ => "encode as 16-bit PNG".into(),
        };
        println!(
            "{name:<22} {ms:>5} ms {:>8.1} MP/s",
            mp / (ms.max(1) as f64 / 1000.0)
        );
    }
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (RSS high-water mark of this process): {} MB = {:.0} bytes per pixel",
            kb / 1024,
            kb as f64 * 1024.0 / (mp * 1e6)
        );
    }
    isolation_cost(&registry, &config, &req, mp, med["total"] as f64)?;
    let libraw_ms = if args.python.is_empty() {
        None
    } else {
        Some(libraw_develop_ms(&args.python, &file, args.runs)?)
    };
    if args.every_preset {
        every_preset(&registry, &config, &req, mp, args.runs, libraw_ms)?;
    }
    let Some(libraw_ms) = libraw_ms else {
        return Ok(0);
    };
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
    let ingested =
        crate::ingest::ingest(&req.source, &config.limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut base = ingested.image;
    let preview = crate::pipeline::render::render_base_and_downscale(
        &mut base,
        ingested.rendering,
        config.engine.preview_size as usize,
    );
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
    let (mut pix_in, mut pix_iso, mut pix_new) = (0.0, 0.0, 0.0);
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
        // Twice: with a new shared buffer (the first photo after the daemon was idle),
        // then with the one the first call kept (every later photo of a batch).
        handle.release_pixels();
        for round in 0..2 {
            let t = Instant::now();
            let mut shm = handle.pixel_buffer(base.data.len())?;
            shm.as_mut_slice().copy_from_slice(&base.data);
            let done = handle.process_pixels(
                &d.id,
                &params,
                &facts,
                &shm,
                base.width,
                base.height,
                &cancel,
            );
            base.data.copy_from_slice(shm.as_slice());
            handle.keep_pixel_buffer(shm);
            done.map_err(|e| anyhow::anyhow!("{e}"))?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if round == 0 {
                pix_new = ms;
            } else {
                pix_iso = ms;
            }
        }
        handle.release_pixels();
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
        println!(
            "  (the first pixel call after the daemon was idle maps a new shared buffer: {pix_new:.1} ms, {:.1}% of the job)",
            100.0 * (build_iso - build_in + pix_new - pix_in) / job_ms
        );
    }
    println!(
        "  isolation cost {cost:.1} ms = {:.1}% of the job (target < 10%)",
        100.0 * cost / job_ms
    );
    Ok(())
}

/// CPU time of this process so far (user + system), in ms.
fn cpu_ms() -> f64 {
    crate::transfer::trace::cpu_seconds().map_or(f64::NAN, |s| s * 1e3)
}

/// LibRaw's AHD develop of `file` (rawpy, 16-bit), the median of `runs`, in ms.
fn libraw_develop_ms(python: &str, file: &Path, runs: usize) -> anyhow::Result<f64> {
    let output = Command::new(python)
        .args(["-c", LIBRAW_SCRIPT])
        .arg(file)
        .arg(runs.max(1).to_string())
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    if !output.status.success() {
        bail!(
            "LibRaw reference failed (is rawpy installed?): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("LibRaw reference output")
}

/// `--every-preset`: each offline preset, engine stage and whole job (medians of `runs`
/// after one run to warm up, as for the main table), wall and CPU, and the job's ratio to
/// LibRaw's develop when that was measured.
fn every_preset(
    registry: &Registry,
    config: &Config,
    req: &EnhanceRequest,
    mp: f64,
    runs: usize,
    libraw_ms: Option<f64>,
) -> anyhow::Result<()> {
    let mut ids: Vec<String> = registry
        .presets()
        .filter(|p| !p.descriptor.ai_only)
        .map(|p| p.descriptor.id.clone())
        .collect();
    ids.sort();
    let runs = runs.max(1);
    println!(
        "every offline preset, median of {runs} runs after one to warm up ({mp:.1} MP; CPU is the whole process's, both cores)"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12}",
        "preset", "engine ms", "engine MP/s", "job ms", "job CPU ms", "CPU/wall", "job / LibRaw"
    );
    let engines = crate::engine::remote::Engines::without_storage(config);
    for id in ids {
        let req = EnhanceRequest {
            preset: id.clone(),
            ..req.clone()
        };
        let (mut engines_ms, mut walls, mut cpus) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..=runs {
            let (t, c) = (std::time::Instant::now(), cpu_ms());
            let r = run_job(
                &req,
                config,
                registry,
                &engines,
                &|_, _| {},
                &crate::engine::stay_on_cpu,
                &Cancel::default(),
            )
            .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
            let (wall, cpu) = (t.elapsed().as_secs_f64() * 1e3, cpu_ms() - c);
            std::fs::remove_file(&r.output).ok();
            if i > 0 {
                engines_ms.push(r.timings_ms.get("engine").copied().unwrap_or(0));
                walls.push(wall as u64);
                cpus.push(cpu as u64);
            }
        }
        let (engine, wall, cpu) = (median(engines_ms), median(walls), median(cpus));
        let ratio = libraw_ms.map_or("-".to_string(), |l| format!("{:.2}", wall as f64 / l));
        println!(
            "{:<28} {:>10} {:>10.1} {:>10} {:>10} {:>9.2} {:>12}",
            id,
            engine,
            mp / (engine.max(1) as f64 / 1e3),
            wall,
            cpu,
            cpu as f64 / wall.max(1) as f64,
            ratio
        );
    }
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

/// `luminary bench --transfer --speed-only`: the fit and the apply alone, `runs` times each
/// on one look edit (PNG answer) and the paste edit (content path).
fn transfer_speed(scene: &crate::transfer::fidelity::Scene, runs: usize) -> anyhow::Result<i32> {
    use crate::transfer::fidelity::{AnswerFormat, Edit};
    use crate::transfer::Mode;
    let (w, h) = (scene.base.width, scene.base.height);
    let mp = (w * h) as f64 / 1e6;
    for (edit, mode) in [
        (Edit::Combined, Mode::Look),
        (Edit::PasteObject, Mode::Content),
    ] {
        let (seen, answer) = scene.answer(edit, AnswerFormat::Png);
        let mut fit_ms = Vec::new();
        let mut fit_cpu_ms = Vec::new();
        let mut t = None;
        for _ in 0..runs {
            let s = std::time::Instant::now();
            let c0 = crate::transfer::trace::cpu_seconds();
            t = Some(crate::transfer::Transfer::fit(&seen, &answer, mode));
            fit_ms.push(s.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (c0, crate::transfer::trace::cpu_seconds()) {
                fit_cpu_ms.push((b - a) * 1e3);
            }
        }
        let t = t.expect("runs >= 3");
        let mut out = scene.base.clone();
        let mut mps = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            out.data.copy_from_slice(&scene.base.data);
            let s = std::time::Instant::now();
            let c0 = crate::transfer::trace::cpu_seconds();
            t.apply_blend(&mut out, 0.8, &crate::error::Cancel::default())?;
            mps.push(mp / s.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (c0, crate::transfer::trace::cpu_seconds()) {
                cpu.push(mp / (b - a));
            }
        }
        let stats = |mut v: Vec<f64>, best_is_max: bool| {
            v.sort_by(|a, b| a.total_cmp(b));
            let best = if best_is_max { v[v.len() - 1] } else { v[0] };
            (best, v[v.len() / 2])
        };
        let (fb, fm) = stats(fit_ms, false);
        let (ab, am) = stats(mps, true);
        let (cb, _) = if cpu.is_empty() {
            (f64::NAN, 0.0)
        } else {
            stats(cpu, true)
        };
        let (fcb, _) = if fit_cpu_ms.is_empty() {
            (f64::NAN, 0.0)
        } else {
            stats(fit_cpu_ms, false)
        };
        println!(
            "{:<14} fit {fb:6.1} ms best, {fm:6.1} median, {fcb:6.1} CPU-ms; apply {ab:5.0} MP/s best, {am:5.0} median, {cb:4.0} MP per CPU-second",
            edit.name()
        );
    }
    Ok(0)
}

/// `luminary bench --transfer --generative PHOTO`: the fidelity rows for answers as
/// generative models give them (`transfer::generative`), on the photo tiled to 24 MP at
/// 3:2 and at 4:3 (where the models' canvases differ from the photo's aspect). The
/// all-degradations rows come at q75 (the targets' case), and on the 3:2 photo also as a
/// PNG and at q95 (4:2:0 and 4:4:4), which tells the format's part from the rest.
fn generative(img: &crate::image::RgbF32) -> anyhow::Result<i32> {
    use crate::transfer::fidelity::{mirror_tile, Edit, Row, Scene};
    use crate::transfer::generative::{
        Chroma, Degradation, Jpeg, GEMINI, MOVED, PROVIDERS, RESYNTHESISED,
    };
    println!(
        "{:<14} {:<40} {:>8} {:>8} {:>6} {:>7} {:>11} {:>11} {:>11} {:>7} {:>6}  registration",
        "edit",
        "answer",
        "bicubic",
        "luminary",
        "gain",
        "HF dB",
        "HF lum/bic",
        "err lo Y/C",
        "err hi Y/C",
        "fit ms",
        "reg ms"
    );
    let print = |edit: Edit, d: &Degradation, r: &Row| {
        let reg = &r.report;
        let bands = r.bands.expect("the scene measures error bands");
        let left_out = reg
            .uncovered
            .missing(0.005)
            .iter()
            .map(|(edge, d)| format!(" {edge} {:.1} %", d * 100.0))
            .collect::<String>();
        println!(
            "{:<14} {:<40} {:>8.2} {:>8.2} {:>+6.2} {:>7.2} {:>5.2}/{:<5.2} {:>5.1}/{:<5.1} {:>5.1}/{:<5.1} {:>7.1} {:>6.1}  {}{}{}",
            edit.name(),
            d.label(),
            r.bicubic_db,
            r.luminary_db,
            r.luminary_db - r.bicubic_db,
            r.detail.luminary_db,
            r.detail.luminary_ratio,
            r.detail.bicubic_ratio,
            bands.low_luma_db,
            bands.low_chroma_db,
            bands.high_luma_db,
            bands.high_chroma_db,
            r.fit_ms,
            reg.register_ms,
            reg.registration,
            if left_out.is_empty() {
                String::new()
            } else {
                format!("; left out:{left_out}")
            },
            r.changed
                .map(|(f, _)| format!("; inside the object follows the engine at {f:.1} dB"))
                .unwrap_or_default()
        );
    };
    for (label, (w, h)) in [("3:2", (6000, 4000)), ("4:3", (5600, 4200))] {
        let scene = Scene::new(mirror_tile(img, w, h), 1024).with_error_bands();
        println!("-- {label} photo, {w}×{h}");
        let mut rows: Vec<(Edit, Degradation)> = Vec::new();
        if label == "3:2" {
            let alone = [
                Degradation::default(),
                Degradation {
                    canvas: Some(GEMINI),
                    ..Degradation::default()
                },
                Degradation {
                    geometry: Some(MOVED),
                    ..Degradation::default()
                },
                Degradation {
                    texture: Some(RESYNTHESISED),
                    ..Degradation::default()
                },
                Degradation {
                    jpeg: Some(Jpeg::q(95)),
                    ..Degradation::default()
                },
                Degradation {
                    jpeg: Some(Jpeg {
                        quality: 95,
                        chroma: Chroma::Full,
                    }),
                    ..Degradation::default()
                },
                Degradation {
                    jpeg: Some(Jpeg::q(75)),
                    ..Degradation::default()
                },
            ];
            rows.extend(alone.into_iter().map(|d| (Edit::Combined, d)));
            rows.extend(
                Edit::ALL
                    .into_iter()
                    .map(|e| (e, Degradation::all(GEMINI, 75))),
            );
            // The same answer as a PNG (what Luminary asks every provider for) and as the
            // better JPEGs, to tell what the q75 JPEG of point 4's rows costs from what
            // the canvas, the motion and the re-drawn texture do.
            rows.extend(Edit::ALL.into_iter().map(|e| {
                let png = Degradation {
                    jpeg: None,
                    ..Degradation::all(GEMINI, 75)
                };
                (e, png)
            }));
            let q95 = Jpeg {
                quality: 95,
                chroma: Chroma::Full,
            };
            rows.extend([Jpeg::q(95), q95].map(|j| {
                let better = Degradation {
                    jpeg: Some(j),
                    ..Degradation::all(GEMINI, 75)
                };
                (Edit::Combined, better)
            }));
        } else {
            rows.extend(
                PROVIDERS
                    .into_iter()
                    .map(|p| (Edit::Combined, Degradation::all(p, 75))),
            );
            rows.push((Edit::PasteObject, Degradation::all(GEMINI, 75)));
        }
        for (edit, d) in rows {
            let r = scene.row_generative(edit, &d);
            print(edit, &d, &r);
        }
    }
    Ok(0)
}

/// `luminary bench --transfer PHOTO`: the fidelity table and the transfer's speed, with a
/// plain copy of the same image as the in-run reference for the apply pass.
fn transfer(file: &std::path::Path, args: &BenchArgs) -> anyhow::Result<i32> {
    use crate::image::RgbF32;
    use crate::transfer::fidelity::{mirror_tile, AnswerFormat, Edit, Scene};
    use crate::transfer::{Mode, Transfer};
    let img = image::open(file)
        .with_context(|| format!("{}: cannot open", file.display()))?
        .into_rgb32f();
    let img = RgbF32::new(img.width() as usize, img.height() as usize, img.into_raw());
    if args.generative {
        return generative(&img);
    }
    let full = if img.pixels() < 20_000_000 {
        mirror_tile(&img, 6000, 4000)
    } else {
        img
    };
    let scene = Scene::new(full, 1024);
    let (w, h) = (scene.base.width, scene.base.height);
    println!(
        "{} at {w}×{h} ({:.1} MP), engine answer 1024 px; PSNR (dB) against the edit made at full resolution",
        file.display(),
        (w * h) as f64 / 1e6
    );
    println!(
        "{:<14} {:<7} {:>9} {:>9} {:>7} {:>8} {:>10}",
        "edit", "answer", "bicubic", "luminary", "gain", "fit ms", "apply MP/s"
    );
    let mut fits = Vec::new();
    let mut applies = Vec::new();
    let mut per_cpu = Vec::new();
    if args.speed_only {
        return transfer_speed(&scene, args.runs.max(3));
    }
    for format in [AnswerFormat::Png, AnswerFormat::Jpeg90] {
        for edit in Edit::ALL {
            let r = scene.row(edit, format);
            fits.push(r.fit_ms);
            applies.push(r.apply_mps);
            per_cpu.push(r.apply_mp_per_cpu_s);
            println!(
                "{:<14} {:<7} {:>9.2} {:>9.2} {:>+7.2} {:>8.1} {:>10.1}{}",
                edit.name(),
                match format {
                    AnswerFormat::Png => "PNG",
                    AnswerFormat::Jpeg90 => "JPEG90",
                },
                r.bicubic_db,
                r.luminary_db,
                r.luminary_db - r.bicubic_db,
                r.fit_ms,
                r.apply_mps,
                r.changed
                    .map(|(f, _)| format!(
                        "  (outside the object; inside it follows the engine at {f:.1} dB)"
                    ))
                    .unwrap_or_default()
            );
        }
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Reference: the cheapest possible full-resolution pass, a parallel copy.
    let mut copy = vec![0f32; scene.base.data.len()];
    let mut copy_s = f64::MAX;
    let mut copy_cpu_s = f64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let c0 = crate::transfer::trace::cpu_seconds();
        use rayon::prelude::*;
        copy.par_chunks_mut(1 << 16)
            .zip(scene.base.data.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
        copy_s = copy_s.min(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, crate::transfer::trace::cpu_seconds()) {
            copy_cpu_s = copy_cpu_s.min(b - a);
        }
    }
    drop(copy);
    let copy_mps = (w * h) as f64 / 1e6 / copy_s;
    let apply = med(applies);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu = med(per_cpu);
    println!(
        "apply per CPU-second (independent of other load): {cpu:.0} MP → {:.0} MP/s on {cores} idle cores; a plain copy: {:.0} MP per CPU-second",
        cpu * cores,
        (w * h) as f64 / 1e6 / copy_cpu_s
    );
    println!(
        "fit (align + grid + residual + mask), median: {:.1} ms",
        med(fits)
    );
    println!(
        "apply at full resolution, median: {apply:.0} MP/s on {} threads = {:.2}× the speed of a plain parallel copy of the image ({copy_mps:.0} MP/s)",
        rayon::current_num_threads(),
        apply / copy_mps
    );
    // The live slider: re-blending at preview size with an already fitted transfer.
    let preview = crate::pipeline::preview::downscale(&scene.base, 1024);
    let mut answer = crate::transfer::fidelity::working_to_srgb(&preview);
    crate::transfer::fidelity::apply_edit(Edit::Combined, &mut answer);
    let answer = crate::transfer::fidelity::srgb_to_working(&answer);
    let t = Transfer::fit(&preview, &answer, Mode::Look);
    let mut best = f64::MAX;
    for i in 0..5 {
        let s = std::time::Instant::now();
        let _ = t.preview_blend(&preview, 0.2 * i as f32);
        best = best.min(s.elapsed().as_secs_f64());
    }
    println!(
        "preview-size re-blend at a new intensity ({}×{}): {:.1} ms",
        preview.width,
        preview.height,
        best * 1e3
    );
    if let Some(kb) = peak_rss_kb() {
        println!("peak memory of this benchmark process: {} MB", kb / 1024);
    }
    Ok(0)
}
