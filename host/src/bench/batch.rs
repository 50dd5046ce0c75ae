//! `luminary bench FILE --batch N`: a shoot of N photos through a daemon of the bench's
//! own, as `luminary enhance *.dng` sends it (all jobs at once, the daemon queues them),
//! once with one job at a time (`max_jobs = 1`) and once with the default, which overlaps
//! photos: the next one decodes while this one's engine pass and encode run.
//!
//! Each run prints photos per second, how busy the machine's cores were over the batch's
//! wall time (all processes: the daemon, its decoder children and plugin processes), the
//! machine's peak memory in use above what it used before the batch, and the daemon's own
//! peak. The last two come from `/proc` and are Linux only.
//!
//! The N photos are hard links (or copies) of FILE under distinct names; the offline
//! engine caches nothing between jobs, so every one is a full job. Each output is deleted
//! as its result arrives, so disk use stays at a few outputs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::Client;
use crate::paths::Paths;
use crate::pipeline::{EnhanceRequest, OutputRequest};
use crate::protocol::{Event, Request};

/// What one batch run measured.
struct Run {
    max_jobs: usize,
    wall_s: f64,
    /// Share of all cores' time busy over the wall time, 0..1 (NaN where unknown).
    busy: f64,
    /// Peak of the machine's memory in use, above the level before the batch, MB.
    peak_mb: Option<u64>,
    /// The daemon's own peak resident size, MB.
    daemon_peak_mb: Option<u64>,
    /// Megapixels of the results.
    mp: f64,
}

/// Runs the batch benchmark: `count` copies of `file` with `preset`.
pub fn run(file: &Path, preset: &str, count: usize) -> anyhow::Result<i32> {
    let source = std::path::absolute(file)?;
    let home = super::home::private_home()?;
    let shots = home.path().join("shots");
    std::fs::create_dir_all(&shots)?;
    let ext = source
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let photos: Vec<PathBuf> = (0..count.max(1))
        .map(|i| {
            let p = shots.join(format!("shot-{i:03}.{ext}"));
            std::fs::hard_link(&source, &p)
                .or_else(|_| std::fs::copy(&source, &p).map(|_| ()))
                .with_context(|| format!("cannot place {} in the bench folder", p.display()))?;
            Ok(p)
        })
        .collect::<anyhow::Result<_>>()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default_jobs = crate::config::DaemonConfig::default().max_jobs;
    let mut runs = Vec::new();
    for max_jobs in [1, default_jobs] {
        runs.push(one_run(home.path(), &photos, preset, max_jobs)?);
        if default_jobs == 1 {
            break;
        }
    }
    let mp = runs[0].mp;
    println!(
        "a batch of {} × {} ({mp:.1} MP), preset {preset}, offline engine, {cores} cores:",
        photos.len(),
        file.display()
    );
    let first = runs[0].wall_s;
    // What overlapping can give at most: one job at a time already keeps part of the
    // cores busy (the stages run on every core), so the rest is all there is to fill.
    // On 2 cores with jobs that keep 1.5 busy, that is 1.33×, not the 1.8× a target
    // written for more cores would ask.
    let ceiling = 1.0 / runs[0].busy;
    for r in &runs {
        let per_s = photos.len() as f64 / r.wall_s;
        let mb = |v: Option<u64>| v.map_or("n/a".to_string(), |v| format!("{v} MB"));
        println!(
            "  max_jobs {}: {:>6.1} s  {per_s:.2} photos/s ({:.2}× one at a time)  cores busy {:>3.0} %  \
             peak memory in use {} (daemon {})",
            r.max_jobs,
            r.wall_s,
            first / r.wall_s,
            r.busy * 100.0,
            mb(r.peak_mb),
            mb(r.daemon_peak_mb)
        );
    }
    if ceiling.is_finite() && runs.len() > 1 {
        let best = first / runs[runs.len() - 1].wall_s;
        println!(
            "  overlap can give at most {ceiling:.2}× here (one at a time keeps {:.0} % of the \
             cores busy); this batch got {best:.2}×, {:.0} % of the gain possible (target \
             for 2 cores: busy ≥ 90 % overlapped)",
            runs[0].busy * 100.0,
            100.0 * (best - 1.0) / (ceiling - 1.0).max(1e-9)
        );
    }
    Ok(0)
}

fn one_run(home: &Path, photos: &[PathBuf], preset: &str, max_jobs: usize) -> anyhow::Result<Run> {
    let config = home.join(format!("config-{max_jobs}.toml"));
    std::fs::write(&config, format!("[daemon]\nmax_jobs = {max_jobs}\n"))?;
    let socket = home.join(format!("runtime/bench-{max_jobs}.sock"));
    let paths = Paths::resolve(Some(config), Some(socket.to_string_lossy().into_owned()))?;
    let mut client = Client::connect(&paths, true).context("starting the bench daemon")?;
    let pid = daemon_pid(&mut client)?;
    let out = home.join(format!("out-{max_jobs}"));
    std::fs::create_dir_all(&out)?;

    let sampling = AtomicBool::new(true);
    let before = system::memory_in_use_mb();
    std::thread::scope(|s| -> anyhow::Result<Run> {
        let sampler = s.spawn(|| {
            let mut peak = before;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(system::memory_in_use_mb());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        let (cpu0, t0) = (system::cpu_times(), Instant::now());
        let mut pending = HashSet::new();
        for (i, photo) in photos.iter().enumerate() {
            let id = i.to_string();
            client.send(&Request::Enhance {
                id: id.clone(),
                job: EnhanceRequest {
                    source: photo.clone(),
                    preset: preset.into(),
                    engine: Some("local".into()),
                    output: OutputRequest {
                        dir: Some(out.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            })?;
            pending.insert(id);
        }
        let mut failed = None;
        let mut mp = f64::NAN;
        while !pending.is_empty() {
            match client.next_event()? {
                Event::Done { id, result } if pending.remove(&id) => {
                    if let (Some(w), Some(h)) =
                        (result["width"].as_f64(), result["height"].as_f64())
                    {
                        mp = w * h / 1e6;
                    }
                    if let Some(o) = result["output"].as_str() {
                        std::fs::remove_file(o).ok();
                    }
                }
                Event::Error {
                    id: Some(id),
                    message,
                    ..
                } if pending.remove(&id) => {
                    failed.get_or_insert(message);
                }
                _ => {}
            }
        }
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu1 = system::cpu_times();
        sampling.store(false, Ordering::Relaxed);
        let peak = sampler.join().expect("the memory sampler");
        let daemon_peak_mb = system::peak_rss_mb(pid);
        let _ = client.send(&Request::Stop { id: "stop".into() });
        if let Some(m) = failed {
            anyhow::bail!("a job of the batch failed: {m}");
        }
        let busy = match (cpu0, cpu1) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => f64::NAN,
        };
        Ok(Run {
            max_jobs,
            wall_s,
            busy,
            peak_mb: peak.zip(before).map(|(p, b)| p.saturating_sub(b)),
            daemon_peak_mb,
            mp,
        })
    })
}

fn daemon_pid(client: &mut Client) -> anyhow::Result<u32> {
    client.send(&Request::Status { id: "pid".into() })?;
    loop {
        if let Event::Done { id, result } = client.next_event()? {
            if id == "pid" {
                return result["pid"]
                    .as_u64()
                    .map(|p| p as u32)
                    .context("status has no pid");
            }
        }
    }
}

/// The machine-wide figures, from `/proc` (Linux); `None` elsewhere.
mod system {
    /// (busy, total) jiffies of all cores together since boot.
    pub fn cpu_times() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((total - idle, total))
    }

    /// MemTotal − MemAvailable, MB.
    pub fn memory_in_use_mb() -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb = |key: &str| -> Option<u64> {
            info.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        Some((kb("MemTotal:")?.saturating_sub(kb("MemAvailable:")?)) / 1024)
    }

    /// A process's peak resident size (VmHWM), MB.
    pub fn peak_rss_mb(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024)
    }
}
