//! The CLI's `preview` and `estimate` commands, and what `enhance` says before a paid
//! batch: the estimate, and — when a person is at the terminal and the batch costs more than
//! `[engine] confirm_above_usd` — a question. Scripts and editors' bridges (standard input
//! not a terminal) are never asked: they confirm in their own interface.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::paths::Paths;
use crate::pipeline::estimate::{Estimate, EstimateRequest};
use crate::pipeline::live::{PreviewFormat, PreviewRequest};
use crate::protocol::{Event, Request};

/// `luminary preview`
#[derive(Args, Debug)]
pub struct PreviewArgs {
    /// The photo.
    pub photo: PathBuf,
    /// Preset id (see `luminary presets`).
    #[arg(long, short, required_unless_present_any = ["all_presets", "prompt"])]
    pub preset: Option<String>,
    /// A free-text edit instead of a preset (as `enhance --prompt`); needs an AI engine.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["preset", "all_presets"])]
    pub prompt: Option<String>,
    /// Every preset on the photo, on the offline engine at each preset's default
    /// intensity, one file per preset (`<preset id>.jpg`) in `--out-dir`: a strip of
    /// thumbnails to choose a preset by its look. The photo is decoded once.
    #[arg(long, requires = "out_dir", conflicts_with_all = ["preset", "out", "engine", "intensity"])]
    pub all_presets: bool,
    /// The folder for `--all-presets`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Strength of the effect, 0 to 1; the preset's default if omitted.
    #[arg(long, short)]
    pub intensity: Option<f64>,
    /// Preset parameter, repeatable: --param strength=0.5
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Engine: local (offline, default), gemini, openai, fal, replicate, comfyui. On a paid
    /// engine the first preview of a photo and preset is the engine call, and the final
    /// `enhance` reuses it at no cost.
    #[arg(long)]
    pub engine: Option<String>,
    /// Long edge in pixels, 64 to 2048.
    #[arg(long, default_value_t = crate::pipeline::live::DEFAULT_SIZE)]
    pub size: u32,
    /// Write the preview here (.jpg or .png); otherwise its file in the cache is printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the result as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Also write the result line(s) to this file (replaced atomically), for editors whose
    /// scripts cannot read a program's output.
    #[arg(long)]
    pub result_file: Option<PathBuf>,
    /// Fail instead of starting a daemon.
    #[arg(long)]
    pub no_spawn: bool,
}

/// `luminary estimate`
#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// The photos.
    #[arg(required_unless_present = "files_from")]
    pub photos: Vec<PathBuf>,
    /// Also the photos listed in this file, one per line (as `enhance --files-from`).
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// Preset id.
    #[arg(long, short)]
    pub preset: String,
    /// Preset parameter, repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Engine; as `enhance` would choose it when omitted.
    #[arg(long)]
    pub engine: Option<String>,
    /// Print the estimate as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the estimate as one JSON line to this file (replaced atomically).
    #[arg(long)]
    pub result_file: Option<PathBuf>,
    /// Fail instead of starting a daemon.
    #[arg(long)]
    pub no_spawn: bool,
}

/// A request's own failure: its code and message.
struct Failed {
    code: crate::error::ErrorCode,
    message: String,
}

/// Sends `req` and waits for its `done` (progress is skipped), or its `error`. A broken
/// connection, or an error of the connection itself, is the process's error.
fn call(
    client: &mut Client,
    req: &Request,
    want: &str,
) -> anyhow::Result<Result<Map<String, Value>, Failed>> {
    client.send(req)?;
    loop {
        match client.next_event()? {
            Event::Done { id, result } if id == want => return Ok(Ok(result)),
            Event::Error {
                id: Some(id),
                code,
                message,
                ..
            } if id == want => return Ok(Err(Failed { code, message })),
            Event::Error {
                id: None,
                code,
                message,
                ..
            } => bail!("{message} [{}]", code.as_str()),
            _ => {}
        }
    }
}

/// `luminary preview`.
pub fn preview(paths: &Paths, args: PreviewArgs) -> anyhow::Result<i32> {
    let mut client = Client::connect(paths, !args.no_spawn)?;
    let mut params = crate::cli_args::parse_params(&args.params)?;
    if let Some(text) = &args.prompt {
        params.insert("prompt".into(), Value::String(text.clone()));
    }
    let source = absolute(&args.photo);
    // (preset, where the file goes, engine, intensity) for each preview to make.
    type Wanted = (String, Option<PathBuf>, Option<String>, Option<f64>);
    let mut wanted: Vec<Wanted> = Vec::new();
    if args.all_presets {
        let dir = args.out_dir.clone().expect("clap requires --out-dir");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let list = call(&mut client, &Request::Presets { id: "p".into() }, "p")?
            .map_err(|f| anyhow::anyhow!("{} [{}]", f.message, f.code.as_str()))?;
        // The strip is offline: presets only an AI engine can do are left out.
        let offline = |p: &&Value| p["ai_only"] != Value::Bool(true);
        for p in list["presets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(offline)
        {
            if let Some(id) = p["id"].as_str() {
                let file = dir.join(format!("{}.jpg", crate::pipeline::names::component(id)));
                wanted.push((id.to_string(), Some(file), Some("local".into()), None));
            }
        }
    } else {
        let preset = match &args.prompt {
            Some(_) => crate::pipeline::prompt::ID.to_string(),
            None => args.preset.clone().expect("clap requires --preset"),
        };
        wanted.push((
            preset,
            args.out.clone(),
            args.engine.clone(),
            args.intensity,
        ));
    }
    let mut lines = Vec::new();
    let mut failures = 0;
    for (i, (preset, out, engine, intensity)) in wanted.into_iter().enumerate() {
        let format = match &out {
            Some(out) => match out
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("jpg" | "jpeg") => PreviewFormat::Jpeg,
                Some("png") => PreviewFormat::Png,
                _ => bail!("{}: a preview is a .jpg or a .png", out.display()),
            },
            None => PreviewFormat::Jpeg,
        };
        let job = PreviewRequest {
            source: source.clone(),
            preset: preset.clone(),
            intensity,
            params: if args.all_presets {
                Map::new()
            } else {
                params.clone()
            },
            engine,
            size: Some(args.size),
            format: Some(format),
        };
        let id = (i + 1).to_string();
        let line = match call(
            &mut client,
            &Request::Preview {
                id: id.clone(),
                job,
            },
            &id,
        )? {
            Ok(mut result) => {
                let made = PathBuf::from(result["output"].as_str().unwrap_or_default());
                if let Some(out) = &out {
                    copy_atomically(&made, out)?;
                    result.insert("output".into(), json!(absolute(out)));
                }
                result.insert("type".into(), json!("result"));
                result.insert("ok".into(), json!(true));
                if !args.json {
                    println!(
                        "{} → {} ({}×{}, {}{}, {})",
                        args.photo.display(),
                        result["output"].as_str().unwrap_or("?"),
                        result["width"],
                        result["height"],
                        result["engine"].as_str().unwrap_or("?"),
                        if result["cached"] == true {
                            ", cached"
                        } else {
                            ""
                        },
                        usd(result["cost"].as_f64().unwrap_or(0.0))
                    );
                }
                Value::Object(result)
            }
            Err(f) => {
                failures += 1;
                if !args.json {
                    eprintln!("error: {} [{}]", f.message, f.code.as_str());
                }
                json!({"type": "result", "ok": false, "input": source, "preset": preset,
                       "code": f.code.as_str(), "message": f.message, "retryable": f.code.retryable()})
            }
        };
        if args.json {
            println!("{line}");
        }
        lines.push(line);
    }
    if let Some(file) = &args.result_file {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        crate::cli_args::write_atomically(file, &text)?;
    }
    Ok(if failures > 0 { 1 } else { 0 })
}

/// Writes a copy of `from` at `to` through a temporary file in `to`'s folder and a rename.
fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".luminary-preview-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(&bytes)
        .with_context(|| format!("cannot write {}", to.display()))?;
    tmp.persist(to)
        .with_context(|| format!("cannot write {}", to.display()))?;
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    crate::cli_args::absolute_as_written(p)
}

/// Asks the daemon for the estimate of a batch; the request's own failure (an unknown
/// preset, say) as an error with its code.
pub fn fetch_estimate(client: &mut Client, req: EstimateRequest) -> anyhow::Result<Estimate> {
    let id = "estimate";
    match call(
        client,
        &Request::Estimate {
            id: id.into(),
            job: req,
        },
        id,
    )? {
        Ok(body) => Ok(serde_json::from_value(Value::Object(body))?),
        Err(f) => bail!("{} [{}]", f.message, f.code.as_str()),
    }
}

/// `luminary estimate`.
pub fn estimate(paths: &Paths, args: EstimateArgs) -> anyhow::Result<i32> {
    let mut sources: Vec<PathBuf> = args.photos.iter().map(|p| absolute(p)).collect();
    if let Some(list) = &args.files_from {
        sources.extend(
            crate::cli_args::read_file_list(list)?
                .into_iter()
                .map(|i| absolute(&i.path)),
        );
    }
    let mut client = Client::connect(paths, !args.no_spawn)?;
    let e = match fetch_estimate(
        &mut client,
        EstimateRequest {
            sources,
            preset: args.preset.clone(),
            params: crate::cli_args::parse_params(&args.params)?,
            engine: args.engine.clone(),
        },
    ) {
        Ok(e) => e,
        Err(e) => {
            if let Some(file) = &args.result_file {
                let line = json!({"type": "result", "ok": false, "message": format!("{e:#}")});
                crate::cli_args::write_atomically(file, &format!("{line}\n"))?;
            }
            eprintln!("error: {e:#}");
            return Ok(1);
        }
    };
    if let Some(file) = &args.result_file {
        crate::cli_args::write_atomically(file, &format!("{}\n", serde_json::to_value(&e)?))?;
    }
    if args.json {
        println!("{}", serde_json::to_value(&e)?);
        return Ok(0);
    }
    for item in &e.items {
        let what = match &item.error {
            Some(err) => format!(
                "cannot be enhanced: {} [{}]",
                err["message"].as_str().unwrap_or("?"),
                err["code"].as_str().unwrap_or("?")
            ),
            None if !e.paid => "offline, free".into(),
            None if item.cached => "cached, free".into(),
            None => usd(item.price),
        };
        println!("{}  {what}", item.source.display());
    }
    println!("{}", summary(&e));
    if let Some(b) = e.budget.as_ref().and_then(|b| b.message.as_ref()) {
        println!("{b}");
    }
    Ok(0)
}

fn usd(v: f64) -> String {
    crate::budget::dollars((v * 1e6).round() as i64)
}

/// One line for the batch: "9 of 12 photos will call gemini, about $0.35; 3 cached".
pub fn summary(e: &Estimate) -> String {
    if !e.paid {
        return format!("{} photo(s) on the offline engine: free", e.photos);
    }
    if e.sends_full_photo {
        // An upscale: the whole photo leaves the machine, tile by tile.
        let mut s = format!(
            "upscaling sends the whole full-resolution photo (not a preview) to {}: {} tile(s) \
             for {} photo(s), about {} at most",
            e.engine,
            e.calls,
            e.photos,
            usd(e.cost_usd)
        );
        if let Some(b) = &e.budget {
            s += &format!("; {} left in the budget", usd(b.remaining_usd));
        }
        return s;
    }
    let mut s = format!(
        "{} of {} photo(s) will call {}, about {}",
        e.calls,
        e.photos,
        e.engine,
        usd(e.cost_usd)
    );
    if e.cached > 0 {
        s += &format!("; {} cached", e.cached);
    }
    if let Some(b) = &e.budget {
        s += &format!("; {} left in the budget", usd(b.remaining_usd));
    }
    s
}

/// Before a paid batch: the estimate on standard error (or as a JSON line with `--json`),
/// then, when it costs more than the daemon's `[engine] confirm_above_usd` and a person is
/// at the terminal, the question. Returns false when they said no.
pub fn confirm_batch(e: &Estimate, json: bool) -> anyhow::Result<bool> {
    if !e.paid {
        return Ok(true);
    }
    if json {
        println!(
            "{}",
            json!({"type": "estimate", "engine": e.engine, "photos": e.photos, "cached": e.cached,
                   "calls": e.calls, "cost_usd": e.cost_usd, "budget": e.budget,
                   "sends_full_photo": e.sends_full_photo, "summary": summary(e)})
        );
    } else {
        eprintln!("{}", summary(e));
        if let Some(b) = e.budget.as_ref().and_then(|b| b.message.as_ref()) {
            eprintln!("{b}");
        }
    }
    let stdin = std::io::stdin();
    // An upscale sends whole photos out: a person at the terminal is asked whatever it costs.
    if (e.cost_usd <= e.confirm_above_usd && !e.sends_full_photo) || !stdin.is_terminal() {
        return Ok(true);
    }
    if e.sends_full_photo {
        eprint!(
            "Send the whole photo(s) and spend about {}? [y/N] ",
            usd(e.cost_usd)
        );
    } else {
        eprint!("Spend about {}? [y/N] ", usd(e.cost_usd));
    }
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}
