//! The daemon: accepts connections, runs jobs, streams their events.
//!
//! Threads, not async: jobs are CPU-bound pixel work, and a thread per connection keeps
//! cancellation simple — the connection's reader sees end-of-stream the moment a client
//! goes away and flips the cancel flag of every job that client started. Jobs run on
//! their own threads but take one of `max_jobs` slots first, so a batch of 500 photos
//! queues instead of exhausting memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::{Cancel, ErrorCode};
use crate::lifetime::{self, DaemonLock, OwnedSocket, Reason};
use crate::paths::Paths;
use crate::pipeline::{run_job, EnhanceRequest};
use crate::plugins::{search_path, Registry};
use crate::protocol::{
    self, read_frame, write_frame, Event, FrameError, Request, PROTOCOL_VERSION,
};
use crate::transport::{self, Connection};

/// Admission for jobs: CPU slots (`max_jobs`) and a memory budget. A job waits until a
/// slot and its estimated memory are free; one larger than the whole budget runs alone.
///
/// A job waiting on an AI engine needs no CPU: it lends its slot for the wait (keeping
/// its memory) and takes one back after, ahead of jobs not yet started, so it can finish
/// and free its memory. So a batch keeps the engine's `concurrency` calls in flight
/// while the pixel work stays at `max_jobs`, and memory bounds how many wait.
struct Slots {
    state: Mutex<Admission>,
    budget_mb: u64,
    cv: Condvar,
}

struct Admission {
    /// CPU slots free.
    free: usize,
    /// Megabytes held by admitted jobs (running or waiting on an engine).
    mb: u64,
    /// Jobs back from an engine waiting for a slot: they go first.
    returning: usize,
}

impl Slots {
    fn new(slots: usize, budget_mb: u64) -> Slots {
        Slots {
            state: Mutex::new(Admission {
                free: slots.max(1),
                mb: 0,
                returning: 0,
            }),
            budget_mb,
            cv: Condvar::new(),
        }
    }

    /// Waits for a slot and `mb` of the budget, giving up when `cancel` is set. Returns
    /// whether they were taken.
    fn acquire(&self, mb: u64, cancel: &Cancel) -> bool {
        let mut st = self.state.lock().unwrap();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            let fits = st.mb + mb <= self.budget_mb || st.mb == 0;
            if st.free > 0 && st.returning == 0 && fits {
                st.free -= 1;
                st.mb += mb;
                return true;
            }
            st = self
                .cv
                .wait_timeout(st, std::time::Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    /// Runs `wait` with the caller's CPU slot lent to other jobs, then takes a slot back
    /// (not giving up on cancel: the job must hold a slot to end and release it). A panic
    /// in `wait` takes the slot back too before it goes on, so the job's release still
    /// balances.
    fn lend_during(&self, wait: &mut dyn FnMut()) {
        {
            let mut st = self.state.lock().unwrap();
            st.free += 1;
            self.cv.notify_all();
        }
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(wait));
        self.take_back();
        if let Err(panic) = waited {
            std::panic::resume_unwind(panic);
        }
    }

    fn take_back(&self) {
        let mut st = self.state.lock().unwrap();
        st.returning += 1;
        while st.free == 0 {
            st = self
                .cv
                .wait_timeout(st, std::time::Duration::from_millis(100))
                .unwrap()
                .0;
        }
        st.free -= 1;
        st.returning -= 1;
        self.cv.notify_all();
    }

    fn release(&self, mb: u64) {
        let mut st = self.state.lock().unwrap();
        st.free += 1;
        st.mb = st.mb.saturating_sub(mb);
        self.cv.notify_all();
    }
}

/// Shared daemon state.
struct State {
    config: Config,
    paths: Paths,
    registry: RwLock<Registry>,
    engines: crate::engine::remote::Engines,
    /// Photos and edits kept for previews (`[preview] memory_mb`).
    live: crate::pipeline::live::Live,
    slots: Slots,
    shutdown: AtomicBool,
    started: Instant,
    running: AtomicUsize,
    waiting: AtomicUsize,
    done: AtomicU64,
    failed: AtomicU64,
    /// Cancel flags of every job in flight, so `stop` can cancel them all.
    all_jobs: Mutex<HashMap<u64, Cancel>>,
    /// Jobs accepted and not yet answered (waiting or running), across all clients.
    in_flight: AtomicUsize,
    /// Open connections, and when the last one closed: together with `in_flight`, what
    /// makes the daemon idle.
    connections: AtomicUsize,
    last_active: Mutex<Instant>,
    /// When the last job ended, and whether the free memory went back since.
    last_job_end: Mutex<Instant>,
    gave_back: AtomicBool,
    next_job: AtomicU64,
}

/// The sending side of a connection; the lock keeps frames from interleaving.
type Writer = Arc<Mutex<Arc<Connection>>>;

fn send(w: &Writer, ev: &Event) {
    // A client that went away is not an error of the daemon.
    let guard = w.lock().unwrap();
    let mut conn: &Connection = &guard;
    let _ = write_frame(&mut conn, ev);
}

fn done(id: &str, result: Value) -> Event {
    let result = match result {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    Event::Done {
        id: id.to_string(),
        result,
    }
}

/// How often the daemon checks its socket, its lock and idleness.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs the daemon until `stop`. Blocks.
pub fn serve(paths: Paths, config: Config) -> anyhow::Result<()> {
    transport::prepare_dir(&paths.socket)
        .with_context(|| format!("cannot prepare the socket folder for {}", paths.socket))?;
    let lock = DaemonLock::take(&paths.socket)?;
    // We hold the lock, so a socket file still there belongs to a daemon that died.
    #[cfg(unix)]
    if std::path::Path::new(&paths.socket).exists() {
        tracing::info!("removing stale socket {}", paths.socket);
        let _ = std::fs::remove_file(&paths.socket);
    }
    // A daemon killed mid-job leaves temporary files; the journal knows them.
    crate::journal::init(&paths.data_dir);
    for left in crate::journal::recover() {
        tracing::info!(
            "removed {} left by a daemon that stopped mid-job",
            left.display()
        );
    }
    let listener = transport::listen(&paths.socket)
        .with_context(|| format!("cannot listen on {}", paths.socket))?;
    let socket = OwnedSocket::created(&paths.socket);

    let registry = Registry::discover(
        &search_path(&paths.data_dir, &config.daemon.plugin_dirs),
        &crate::plugins::runner::RunnerLimits::from_config(&config.plugins),
    );
    let n_presets = registry.presets().count();
    tracing::info!(
        "{} plugin libraries, {n_presets} presets",
        registry.reports().len()
    );
    let engines = crate::engine::remote::Engines::open(
        &config,
        &paths.config_file,
        &paths.cache_dir,
        &paths.data_dir,
    );
    let live = crate::pipeline::live::Live::new(config.preview.memory_mb);
    crate::pipeline::live::prune(&paths.cache_dir.join("previews"), 0);
    let state = Arc::new(State {
        live,
        slots: Slots::new(config.daemon.max_jobs, config.daemon.memory_budget_mb()),
        config,
        paths: paths.clone(),
        registry: RwLock::new(registry),
        engines,
        shutdown: AtomicBool::new(false),
        started: Instant::now(),
        running: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        all_jobs: Mutex::new(HashMap::new()),
        in_flight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        last_active: Mutex::new(Instant::now()),
        last_job_end: Mutex::new(Instant::now()),
        gave_back: AtomicBool::new(true),
        next_job: AtomicU64::new(0),
    });
    #[cfg(unix)]
    {
        // SIGTERM and SIGINT stop the daemon like `luminary stop`: running jobs get the
        // grace period, then are cancelled; the socket is removed.
        use signal_hook::consts::{SIGINT, SIGTERM};
        let state = state.clone();
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: stopping");
                stop(&state);
            }
        });
    }
    tracing::info!(
        "Luminary {} serving on {}",
        env!("CARGO_PKG_VERSION"),
        paths.socket
    );

    // Accepting blocks, so it has its own thread; this one watches what ends the daemon.
    // `stop` no longer depends on waking the accept loop through the socket, which fails
    // when the socket file is gone; the process ends with this function, accept or not.
    {
        use interprocess::local_socket::traits::ListenerExt as _;
        let state = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if state.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => {
                        let state = state.clone();
                        std::thread::spawn(move || handle_connection(stream, state));
                    }
                    Err(e) => tracing::warn!("failed connection: {e}"),
                }
            }
        });
    }
    while !state.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep(WATCH_EVERY);
        give_back_when_idle(&state);
        let idle_for = (state.connections.load(Ordering::SeqCst) == 0
            && state.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| state.last_active.lock().unwrap().elapsed());
        if let Some(why) =
            lifetime::should_stop(&lock, &socket, idle_for, state.config.daemon.idle_exit_s)
        {
            tracing::info!("stopping: {why}");
            if why == Reason::Idle {
                // Nobody is connected: take the name away first, so a client arriving now
                // starts a fresh daemon instead of meeting one that is going.
                socket.remove();
            }
            stop(&state);
        }
    }
    // Running jobs finish within the grace period or are cancelled at its end (see
    // `stop`); wait for them so no temporary file outlives the daemon.
    let grace =
        std::time::Duration::from_secs_f64(state.config.daemon.shutdown_grace_s.clamp(0.0, 3600.0));
    let deadline = Instant::now() + grace + std::time::Duration::from_secs(30);
    while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Connection threads may still hold the state (and so the plugins): the buffers the
    // plugins keep are removed here, not left to a drop that may never come.
    state.registry.read().unwrap().release_pixels();
    socket.remove();
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

/// After a batch, the memory its jobs freed goes back to the system (`memory`), and so do
/// the shared buffers plugins keep for pixel functions: once no job has run for
/// `memory::GIVE_BACK_AFTER`.
fn give_back_when_idle(state: &State) {
    if state.in_flight.load(Ordering::SeqCst) > 0
        || state.gave_back.load(Ordering::SeqCst)
        || state.last_job_end.lock().unwrap().elapsed() < crate::memory::GIVE_BACK_AFTER
    {
        return;
    }
    state.gave_back.store(true, Ordering::SeqCst);
    let before = crate::memory::resident_bytes();
    let buffers = state.registry.read().unwrap().release_pixels();
    if buffers > 0 {
        tracing::debug!("idle: released {buffers} plugin pixel buffer(s)");
    }
    crate::memory::give_back();
    if let (Some(b), Some(a)) = (before, crate::memory::resident_bytes()) {
        tracing::debug!("idle: resident memory {} MB -> {} MB", b >> 20, a >> 20);
    }
}

fn status(state: &State) -> Value {
    let reg = state.registry.read().unwrap();
    let held_mb = {
        let (b, e) = state.live.held();
        ((b + e) as u64) >> 20
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL_VERSION,
        "pid": std::process::id(),
        "socket": state.paths.socket,
        "uptime_s": state.started.elapsed().as_secs(),
        "jobs_running": state.running.load(Ordering::SeqCst),
        "jobs_waiting": state.waiting.load(Ordering::SeqCst),
        "jobs_done": state.done.load(Ordering::SeqCst),
        "jobs_failed": state.failed.load(Ordering::SeqCst),
        "max_jobs": state.config.daemon.max_jobs,
        "memory_budget_mb": state.slots.budget_mb,
        "preview_memory_mb": held_mb,
        "resident_mb": crate::memory::resident_bytes().map(|b| b >> 20),
        "plugins": reg.reports().len(),
        "presets": reg.presets().count(),
        "config_file": state.paths.config_file,
        "log_file": state.paths.log_file(),
    })
}

/// Counts a connection as open for as long as it lives.
struct Open(Arc<State>);

impl Open {
    fn new(state: &Arc<State>) -> Open {
        state.connections.fetch_add(1, Ordering::SeqCst);
        Open(state.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        *self.0.last_active.lock().unwrap() = Instant::now();
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle_connection(stream: Connection, state: Arc<State>) {
    let _open = Open::new(&state);
    if !transport::peer_is_same_user(&stream) {
        tracing::warn!("refused a connection from another user");
        return;
    }
    let stream = Arc::new(stream);
    let mut rx: &Connection = &stream;
    let tx: Writer = Arc::new(Mutex::new(stream.clone()));
    let jobs: Arc<Mutex<HashMap<String, Cancel>>> = Arc::default();

    // Handshake.
    let hello = match read_frame(&mut rx) {
        Ok(Some(b)) => serde_json::from_slice::<Request>(&b).ok(),
        _ => None,
    };
    match hello {
        Some(Request::Hello { protocol, client }) => {
            if protocol::major(&protocol) != protocol::major(PROTOCOL_VERSION) {
                send(
                    &tx,
                    &Event::error(
                        None,
                        ErrorCode::ProtocolMismatch,
                        format!(
                            "{client} speaks protocol {protocol}, this daemon (Luminary {}) speaks {PROTOCOL_VERSION}; \
                             update the older of the two",
                            env!("CARGO_PKG_VERSION")
                        ),
                    ),
                );
                return;
            }
            tracing::debug!("client {client} connected");
            send(
                &tx,
                &Event::Welcome {
                    protocol: PROTOCOL_VERSION.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    capabilities: protocol::CAPABILITIES
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
            );
        }
        _ => {
            send(
                &tx,
                &Event::error(
                    None,
                    ErrorCode::BadRequest,
                    "the first message must be hello {protocol, client}",
                ),
            );
            return;
        }
    }

    loop {
        let frame = match read_frame(&mut rx) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::TooLarge(n)) => {
                send(
                    &tx,
                    &Event::error(
                        None,
                        ErrorCode::BadRequest,
                        format!(
                            "frame of {n} bytes refused: the limit is {} bytes",
                            protocol::MAX_FRAME
                        ),
                    ),
                );
                break;
            }
            Err(FrameError::Io(_)) => break,
        };
        let req: Request = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                // Name the id when the frame had one, so the client can match the error.
                let id = serde_json::from_slice::<Value>(&frame)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(String::from));
                send(
                    &tx,
                    &Event::error(id, ErrorCode::BadRequest, format!("malformed request: {e}")),
                );
                continue;
            }
        };
        match req {
            Request::Hello { .. } => send(
                &tx,
                &Event::error(None, ErrorCode::BadRequest, "hello was already received"),
            ),
            Request::Status { id } => {
                let mut v = status(&state);
                v["socket_access"] = json!(transport::access_list(&state.paths.socket, &stream));
                send(&tx, &done(&id, v))
            }
            Request::Presets { id } => {
                let reg = state.registry.read().unwrap();
                let presets: Vec<Value> = reg
                    .presets()
                    .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
                    .collect();
                send(&tx, &done(&id, json!({ "presets": presets })));
            }
            Request::Plugins { id } => {
                let reg = state.registry.read().unwrap();
                send(&tx, &done(&id, json!({ "plugins": reg.reports() })));
            }
            Request::ReloadPlugins { id } => {
                let fresh = Registry::discover(
                    &search_path(&state.paths.data_dir, &state.config.daemon.plugin_dirs),
                    &crate::plugins::runner::RunnerLimits::from_config(&state.config.plugins),
                );
                // Jobs in flight hold the old registry until they finish; then its
                // runners stop.
                let reports = fresh.reports();
                *state.registry.write().unwrap() = fresh;
                send(&tx, &done(&id, json!({ "plugins": reports })));
            }
            Request::Cancel { id, job } => {
                let found = jobs
                    .lock()
                    .unwrap()
                    .get(&job)
                    .map(|c| c.store(true, Ordering::SeqCst))
                    .is_some();
                send(&tx, &done(&id, json!({ "cancelled": found })));
            }
            Request::Stop { id } => {
                send(&tx, &done(&id, json!({ "stopping": true })));
                stop(&state);
                break;
            }
            Request::Estimate { id, job } => {
                let reg = state.registry.read().unwrap();
                match crate::pipeline::estimate::estimate(
                    &job,
                    &state.config,
                    &state.paths.config_file,
                    &reg,
                    &state.engines,
                ) {
                    Ok(e) => send(
                        &tx,
                        &done(&id, serde_json::to_value(&e).unwrap_or(Value::Null)),
                    ),
                    Err(e) => send(&tx, &Event::error(Some(id), e.code, e.message)),
                }
            }
            Request::Enhance { .. } | Request::Preview { .. } | Request::LearnLook { .. } => {
                let (id, work) = match req {
                    Request::Enhance { id, job } => (id, Work::Enhance(job)),
                    Request::Preview { id, job } => (id, Work::Preview(job)),
                    Request::LearnLook { id, job } => (id, Work::LearnLook(job)),
                    _ => unreachable!("matched above"),
                };
                if jobs.lock().unwrap().contains_key(&id) {
                    send(
                        &tx,
                        &Event::error(
                            Some(id),
                            ErrorCode::BadRequest,
                            "a request with this id is still running",
                        ),
                    );
                    continue;
                }
                if state.shutdown.load(Ordering::SeqCst) {
                    send(
                        &tx,
                        &Event::error(
                            Some(id),
                            ErrorCode::Busy,
                            "the daemon is shutting down; try again in a moment",
                        ),
                    );
                    continue;
                }
                let mine = jobs.lock().unwrap().len();
                if mine >= state.config.daemon.max_jobs_per_client {
                    send(&tx, &Event::error(Some(id), ErrorCode::Busy, format!(
                        "this client already has {mine} jobs waiting or running (daemon.max_jobs_per_client); \
                         send more when some have finished")));
                    continue;
                }
                let total = state.in_flight.fetch_add(1, Ordering::SeqCst);
                if total >= state.config.daemon.max_jobs_total {
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                    send(&tx, &Event::error(Some(id), ErrorCode::Busy, format!(
                        "the daemon already has {total} jobs waiting or running (daemon.max_jobs_total); try again later")));
                    continue;
                }
                let cancel = Cancel::default();
                jobs.lock().unwrap().insert(id.clone(), cancel.clone());
                let (state, tx, jobs) = (state.clone(), tx.clone(), jobs.clone());
                std::thread::spawn(move || {
                    run_work(&state, &tx, &id, &work, &cancel);
                    jobs.lock().unwrap().remove(&id);
                    *state.last_job_end.lock().unwrap() = Instant::now();
                    state.gave_back.store(false, Ordering::SeqCst);
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
    // The client is gone (or stopped us): its unfinished jobs have nobody to report to.
    for cancel in jobs.lock().unwrap().values() {
        cancel.store(true, Ordering::SeqCst);
    }
}

/// A request that runs as a job: a thread, a slot, progress events, cancellation.
enum Work {
    Enhance(EnhanceRequest),
    Preview(crate::pipeline::live::PreviewRequest),
    LearnLook(crate::pipeline::looks::LearnRequest),
}

impl Work {
    /// Memory the job may need, for its slot: a preview of a photo whose bases are kept
    /// needs next to nothing.
    fn memory_mb(&self, state: &State) -> u64 {
        match self {
            Work::Enhance(job) => crate::ingest::estimate_memory_mb(&job.source),
            // One reference at a time.
            Work::LearnLook(job) => job
                .sources
                .iter()
                .map(|s| crate::ingest::estimate_memory_mb(s))
                .max()
                .unwrap_or(0),
            Work::Preview(job) => {
                let kept = crate::pipeline::live::SourceId::of(&job.source)
                    .ok()
                    .is_some_and(|id| state.live.bases(&id).is_some());
                if kept {
                    0
                } else {
                    crate::ingest::estimate_memory_mb(&job.source)
                }
            }
        }
    }
}

fn run_work(state: &State, tx: &Writer, id: &str, work: &Work, cancel: &Cancel) {
    let key = state.next_job.fetch_add(1, Ordering::SeqCst);
    state.all_jobs.lock().unwrap().insert(key, cancel.clone());
    state.waiting.fetch_add(1, Ordering::SeqCst);
    send(
        tx,
        &Event::Progress {
            id: id.into(),
            stage: "queued".into(),
            fraction: 0.0,
        },
    );
    let mb = work.memory_mb(state);
    let got_slot = state.slots.acquire(mb, cancel);
    state.waiting.fetch_sub(1, Ordering::SeqCst);
    let outcome = if got_slot {
        state.running.fetch_add(1, Ordering::SeqCst);
        let progress = |stage: &str, fraction: f32| {
            send(
                tx,
                &Event::Progress {
                    id: id.into(),
                    stage: stage.into(),
                    fraction,
                },
            );
        };
        let registry = state.registry.read().unwrap();
        // The wait for an AI engine gives this job's CPU slot to another meanwhile.
        let lend = |wait: &mut dyn FnMut()| state.slots.lend_during(wait);
        // A bug must fail this job, not take the daemon down.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match work {
            Work::Enhance(job) => run_job(
                job,
                &state.config,
                &registry,
                &state.engines,
                &progress,
                &lend,
                cancel,
            )
            .map(|r| {
                tracing::info!(
                    "{} → {} ({} ms)",
                    r.input.display(),
                    r.output.display(),
                    r.timings_ms["total"]
                );
                serde_json::to_value(&r).unwrap_or(Value::Null)
            }),
            Work::Preview(job) => crate::pipeline::live::run_preview(
                job,
                &state.config,
                &registry,
                &state.engines,
                &state.live,
                &state.paths.cache_dir,
                &progress,
                &lend,
                cancel,
            )
            .map(|r| {
                tracing::debug!(
                    "preview of {} ({}, {} ms)",
                    r.input.display(),
                    r.reused,
                    r.timings_ms["total"]
                );
                serde_json::to_value(&r).unwrap_or(Value::Null)
            }),
            Work::LearnLook(job) => crate::pipeline::looks::run_learn(
                job,
                &state.config,
                &registry,
                &state.engines,
                &progress,
                &lend,
                cancel,
            )
            .map(|r| {
                tracing::info!(
                    "look {} learned from {} photo(s), {} engine call(s)",
                    r.output.display(),
                    r.references.len(),
                    r.engine_calls
                );
                serde_json::to_value(&r).unwrap_or(Value::Null)
            }),
        }))
        .unwrap_or_else(|_| {
            Err(crate::error::JobError::new(
                ErrorCode::Internal,
                "internal error (see the daemon log)",
            ))
        });
        drop(registry);
        state.running.fetch_sub(1, Ordering::SeqCst);
        r
    } else {
        Err(crate::error::JobError::cancelled())
    };
    state.all_jobs.lock().unwrap().remove(&key);
    match outcome {
        Ok(result) => {
            state.done.fetch_add(1, Ordering::SeqCst);
            send(tx, &done(id, result));
        }
        Err(e) => {
            state.failed.fetch_add(1, Ordering::SeqCst);
            tracing::info!("job failed: {}: {}", e.code.as_str(), e.message);
            send(tx, &Event::error(Some(id.into()), e.code, e.message));
        }
    }
    // Only now, after the answer went out: the next job's events follow this one's end.
    if got_slot {
        state.slots.release(mb);
    }
}

/// Stops accepting work, lets running jobs finish for `shutdown_grace_s`, then cancels
/// what is left. The accept loop ends at once; `serve` waits for the jobs.
fn stop(state: &Arc<State>) {
    if state.shutdown.swap(true, Ordering::SeqCst) {
        return;
    }
    let grace =
        std::time::Duration::from_secs_f64(state.config.daemon.shutdown_grace_s.clamp(0.0, 3600.0));
    let s = state.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + grace;
        while s.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for cancel in s.all_jobs.lock().unwrap().values() {
            cancel.store(true, Ordering::SeqCst);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// One CPU slot: a job waiting on an engine lets another start, and when its answer
    /// comes it goes ahead of jobs not yet started; the memory it holds stays taken.
    #[test]
    fn a_job_at_the_engine_lends_its_slot_and_comes_back_first() {
        let slots = Arc::new(Slots::new(1, 1000));
        let cancel = Cancel::default();
        assert!(slots.acquire(600, &cancel)); // A
        let (at_engine, answer) = (mpsc::channel::<()>(), mpsc::channel::<()>());
        let (order_tx, order) = mpsc::channel::<&str>();
        std::thread::scope(|s| {
            let (sl, tx) = (&slots, order_tx.clone());
            let (reached, release) = (at_engine.0, answer.1);
            s.spawn(move || {
                sl.lend_during(&mut || {
                    reached.send(()).unwrap();
                    release.recv().unwrap();
                });
                tx.send("A back").unwrap();
                sl.release(600);
            });
            at_engine.1.recv().unwrap();
            // B fits in the memory left and takes the lent slot.
            assert!(slots.acquire(300, &cancel));
            assert_eq!(slots.state.lock().unwrap().mb, 900);
            // A's answer arrives while B runs; C is admitted after A, not before.
            answer.0.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let (sl, tx) = (&slots, order_tx.clone());
            s.spawn(move || {
                assert!(sl.acquire(50, &Cancel::default()));
                tx.send("C").unwrap();
                sl.release(50);
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                order.try_recv().is_err(),
                "someone ran while B held the slot"
            );
            slots.release(300); // B ends
        });
        assert_eq!(order.try_iter().collect::<Vec<_>>(), ["A back", "C"]);
        let st = slots.state.lock().unwrap();
        assert_eq!((st.free, st.mb, st.returning), (1, 0, 0));
    }

    /// A wait that panics (the daemon fails that job) still gives the slot back to the job,
    /// so its release does not leave an extra slot behind.
    #[test]
    fn a_panicking_wait_keeps_the_slot_count() {
        let slots = Slots::new(1, 1000);
        assert!(slots.acquire(100, &Cancel::default()));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slots.lend_during(&mut || panic!("engine bug"))
        }));
        assert!(r.is_err());
        assert_eq!(
            slots.state.lock().unwrap().free,
            0,
            "the job holds its slot again"
        );
        slots.release(100);
        let st = slots.state.lock().unwrap();
        assert_eq!((st.free, st.mb, st.returning), (1, 0, 0));
    }
}
