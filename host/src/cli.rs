//! Command-line interface: parses arguments, talks to the daemon, prints results.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::cli_args::{absolute_as_written, parse_params, read_file_list, write_atomically, Input};
use crate::client::Client;
use crate::color::OutputSpace;
use crate::config::{Config, Format};
use crate::paths::Paths;
use crate::pipeline::{EnhanceRequest, OutputRequest};
use crate::protocol::{Event, Request};

/// Luminary: AI presets for photographers, inside the editor they already use.
#[derive(Parser, Debug)]
#[command(name = "luminary", version, about, propagate_version = true)]
pub struct Cli {
    /// Socket (or pipe name) of the daemon [env: LUMINARY_SOCKET]
    #[arg(long, global = true)]
    pub socket: Option<String>,
    /// Configuration file [env: LUMINARY_CONFIG]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// `luminary cache …`
#[derive(Subcommand, Debug)]
pub enum CacheAction {
    /// Remove every cached answer (the next run of each edit calls the engine again).
    Clear,
    /// Entries and size.
    Stats,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (clients start it automatically when needed).
    Serve {
        /// Append the daemon's log to this file instead of standard error (clients start
        /// the daemon with no standard handles at all).
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
    },
    /// Enhance photos with a preset; results are written beside the originals.
    Enhance(EnhanceArgs),
    /// A small rendering of what `enhance` would make, to judge before the full file (on a
    /// paid engine, the first preview is the engine call; `enhance` then reuses it free).
    Preview(crate::cli_cost::PreviewArgs),
    /// What enhancing photos would cost on a paid engine: cached or not, price, totals,
    /// and the spending caps. Nothing is called or decoded.
    Estimate(crate::cli_cost::EstimateArgs),
    /// A shoot's look: learn it once from reference photos, apply it to any number with
    /// `enhance --look`, export it as a .cube LUT.
    #[command(subcommand)]
    Look(crate::cli_look::LookCommand),
    /// List the presets the loaded plugins offer, or render them all on a photo.
    Presets {
        /// One JSON object with every preset and its parameter schema.
        #[arg(long)]
        json: bool,
        /// Render a labelled contact sheet of every preset on PHOTO into this file.
        #[arg(long, value_name = "OUT", requires = "photo")]
        sheet: Option<PathBuf>,
        /// The photo for --sheet.
        photo: Option<PathBuf>,
    },
    /// List plugin libraries and whether they loaded; reload or check them.
    Plugins {
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: Option<PluginsAction>,
    },
    /// Show whether the daemon runs and what it is doing.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Do not start a daemon just to ask.
        #[arg(long)]
        no_spawn: bool,
    },
    /// Stop the daemon.
    Stop,
    /// List the engines: key present, server reachable (checked without spending money).
    Engines {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What engine calls cost, by day and engine (from the usage ledger).
    Usage {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only the last N days.
        #[arg(long)]
        days: Option<u32>,
    },
    /// The cache of engine answers (re-running a preset never pays twice).
    Cache {
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Time each stage of a job on FILE, in this process, and compare with LibRaw.
    Bench(crate::bench::BenchArgs),
    /// Put an editor bridge where the editor finds it.
    Install {
        #[command(subcommand)]
        editor: InstallTarget,
    },
    /// Internal: host one plugin library for the daemon (plugins never run in the daemon).
    #[command(hide = true)]
    PluginRunner {
        /// The plugin library.
        file: PathBuf,
    },
    /// Internal: decode one camera RAW for the daemon, under a memory limit (RAW decoders
    /// never run in the daemon). stdin is the shared file the samples go to.
    #[command(hide = true)]
    DecodeRunner {
        /// `limits.max_pixels`.
        #[arg(long)]
        max_pixels: u64,
        /// Address space for parsing and decoding, in bytes (0: unlimited).
        #[arg(long)]
        memory: u64,
        /// The daemon's deadline, in seconds.
        #[arg(long)]
        timeout_s: f64,
        /// The daemon's process id.
        #[arg(long, default_value_t = 0)]
        parent: u32,
        /// Windows: the Job Object the daemon made for this decoder.
        #[arg(long)]
        job: Option<String>,
        /// The RAW.
        file: PathBuf,
    },
}

/// `luminary install …`
#[derive(Subcommand, Debug)]
pub enum InstallTarget {
    /// The darktable script: copied into darktable's `lua/` folder and loaded from `luarc`.
    Darktable {
        /// darktable's config folder (default: every darktable install found here,
        /// Flatpak included).
        #[arg(long)]
        configdir: Option<PathBuf>,
    },
    /// The Lightroom Classic plug-in (Library > Plug-in Extras, and an export service).
    Lightroom {
        /// A folder to put Luminary.lrplugin in (default: Lightroom's Modules folder).
        #[arg(long)]
        dest: Option<PathBuf>,
    },
    /// The GIMP 3 plug-in: Filters > Enhance > Luminary.
    Gimp {
        /// A plug-ins folder (the plug-in goes to DIR/luminary/luminary.py; default: every
        /// GIMP 3 install found here, Flatpak included).
        #[arg(long)]
        dest: Option<PathBuf>,
    },
}

/// `luminary plugins …`
#[derive(Subcommand, Debug)]
pub enum PluginsAction {
    /// Pick up new, rebuilt or quarantined plugins without restarting the daemon.
    Reload,
    /// A plugin author's test: load FILE in a runner, validate its presets and schemas,
    /// and run every preset on a real photo, reporting time per megapixel.
    Check {
        /// The plugin library.
        file: PathBuf,
        /// Photo to run the presets on (default: a built-in 500 px photograph).
        #[arg(long)]
        photo: Option<PathBuf>,
    },
}

/// `luminary enhance`
#[derive(Args, Debug)]
pub struct EnhanceArgs {
    /// Photos to enhance (RAW, DNG, TIFF, JPEG, PNG).
    #[arg(required_unless_present = "files_from")]
    pub inputs: Vec<PathBuf>,
    /// Also enhance the photos listed in this file, one path per line (UTF-8), optionally
    /// followed by a TAB and that photo's output file. Editors pass whole selections this
    /// way, in one run: Windows' cmd.exe cuts command lines at 8,191 characters, and each
    /// run would flash a console window there.
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,
    /// Preset id (see `luminary presets`).
    #[arg(long, short, required_unless_present_any = ["look", "prompt"])]
    pub preset: Option<String>,
    /// A free-text edit instead of a preset: say what to change ("remove the power lines").
    /// Needs an AI engine; the rest of the photograph is kept, as with any preset.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["preset", "look"])]
    pub prompt: Option<String>,
    /// Apply this learned look (`luminary look learn`) instead of a preset's engine: no
    /// engine call at all, the same look on every photo.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["engine", "params", "same_look"])]
    pub look: Option<PathBuf>,
    /// One engine call for the whole batch: learn the preset's look on the first photo,
    /// then apply that same look to every photo (the look is kept in the cache folder and
    /// its path printed, for `--look` later).
    #[arg(long)]
    pub same_look: bool,
    /// Strength of the effect, 0 (original) to 1 (full); the preset's default if omitted.
    #[arg(long, short)]
    pub intensity: Option<f64>,
    /// Preset parameter, repeatable: --param strength=0.5
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Engine: local (offline, default), gemini, openai, fal, replicate, comfyui.
    #[arg(long)]
    pub engine: Option<String>,
    /// Output format.
    #[arg(long, value_parser = ["tiff", "jpeg", "png"])]
    pub format: Option<String>,
    /// Output colour space.
    #[arg(long, value_parser = ["srgb", "display-p3", "adobe-rgb", "prophoto"])]
    pub color_space: Option<String>,
    /// Output file (one input only). An existing file is never replaced: -2, -3… is added.
    #[arg(long, conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Output folder (default: beside each original).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Print JSON lines: progress events, then one result per input.
    #[arg(long)]
    pub json: bool,
    /// Also write the result lines to this file (replaced atomically at the end).
    #[arg(long)]
    pub result_file: Option<PathBuf>,
    /// Append progress lines to this file as they happen.
    #[arg(long)]
    pub progress_file: Option<PathBuf>,
    /// Fail instead of starting a daemon.
    #[arg(long)]
    pub no_spawn: bool,
    /// Cancel when this file appears (for editors whose scripts cannot stop a process,
    /// like Lightroom's): the running jobs are cancelled and the command exits with 130.
    #[arg(long)]
    pub cancel_file: Option<PathBuf>,
}

/// Entry point; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::DecodeRunner {
            max_pixels,
            memory,
            timeout_s,
            parent,
            job,
            file,
        } => {
            return Ok(crate::ingest::runner::run(
                crate::ingest::runner::RunnerArgs {
                    file,
                    max_pixels: *max_pixels,
                    memory: *memory,
                    timeout_s: *timeout_s,
                    parent: *parent,
                    job: job.as_deref(),
                },
            ))
        }
        Command::PluginRunner { .. } => {}
        // Every command that may decode a RAW (the daemon, bench, sheets) does it in a
        // decoder process of this executable.
        _ => match crate::paths::self_exe() {
            Ok(exe) => crate::ingest::set_raw_decoding(crate::ingest::RawDecoding::Process(exe)),
            Err(e) => {
                tracing::warn!("RAWs are decoded in this process, without a memory limit: {e}")
            }
        },
    }
    let paths = Paths::resolve(cli.config.clone(), cli.socket.clone())?;
    match cli.command {
        Command::Serve { log_file } => {
            if let Some(log) = &log_file {
                crate::spawn::log_to(log)
                    .with_context(|| format!("cannot open the log {}", log.display()))?;
            }
            let config = Config::load(&paths.config_file)?;
            match crate::server::serve(paths, config) {
                Err(e)
                    if e.downcast_ref::<crate::lifetime::LockError>()
                        .is_some_and(|l| matches!(l, crate::lifetime::LockError::Held { .. })) =>
                {
                    eprintln!("error: {e:#}");
                    Ok(crate::lifetime::EXIT_ALREADY_SERVING)
                }
                r => r.map(|()| 0),
            }
        }
        Command::Enhance(args) => enhance(&paths, args),
        Command::Preview(args) => crate::cli_cost::preview(&paths, args),
        Command::Estimate(args) => crate::cli_cost::estimate(&paths, args),
        Command::Look(cmd) => crate::cli_look::run(&paths, cmd),
        Command::Presets {
            sheet: Some(out),
            photo: Some(photo),
            ..
        } => {
            let written = crate::sheet::run(&paths, &out, &photo)?;
            println!("{}", written.display());
            Ok(0)
        }
        Command::Presets { json, .. } => {
            let mut c = Client::connect(&paths, true)?;
            let r = c.call(
                &Request::Presets {
                    id: "presets".into(),
                },
                "presets",
            )?;
            if json {
                println!("{}", Value::Object(r));
            } else {
                for p in r
                    .get("presets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "{:<18} {:<24} {} (intensity {}, {})",
                        p["id"].as_str().unwrap_or(""),
                        p["name"].as_str().unwrap_or(""),
                        p["description"].as_str().unwrap_or(""),
                        p["default_intensity"],
                        p["kind"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        Command::Plugins {
            json,
            action: Some(PluginsAction::Check { file, photo }),
        } => crate::plugin_check::run(&paths, &file, photo.as_deref(), json),
        Command::Plugins { json, action } => {
            let mut c = Client::connect(&paths, true)?;
            let r = match action {
                Some(PluginsAction::Reload) => c.call(
                    &Request::ReloadPlugins {
                        id: "reload".into(),
                    },
                    "reload",
                )?,
                _ => c.call(
                    &Request::Plugins {
                        id: "plugins".into(),
                    },
                    "plugins",
                )?,
            };
            if json {
                println!("{}", Value::Object(r));
            } else {
                for p in r
                    .get("plugins")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = p
                        .pointer("/info/name")
                        .and_then(Value::as_str)
                        .unwrap_or("-");
                    let version = p
                        .pointer("/info/version")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    println!(
                        "{} {name} {version} [{}]",
                        p["file"].as_str().unwrap_or(""),
                        p["state"].as_str().unwrap_or("")
                    );
                    if let Some(ids) = p["presets"].as_array().filter(|a| !a.is_empty()) {
                        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                        println!("    presets: {}", ids.join(", "));
                    }
                    for problem in p["problems"].as_array().into_iter().flatten() {
                        println!("    problem: {}", problem.as_str().unwrap_or(""));
                    }
                }
            }
            Ok(0)
        }
        Command::Status { json, no_spawn } => {
            let mut c = match Client::connect(&paths, !no_spawn) {
                Ok(c) => c,
                Err(e) if no_spawn => {
                    if json {
                        println!("{}", json!({"running": false, "socket": paths.socket}));
                    } else {
                        println!("not running ({e})");
                    }
                    return Ok(3);
                }
                Err(e) => return Err(e),
            };
            let mut r = c.call(
                &Request::Status {
                    id: "status".into(),
                },
                "status",
            )?;
            r.insert("running".into(), Value::Bool(true));
            if json {
                println!("{}", Value::Object(r));
            } else {
                for (k, v) in &r {
                    println!(
                        "{k:>14}: {}",
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    );
                }
            }
            Ok(0)
        }
        Command::Stop => {
            match Client::connect(&paths, false) {
                Ok(mut c) => {
                    c.call(&Request::Stop { id: "stop".into() }, "stop")?;
                    // Wait until the socket is gone so a following `serve` can start.
                    let t = std::time::Instant::now();
                    while crate::transport::connect(&paths.socket).is_ok()
                        && t.elapsed().as_secs() < 15
                    {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    eprintln!("stopped");
                }
                Err(_) => eprintln!("no daemon was running"),
            }
            Ok(0)
        }
        Command::Bench(args) => crate::bench::run(&paths, args),
        Command::Engines { json } => crate::engine::commands::engines(&paths, json),
        Command::Usage { json, days } => crate::engine::commands::usage(&paths, json, days),
        Command::Cache { json, action } => {
            crate::engine::commands::cache(&paths, matches!(action, CacheAction::Clear), json)
        }
        Command::Install {
            editor: InstallTarget::Darktable { configdir },
        } => {
            println!(
                "{}",
                crate::install::install(crate::install::Editor::Darktable, configdir.as_deref())?
            );
            Ok(0)
        }
        Command::Install {
            editor: InstallTarget::Lightroom { dest },
        } => {
            println!(
                "{}",
                crate::install::install(crate::install::Editor::Lightroom, dest.as_deref())?
            );
            Ok(0)
        }
        Command::Install {
            editor: InstallTarget::Gimp { dest },
        } => {
            println!(
                "{}",
                crate::install::install(crate::install::Editor::Gimp, dest.as_deref())?
            );
            Ok(0)
        }
        Command::PluginRunner { file } => Ok(crate::plugins::runner::run_runner(&file)),
        Command::DecodeRunner { .. } => unreachable!("handled above"),
    }
}

struct Sinks {
    json: bool,
    progress_file: Option<std::fs::File>,
    results: Vec<Value>,
}

impl Sinks {
    fn progress(&mut self, line: &Value) {
        if self.json {
            println!("{line}");
        }
        if let Some(f) = &mut self.progress_file {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }
}

fn enhance(paths: &Paths, args: EnhanceArgs) -> anyhow::Result<i32> {
    let mut inputs: Vec<Input> = args
        .inputs
        .iter()
        .map(|p| Input {
            path: p.clone(),
            out: None,
        })
        .collect();
    if let Some(list) = &args.files_from {
        let listed = read_file_list(list)?;
        if listed.is_empty() && inputs.is_empty() {
            bail!("{}: the list of photos is empty", list.display());
        }
        inputs.extend(listed);
    }
    if args.out.is_some() && inputs.len() > 1 {
        bail!(
            "--out names one file, but {} photos were given; use --out-dir",
            inputs.len()
        );
    }
    if args.out_dir.is_some() && inputs.iter().any(|i| i.out.is_some()) {
        bail!("the list of photos names output files, and --out-dir another folder: use one");
    }
    let mut params = parse_params(&args.params)?;
    if let Some(text) = &args.prompt {
        // The free-text edit is the built-in `prompt` preset with the text as its parameter.
        params.insert("prompt".into(), Value::String(text.clone()));
    }
    let format = args
        .format
        .as_deref()
        .map(|f| serde_json::from_value::<Format>(json!(f)))
        .transpose()?;
    let color_space = args
        .color_space
        .as_deref()
        .map(|c| serde_json::from_value::<OutputSpace>(json!(c)))
        .transpose()?;
    let abs = |p: &Path| absolute_as_written(p);

    let progress_file = match &args.progress_file {
        Some(p) => Some(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => None,
    };
    let mut sinks = Sinks {
        json: args.json,
        progress_file,
        results: Vec::new(),
    };
    let mut client = Client::connect(paths, !args.no_spawn)?;
    let preset = match &args.prompt {
        Some(_) => crate::pipeline::prompt::ID.to_string(),
        None => args.preset.clone().unwrap_or_default(),
    };
    // On a paid engine: the batch's estimate first (with --same-look, only the reference
    // is sent to the engine), and a question above the threshold when a person is at the
    // terminal. A learned look costs nothing.
    if args.look.is_none() {
        let sources: Vec<PathBuf> = inputs.iter().map(|i| abs(&i.path)).collect();
        let estimate = crate::cli_cost::fetch_estimate(
            &mut client,
            crate::pipeline::estimate::EstimateRequest {
                sources: if args.same_look {
                    sources[..1].to_vec()
                } else {
                    sources
                },
                preset: preset.clone(),
                params: params.clone(),
                engine: args.engine.clone(),
            },
        );
        match estimate {
            Ok(e) => {
                if !crate::cli_cost::confirm_batch(&e, args.json)? {
                    eprintln!("nothing was enhanced");
                    return Ok(1);
                }
            }
            // The jobs will say what is wrong (unknown preset, bad parameter) photo by photo.
            Err(e) => tracing::debug!("no estimate: {e:#}"),
        }
    }
    let mut look = args.look.as_deref().map(abs);
    let mut learned = None;
    if args.same_look {
        let req = crate::pipeline::looks::LearnRequest {
            sources: vec![abs(&inputs[0].path)],
            preset: preset.clone(),
            params: params.clone(),
            engine: args.engine.clone(),
            out: crate::cli_look::same_look_file(paths, &preset)?,
        };
        let r = match crate::cli_look::learn(&mut client, req, args.json) {
            Ok(r) => r,
            Err(e) => {
                if let Some(file) = &args.result_file {
                    let line = json!({"type": "result", "ok": false, "message": format!("{e:#}")});
                    write_atomically(file, &format!("{line}\n"))?;
                }
                return Err(e);
            }
        };
        look = Some(r.output.clone());
        learned = Some(r);
    }
    if let Some(flag) = args.cancel_file.clone() {
        // Leaving closes the connection, and the daemon cancels every job of a client
        // that went away: nothing is half-written, nothing keeps running.
        let result_file = args.result_file.clone();
        std::thread::spawn(move || loop {
            if flag.exists() {
                if let Some(r) = &result_file {
                    let line = json!({"type": "result", "ok": false, "code": "cancelled", "message": "cancelled"});
                    let _ = write_atomically(r, &format!("{line}\n"));
                }
                std::process::exit(130);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
    }

    let mut pending: HashMap<String, PathBuf> = HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
        let id = (i + 1).to_string();
        let out = input.out.as_deref().or(args.out.as_deref());
        let job = EnhanceRequest {
            source: abs(&input.path),
            preset: preset.clone(),
            look: look.clone(),
            intensity: args.intensity,
            params: if look.is_some() {
                Map::new()
            } else {
                params.clone()
            },
            engine: if look.is_some() {
                None
            } else {
                args.engine.clone()
            },
            output: OutputRequest {
                format,
                color_space,
                path: out.map(abs),
                dir: args.out_dir.as_deref().map(abs),
            },
        };
        client.send(&Request::Enhance {
            id: id.clone(),
            job,
        })?;
        pending.insert(id, input.path.clone());
    }

    let total = inputs.len();
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(1000 * total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        b
    });
    let mut fractions: HashMap<String, f32> = HashMap::new();
    let mut failures = 0;
    while !pending.is_empty() {
        let ev = client.next_event()?;
        match ev {
            Event::Progress {
                id,
                stage,
                fraction,
            } => {
                let input = pending.get(&id).cloned().unwrap_or_default();
                sinks.progress(&json!({"type": "progress", "input": input, "index": id, "stage": stage, "fraction": fraction, "total": total}));
                fractions.insert(id, fraction);
                if let Some(b) = &bar {
                    b.set_position((fractions.values().sum::<f32>() * 1000.0) as u64);
                    b.set_message(format!(
                        "{} — {stage}",
                        input
                            .file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default()
                    ));
                }
            }
            Event::Done { id, mut result } => {
                let Some(input) = pending.remove(&id) else {
                    continue;
                };
                result.insert("type".into(), json!("result"));
                result.insert("ok".into(), json!(true));
                // The photo's place in the run (1-based, as in progress lines): results
                // come as jobs finish, not in list order.
                result.insert("index".into(), json!(id));
                fractions.insert(id, 1.0);
                let line = Value::Object(result);
                if args.json {
                    println!("{line}");
                } else {
                    let msg = format!(
                        "{} → {}",
                        input.display(),
                        line["output"].as_str().unwrap_or("?")
                    );
                    match &bar {
                        Some(b) => b.println(msg),
                        None => println!("{msg}"),
                    }
                    for note in line["notes"].as_array().into_iter().flatten() {
                        let msg = format!("  note: {}", note.as_str().unwrap_or_default());
                        match &bar {
                            Some(b) => b.println(msg),
                            None => println!("{msg}"),
                        }
                    }
                }
                sinks.results.push(line);
            }
            Event::Error {
                id: Some(id),
                code,
                message,
                retryable,
            } => {
                let Some(input) = pending.remove(&id) else {
                    continue;
                };
                failures += 1;
                let line = json!({"type": "result", "ok": false, "index": id, "input": abs(&input), "code": code.as_str(), "message": message, "retryable": retryable});
                fractions.insert(id, 1.0);
                if args.json {
                    println!("{line}");
                } else {
                    let msg = format!("error: {message} [{}]", code.as_str());
                    match &bar {
                        Some(b) => b.println(msg),
                        None => eprintln!("{msg}"),
                    }
                }
                sinks.results.push(line);
            }
            Event::Error {
                id: None,
                code,
                message,
                ..
            } => bail!("{}: {message}", code.as_str()),
            Event::Welcome { .. } => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(r) = &learned {
        // "1 engine call for 48 photos ($0.039)": what --same-look saved.
        let summary = json!({
            "type": "summary",
            "photos": total,
            "engine_calls": r.engine_calls,
            "cached": r.cached,
            "cost": r.cost,
            "look": r.output,
            "engine": r.engine,
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "{} for {total} photo{} — the same look on every one, saved as {}",
                crate::cli_look::calls_line(r),
                if total == 1 { "" } else { "s" },
                r.output.display()
            );
        }
        sinks.results.push(summary);
    }
    if let Some(path) = &args.result_file {
        let text: String = sinks.results.iter().map(|l| format!("{l}\n")).collect();
        write_atomically(path, &text)?;
    }
    Ok(if failures > 0 { 1 } else { 0 })
}
