//! Plugins run in `luminary plugin-runner FILE` processes, never in the daemon.
//!
//! abi_stable cannot contain a segfault, a call to `exit`, a hang, or (across its own
//! boundaries) a panic: any of them would take the daemon and every other job down. So each
//! plugin library lives in its own child process — the daemon's own binary re-executed, as
//! sccache and rust-analyzer do — and the daemon talks to it over its stdin/stdout with the
//! same length-prefixed JSON frames as the client protocol. Every call has a deadline; a
//! runner that dies or overruns fails only the job that was using it, is restarted (with
//! backoff) for the next job, and after repeated crashes its plugin is quarantined.
//! Pixels do not go through the pipe: they travel in a shared memory file (see `shm`).
//!
//! That file is kept between pixel calls of the same size, mapped on both sides: on a
//! 24 MP photo, allocating and mapping its 288 MB of shared pages costs about 185 ms on a
//! 2-core VM (page by page, in both processes), several times the pixel function itself.
//! Kept, the next photo of a batch pays nothing for it. It is given back once the daemon
//! is idle ([`PluginHandle::release_pixels`]): the runner unmaps first, then the daemon
//! removes the file, so the pages go back to the system on every platform.

use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use luminary_plugin_api::host::LoadedPlugin;
use luminary_plugin_api::{EngineRequest, ImageFacts, PluginInfo, PresetDescriptor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Cancel, ErrorCode, JobError};
use crate::frame::{read_frame, write_frame};

/// Version of the daemon ↔ runner protocol (both are the same binary, but a daemon that
/// was upgraded while running could meet a newer runner binary).
const RUNNER_PROTOCOL: u32 = 2;

/// Runner → daemon, first frame.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Hello {
    Hello {
        protocol: u32,
        plugin_api: String,
        info: PluginInfo,
        presets: Result<Vec<PresetDescriptor>, String>,
        interfaces: Vec<String>,
    },
    LoadFailed {
        summary: String,
        detail: String,
    },
}

/// Daemon → runner.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    BuildRequest {
        preset: String,
        params: Map<String, Value>,
        facts: ImageFacts,
    },
    ProcessPixels {
        preset: String,
        params: Map<String, Value>,
        facts: ImageFacts,
        shm: PathBuf,
        /// Which buffer this is ([`PixelBuffer::id`]): the runner keeps its mapping
        /// while the id stays the same, and maps afresh when it changes.
        buffer: u64,
        width: u32,
        height: u32,
    },
    /// Unmap buffer `buffer` if it is the one kept: the daemon is about to remove it.
    ReleasePixels { buffer: u64 },
}

/// Runner → daemon, one per call.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    Ok { value: Value },
    Err { message: String },
}

// ---------------------------------------------------------------------------------------
// The runner process.

/// Entry point of `luminary plugin-runner FILE`. Returns the exit code.
pub fn run_runner(file: &Path) -> i32 {
    // Frames go to a private copy of stdout; stdout then points at stderr, so a plugin
    // that prints cannot corrupt the protocol.
    let mut out = match crate::process::private_stdout() {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            eprintln!("plugin-runner: cannot set up standard output: {e}");
            return 70;
        }
    };
    crate::process::quiet_crashes();
    let mut input = BufReader::new(io::stdin());

    let plugin = match LoadedPlugin::open(file) {
        Ok(p) => p,
        Err(e) => {
            let _ = write_frame(
                &mut out,
                &Hello::LoadFailed {
                    summary: e.reason,
                    detail: e.detail,
                },
            );
            return 0;
        }
    };
    let hello = Hello::Hello {
        protocol: RUNNER_PROTOCOL,
        plugin_api: luminary_plugin_api::host::host_api_version().to_string(),
        info: plugin.info().clone(),
        presets: plugin.presets(),
        interfaces: plugin.interfaces().into_iter().map(String::from).collect(),
    };
    if write_frame(&mut out, &hello).is_err() {
        return 0;
    }
    // The daemon's buffer of the last pixel call, still mapped, and its id.
    let mut kept: Option<(u64, crate::shm::SharedPixels)> = None;
    loop {
        let frame = match read_frame(&mut input) {
            Ok(Some(f)) => f,
            _ => return 0, // the daemon went away
        };
        let reply = match serde_json::from_slice::<Call>(&frame) {
            Err(e) => Reply::Err {
                message: format!("bad call: {e}"),
            },
            Ok(Call::BuildRequest {
                preset,
                params,
                facts,
            }) => match plugin.build_request(&preset, &params, &facts) {
                Ok(req) => Reply::Ok {
                    value: serde_json::to_value(req).unwrap_or(Value::Null),
                },
                Err(message) => Reply::Err { message },
            },
            Ok(Call::ProcessPixels {
                preset,
                params,
                facts,
                shm,
                buffer,
                width,
                height,
            }) => {
                let samples = width as usize * height as usize * 3;
                let mapped = kept
                    .as_ref()
                    .is_some_and(|(id, p)| *id == buffer && p.as_slice().len() == samples);
                let mut fresh = None;
                if !mapped {
                    match crate::shm::SharedPixels::open(&shm, samples) {
                        Ok(p) => fresh = Some(p),
                        Err(e) => {
                            let reply = Reply::Err {
                                message: format!("cannot map the shared pixels: {e}"),
                            };
                            if write_frame(&mut out, &reply).is_err() {
                                return 0;
                            }
                            continue;
                        }
                    }
                }
                let pixels = match (&mut fresh, &mut kept) {
                    (Some(p), _) | (None, Some((_, p))) => p,
                    (None, None) => unreachable!("mapped above"),
                };
                let reply = match plugin.process_pixels(
                    &preset,
                    &params,
                    &facts,
                    pixels.as_mut_slice(),
                    width,
                    height,
                ) {
                    Ok(done) => Reply::Ok {
                        value: Value::Bool(done),
                    },
                    Err(message) => Reply::Err { message },
                };
                // A large buffer stays mapped for the next photo (replacing the one kept
                // before); a small one is unmapped now, as the daemon removes it.
                if let Some(p) = fresh.filter(|_| keeps(samples)) {
                    kept = Some((buffer, p));
                }
                reply
            }
            Ok(Call::ReleasePixels { buffer }) => {
                if kept.as_ref().is_some_and(|(id, _)| *id == buffer) {
                    kept = None;
                }
                Reply::Ok { value: Value::Null }
            }
        };
        if write_frame(&mut out, &reply).is_err() {
            return 0;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon's side.

/// Limits for calls into a plugin.
#[derive(Clone, Debug)]
pub struct RunnerLimits {
    /// Deadline for describing presets and building requests.
    pub call_timeout: Duration,
    /// Deadline for a pixel function on a full-resolution photo.
    pub pixels_timeout: Duration,
    /// Crashes after which the plugin is quarantined.
    pub max_crashes: u32,
}

impl RunnerLimits {
    /// The limits `[plugins]` sets, each brought into a sane range.
    pub fn from_config(c: &crate::config::PluginsConfig) -> RunnerLimits {
        let secs = |s: f64| {
            Duration::from_secs_f64(if s.is_finite() {
                s.clamp(0.05, 86_400.0)
            } else {
                10.0
            })
        };
        RunnerLimits {
            call_timeout: secs(c.call_timeout_s),
            pixels_timeout: secs(c.pixels_timeout_s),
            max_crashes: c.max_crashes.max(1),
        }
    }
}

impl Default for RunnerLimits {
    fn default() -> Self {
        RunnerLimits {
            call_timeout: Duration::from_secs(10),
            pixels_timeout: Duration::from_secs(120),
            max_crashes: 3,
        }
    }
}

struct Runner {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    frames: Receiver<Option<Vec<u8>>>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a runner could not start.
pub enum StartError {
    /// The library is not a usable plugin (one line, and abi_stable's full report).
    Load { summary: String, detail: String },
    /// The runner process failed.
    Process(String),
}

fn spawn(file: &Path) -> Result<Runner, String> {
    let exe = crate::paths::self_exe()
        .map_err(|e| format!("cannot find the luminary executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("plugin-runner")
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::process::no_console_window(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start a plugin runner: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let stdin = BufWriter::new(child.stdin.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            match read_frame(&mut r) {
                Ok(Some(f)) => {
                    if tx.send(Some(f)).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    Ok(Runner {
        child,
        stdin,
        frames: rx,
    })
}

/// Buffers from this size on are kept between pixel calls, on both sides; smaller ones
/// (previews, contact sheets) cost little to make and go after their call.
const KEEP_PIXELS_FROM: usize = 16 << 20;

/// Whether a pixel buffer of `samples` floats is kept between calls.
fn keeps(samples: usize) -> bool {
    samples * 4 >= KEEP_PIXELS_FROM
}

/// Shared memory for one pixel call ([`PluginHandle::pixel_buffer`]).
pub struct PixelBuffer {
    /// Unique in this daemon: tells the runner whether it has this buffer mapped already.
    id: u64,
    shm: crate::shm::SharedPixels,
}

impl PixelBuffer {
    /// The samples.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.shm.as_mut_slice()
    }

    /// The samples, read-only.
    pub fn as_slice(&self) -> &[f32] {
        self.shm.as_slice()
    }
}

/// A plugin library and the runner process serving it.
pub struct PluginHandle {
    /// The library file.
    pub file: PathBuf,
    /// Its description.
    pub info: PluginInfo,
    /// Presets as the plugin listed them (validated by the registry).
    pub presets: Result<Vec<PresetDescriptor>, String>,
    /// Interface ids offered.
    pub interfaces: Vec<String>,
    limits: RunnerLimits,
    runner: Mutex<Option<Runner>>,
    /// The last pixel call's buffer, kept for the next (see the module documentation).
    /// Declared after `runner`: a dropped handle stops its runner before removing it.
    pixels: Mutex<Option<PixelBuffer>>,
    crashes: AtomicU32,
    quarantined: AtomicBool,
    last_crash: Mutex<Option<(Instant, String)>>,
}

impl PluginHandle {
    /// Starts a runner for `file` and reads its description.
    pub fn start(file: &Path, limits: RunnerLimits) -> Result<PluginHandle, StartError> {
        let runner = spawn(file).map_err(StartError::Process)?;
        let first = match runner.frames.recv_timeout(limits.call_timeout) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let mut runner = runner;
                let status = runner
                    .child
                    .wait()
                    .map(crate::process::describe_exit)
                    .unwrap_or_default();
                return Err(StartError::Load {
                    summary: format!("the plugin {status} while loading"),
                    detail: String::new(),
                });
            }
            Err(_) => {
                return Err(StartError::Load {
                    summary: format!(
                        "the plugin did not finish loading within {:?}",
                        limits.call_timeout
                    ),
                    detail: String::new(),
                })
            }
        };
        match serde_json::from_slice::<Hello>(&first) {
            Ok(Hello::Hello {
                protocol,
                info,
                presets,
                interfaces,
                ..
            }) if protocol == RUNNER_PROTOCOL => Ok(PluginHandle {
                file: file.to_path_buf(),
                info,
                presets,
                interfaces,
                limits,
                runner: Mutex::new(Some(runner)),
                pixels: Mutex::new(None),
                crashes: AtomicU32::new(0),
                quarantined: AtomicBool::new(false),
                last_crash: Mutex::new(None),
            }),
            Ok(Hello::Hello { protocol, .. }) => Err(StartError::Process(format!(
                "plugin runner speaks protocol {protocol}, expected {RUNNER_PROTOCOL}"
            ))),
            Ok(Hello::LoadFailed { summary, detail }) => Err(StartError::Load { summary, detail }),
            Err(e) => Err(StartError::Process(format!(
                "unreadable answer from the plugin runner: {e}"
            ))),
        }
    }

    /// Whether the plugin offers an interface.
    pub fn offers(&self, id: &str) -> bool {
        self.interfaces.iter().any(|i| i == id)
    }

    /// `loaded`, `restarting` (its runner died and restarts on the next call) or
    /// `quarantined`.
    pub fn state(&self) -> &'static str {
        if self.quarantined.load(Ordering::SeqCst) {
            "quarantined"
        } else if self.runner.lock().unwrap().is_none() {
            "restarting"
        } else {
            "loaded"
        }
    }

    /// Crashes so far and the last one's description.
    pub fn crash_report(&self) -> (u32, Option<String>) {
        (
            self.crashes.load(Ordering::SeqCst),
            self.last_crash
                .lock()
                .unwrap()
                .as_ref()
                .map(|(_, s)| s.clone()),
        )
    }

    fn fail(&self, what: &str, why: impl std::fmt::Display) -> JobError {
        JobError::new(
            ErrorCode::PluginFailed,
            format!(
                "plugin {} ({}) {why} while {what}",
                self.info.id,
                self.file.display()
            ),
        )
    }

    fn record_crash(&self, why: String) {
        let n = self.crashes.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::warn!("plugin {} {why} (crash {n})", self.file.display());
        *self.last_crash.lock().unwrap() = Some((Instant::now(), why));
        if n >= self.limits.max_crashes {
            self.quarantined.store(true, Ordering::SeqCst);
            tracing::warn!(
                "plugin {} quarantined after {n} crashes",
                self.file.display()
            );
        }
    }

    /// Sends one call and waits for its reply within `timeout`, watching `cancel`.
    fn call(
        &self,
        call: &Call,
        what: &str,
        timeout: Duration,
        cancel: Option<&Cancel>,
    ) -> Result<Value, JobError> {
        if self.quarantined.load(Ordering::SeqCst) {
            let (n, last) = self.crash_report();
            return Err(JobError::new(
                ErrorCode::PluginFailed,
                format!(
                    "plugin {} is quarantined after {n} crashes (last: {}); fix or remove {}, then run `luminary plugins reload`",
                    self.info.id,
                    last.unwrap_or_default(),
                    self.file.display()
                ),
            ));
        }
        let mut slot = self.runner.lock().unwrap();
        if slot.is_none() {
            // Restart after a crash, backing off a little more after each one.
            let n = self.crashes.load(Ordering::SeqCst).min(5);
            if let Some((at, _)) = &*self.last_crash.lock().unwrap() {
                let backoff = Duration::from_millis(50 << n);
                if let Some(wait) = backoff.checked_sub(at.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let runner = spawn(&self.file).map_err(|e| self.fail(what, e))?;
            match runner.frames.recv_timeout(self.limits.call_timeout) {
                Ok(Some(_hello)) => *slot = Some(runner),
                _ => return Err(self.fail(what, "could not be restarted")),
            }
        }
        let runner = slot.as_mut().expect("runner present");
        let sent = write_frame(&mut runner.stdin, call).and_then(|_| runner.stdin.flush());
        let started = Instant::now();
        let outcome = if sent.is_err() {
            Err(None)
        } else {
            loop {
                match runner.frames.recv_timeout(Duration::from_millis(50)) {
                    Ok(Some(frame)) => break Ok(frame),
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => break Err(None),
                    Err(RecvTimeoutError::Timeout) => {
                        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                            break Err(Some("cancel"));
                        }
                        if started.elapsed() > timeout {
                            break Err(Some("timeout"));
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(frame) => match serde_json::from_slice::<Reply>(&frame) {
                Ok(Reply::Ok { value }) => Ok(value),
                Ok(Reply::Err { message }) => Err(self.fail(what, format!("failed: {message}"))),
                Err(e) => Err(self.fail(what, format!("sent an unreadable answer ({e})"))),
            },
            Err(Some("cancel")) => {
                // Stopping a plugin mid-call is the only way to stop it; it restarts next time.
                *slot = None;
                Err(JobError::cancelled())
            }
            Err(Some(_timeout)) => {
                *slot = None; // kills and reaps it
                let why = format!("did not answer within {timeout:?} and was stopped");
                self.record_crash(why.clone());
                Err(self.fail(what, why))
            }
            Err(None) => {
                let mut runner = slot.take().expect("runner present");
                let status = runner
                    .child
                    .wait()
                    .map(crate::process::describe_exit)
                    .unwrap_or_else(|_| "died".into());
                self.record_crash(status.clone());
                Err(self.fail(what, status))
            }
        }
    }

    /// Asks the plugin for an engine request.
    pub fn build_request(
        &self,
        preset: &str,
        params: &Map<String, Value>,
        facts: &ImageFacts,
    ) -> Result<EngineRequest, JobError> {
        let what = format!("building preset '{preset}'");
        let call = Call::BuildRequest {
            preset: preset.into(),
            params: params.clone(),
            facts: facts.clone(),
        };
        let value = self.call(&call, &what, self.limits.call_timeout, None)?;
        serde_json::from_value(value)
            .map_err(|e| self.fail(&what, format!("returned an invalid request ({e})")))
    }

    /// Shared memory for a pixel call on `samples` floats: for a large one, the buffer the
    /// last call gave back when it has that size (its pages already allocated, and mapped
    /// on both sides); else a new one. Hand it back with [`Self::keep_pixel_buffer`].
    pub fn pixel_buffer(&self, samples: usize) -> io::Result<PixelBuffer> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let kept = if keeps(samples) {
            self.pixels.lock().unwrap().take()
        } else {
            None // a small call leaves the kept buffer for the next large one
        };
        match kept {
            Some(b) if b.as_slice().len() == samples => {
                tracing::debug!("pixel buffer {} kept from the last call", b.id);
                return Ok(b);
            }
            Some(b) => self.release(b),
            None => {}
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shm = crate::shm::SharedPixels::create(samples)?;
        tracing::debug!(
            "pixel buffer {id}: new, {} MB in {}",
            (samples * 4) >> 20,
            shm.path().display()
        );
        Ok(PixelBuffer { id, shm })
    }

    /// Keeps a large pixel call's buffer for the next call (one at a time: a second is
    /// released); a small one is removed now (the runner has unmapped it already).
    pub fn keep_pixel_buffer(&self, buffer: PixelBuffer) {
        if !keeps(buffer.as_slice().len()) {
            return;
        }
        let mut slot = self.pixels.lock().unwrap();
        if slot.is_none() {
            *slot = Some(buffer);
        } else {
            drop(slot);
            self.release(buffer);
        }
    }

    /// Gives the kept pixel buffer back to the system (the daemon is idle). Returns whether
    /// there was one.
    pub fn release_pixels(&self) -> bool {
        let kept = self.pixels.lock().unwrap().take();
        kept.map(|b| self.release(b)).is_some()
    }

    /// Has the runner unmap `buffer`, then removes it. A runner that is not running has
    /// nothing mapped, and is not started for this.
    fn release(&self, buffer: PixelBuffer) {
        let running = self.runner.lock().unwrap().is_some();
        if running && !self.quarantined.load(Ordering::SeqCst) {
            let call = Call::ReleasePixels { buffer: buffer.id };
            if let Err(e) = self.call(
                &call,
                "releasing shared pixels",
                self.limits.call_timeout,
                None,
            ) {
                tracing::debug!("{}", e.message);
            }
        }
    }

    /// Runs the preset's pixel function on the shared pixels. `Ok(false)`: it has none.
    #[allow(clippy::too_many_arguments)]
    pub fn process_pixels(
        &self,
        preset: &str,
        params: &Map<String, Value>,
        facts: &ImageFacts,
        pixels: &PixelBuffer,
        width: usize,
        height: usize,
        cancel: &Cancel,
    ) -> Result<bool, JobError> {
        let what = format!("processing pixels for preset '{preset}'");
        let call = Call::ProcessPixels {
            preset: preset.into(),
            params: params.clone(),
            facts: facts.clone(),
            shm: pixels.shm.path().to_path_buf(),
            buffer: pixels.id,
            width: width as u32,
            height: height as u32,
        };
        let value = self.call(&call, &what, self.limits.pixels_timeout, Some(cancel))?;
        Ok(value.as_bool().unwrap_or(false))
    }
}
