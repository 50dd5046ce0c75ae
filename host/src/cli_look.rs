//! `luminary look …`: learn a shoot's look once, export it as a `.cube`, show what a look
//! file holds; and the learning step of `enhance --same-look`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::look::cube::CubeInput;
use crate::paths::Paths;
use crate::pipeline::looks::{LearnRequest, LearnResult};
use crate::protocol::{Event, Request};

/// `luminary look …`
#[derive(Subcommand, Debug)]
pub enum LookCommand {
    /// Learn a look from reference photos (one engine call each, cached and in the
    /// ledger like any enhance) into a `.look` file.
    Learn(LearnArgs),
    /// Write a look as an Adobe / Resolve `.cube` 3D LUT.
    Export(ExportArgs),
    /// What a look file holds: preset, engine, references, coverage.
    Show {
        /// The `.look` file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `luminary look learn`
#[derive(Args, Debug)]
pub struct LearnArgs {
    /// Reference photos: the look is what the engine did to them.
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// A look preset (see `luminary presets`).
    #[arg(long, short)]
    pub preset: String,
    /// Preset parameter, repeatable: --param strength=0.5
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Engine; the preset's hint or the configured default when absent.
    #[arg(long)]
    pub engine: Option<String>,
    /// The `.look` file to write (an existing one is never replaced: -2, -3… is added).
    #[arg(long)]
    pub out: PathBuf,
    /// Print JSON lines: progress, then the result.
    #[arg(long)]
    pub json: bool,
    /// Fail instead of starting a daemon.
    #[arg(long)]
    pub no_spawn: bool,
}

/// `luminary look export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The `.look` file.
    pub file: PathBuf,
    /// The `.cube` file to write (an existing one is never replaced).
    #[arg(long)]
    pub cube: PathBuf,
    /// Nodes per axis.
    #[arg(long, default_value_t = 33, value_parser = cube_size)]
    pub size: usize,
    /// What the LUT's input and output values are: srgb, display-p3, adobe-rgb or
    /// prophoto encoded values, or `look` (the look's own encoding, sqrt of linear
    /// Rec. 2020).
    #[arg(long, default_value = "srgb")]
    pub input: String,
}

fn cube_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (17 | 33 | 65)) => Ok(n),
        _ => Err(format!(
            "a .cube size of 17, 33 or 65 nodes per axis (got '{s}')"
        )),
    }
}

/// Runs `luminary look …`.
pub fn run(paths: &Paths, cmd: LookCommand) -> anyhow::Result<i32> {
    match cmd {
        LookCommand::Learn(args) => {
            let mut client = Client::connect(paths, !args.no_spawn)?;
            let req = LearnRequest {
                sources: args
                    .photos
                    .iter()
                    .map(|p| crate::cli_args::absolute_as_written(p))
                    .collect(),
                preset: args.preset.clone(),
                params: crate::cli_args::parse_params(&args.params)?,
                engine: args.engine.clone(),
                out: crate::cli_args::absolute_as_written(&args.out),
            };
            let r = learn(&mut client, req, args.json)?;
            if args.json {
                println!("{}", json!({"type": "result", "ok": true, "result": r}));
            } else {
                println!(
                    "{} ← {} on {}, from {} photo(s): {} · learned in {} ms, {:.0}% of colours seen",
                    r.output.display(),
                    r.preset,
                    r.engine,
                    r.references.len(),
                    calls_line(&r),
                    r.timings_ms.get("learn").copied().unwrap_or(0),
                    r.coverage * 100.0
                );
            }
            Ok(0)
        }
        LookCommand::Export(args) => {
            let input = CubeInput::parse(&args.input).map_err(anyhow::Error::msg)?;
            let look = crate::look::file::read(&args.file)?;
            let out = crate::look::cube::write_cube(&look, args.size, input, &args.cube)?;
            println!(
                "{} ({}³, {} in and out)",
                out.display(),
                args.size,
                input.name()
            );
            Ok(0)
        }
        LookCommand::Show { file, json } => {
            let look = crate::look::file::read(&file)?;
            let info = serde_json::to_value(&look.info)?;
            if json {
                println!(
                    "{}",
                    json!({"file": file, "lut_size": look.lut.n, "info": info})
                );
            } else {
                println!("{}", file.display());
                println!(
                    "  preset     {} (version {})",
                    look.info.preset, look.info.preset_version
                );
                if !look.info.params.is_empty() {
                    println!("  parameters {}", Value::Object(look.info.params.clone()));
                }
                println!("  engine     {} ({})", look.info.engine, look.info.model);
                println!(
                    "  LUT        {}³, {:.0}% of colours seen in the references",
                    look.lut.n,
                    look.info.coverage * 100.0
                );
                for r in &look.info.references {
                    println!(
                        "  reference  {} (sha256 {}…)",
                        r.name,
                        &r.sha256[..r.sha256.len().min(12)]
                    );
                }
            }
            Ok(0)
        }
    }
}

/// "1 engine call ($0.039)", "answer from the cache, no cost", "offline, no cost".
pub fn calls_line(r: &LearnResult) -> String {
    match (r.engine_calls, r.cached) {
        (0, 0) => "offline, no cost".into(),
        (0, c) => format!("{c} answer(s) from the cache, no cost"),
        (n, 0) => format!(
            "{n} engine call{} (${:.3})",
            if n == 1 { "" } else { "s" },
            r.cost
        ),
        (n, c) => format!(
            "{n} engine call{} (${:.3}), {c} from the cache",
            if n == 1 { "" } else { "s" },
            r.cost
        ),
    }
}

/// Sends a `learn_look` request and waits for its result, reporting progress on standard
/// error (as JSON lines with `json`).
pub fn learn(client: &mut Client, req: LearnRequest, json: bool) -> anyhow::Result<LearnResult> {
    let id = "learn";
    client.send(&Request::LearnLook {
        id: id.into(),
        job: req,
    })?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        match client.next_event()? {
            Event::Progress {
                id: i,
                stage,
                fraction,
            } if i == id => {
                if json {
                    println!(
                        "{}",
                        json!({"type": "progress", "stage": stage, "fraction": fraction})
                    );
                } else if tty {
                    eprint!("\r\x1b[2K{:>3}% {stage}", (fraction * 100.0) as u32);
                }
            }
            Event::Done { id: i, result } if i == id => {
                if tty && !json {
                    eprint!("\r\x1b[2K");
                }
                return serde_json::from_value(Value::Object(result))
                    .context("the daemon's answer to learn_look");
            }
            Event::Error {
                id: i,
                code,
                message,
                ..
            } if i.as_deref() == Some(id) || i.is_none() => {
                if tty && !json {
                    eprint!("\r\x1b[2K");
                }
                bail!("{message} [{}]", code.as_str())
            }
            _ => {}
        }
    }
}

/// Where `enhance --same-look` keeps the look it learns: a folder of its own in the cache
/// folder (named by the time), the file named for the preset — so the outputs are named
/// as a preset's would be, and the photographer can apply the look again later (`--look`).
pub fn same_look_file(paths: &Paths, preset: &str) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let dir = paths.cache_dir.join("looks").join(secs.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(format!(
        "{}.look",
        crate::pipeline::names::component(preset)
    )))
}
