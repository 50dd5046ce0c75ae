//! Camera RAWs are decoded in a `luminary decode-runner FILE` child process, never in the
//! daemon.
//!
//! rawler allocates what a file's header claims before reading pixels. TIFF-structured
//! files are walked first (`checks::check_tiff_structure`), but CRW, CR3, RAF, MRW,
//! QuickTake… cannot be bounded that way, and a failed allocation aborts the process —
//! `catch_unwind` cannot stop it. So each RAW ingest re-executes the daemon's own binary
//! (like the plugin runners) with:
//!
//! * an address-space limit (`RLIMIT_AS`): `limits.decode_memory_mb`, by default enough for
//!   a decode at `limits.max_pixels` (`checks::decode_memory_limit`). Once the decoded size
//!   is known and within `max_pixels`, the limit is raised for rawler's develop of non-Bayer
//!   sensors, by that size only;
//! * a deadline (`limits.decode_timeout_s`), a CPU-time limit as a backstop, and on Linux
//!   death with the daemon (`PR_SET_PDEATHSIG`);
//! * the samples handed back through a nameless shared file (`shm::AnonymousShared`, the
//!   child's stdin): a memfd on Linux, so a killed daemon leaves nothing behind and no
//!   journal entry is needed. The header (size, Bayer pattern, levels, white balance,
//!   matrix, orientation) comes as one JSON line on the child's stdout, rawler's metadata
//!   as a second one, which the daemon waits for only when the file has no EXIF it can
//!   read itself (it reads that while the child decodes).
//!
//! This module only runs the child and hands its answers over ([`Child`]); the caller
//! (`ingest`) develops the samples straight from the shared mapping (no copy): the same
//! code on the same numbers as an in-process decode, so results are bit-identical.
//! The price, on a 24 MP DNG, is about 50–65 ms: mostly rawler building its camera tables
//! in each new process (~40 ms), then one `pwrite` of the samples into the memfd (~20 ms).
//! A child that aborts, crashes, overruns or is cancelled fails only its job: `too_large`
//! when it ran out of memory, `corrupt_input` otherwise, naming the file and the reason.

use std::io::{BufRead, BufReader, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checks::{self, Limits};
use super::confine;
use super::decode::{self, RawHeader};
use crate::error::{ErrorCode, JobError};

/// Decoder → daemon, one JSON object per line.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
// A handful per decode, read off a pipe: boxing the header buys nothing.
#[allow(clippy::large_enum_variant)]
enum Answer {
    /// The samples are in the shared file.
    Decoded(RawHeader),
    /// rawler refused the file (or panicked): the job's error.
    Failed { code: ErrorCode, message: String },
    /// rawler's metadata (second line, after `Decoded`).
    Metadata(Option<rawler::decoders::RawMetadata>),
}

// ---------------------------------------------------------------------------------------
// The decoder process.

/// Limits as the daemon passes them on the command line.
pub struct RunnerArgs<'a> {
    /// The RAW.
    pub file: &'a Path,
    /// `limits.max_pixels`.
    pub max_pixels: u64,
    /// Address space for parsing and decoding, bytes (0: none).
    pub memory: u64,
    /// The daemon's deadline, seconds (for the CPU-time backstop).
    pub timeout_s: f64,
    /// The daemon's process id (0: unknown).
    pub parent: u32,
    /// Windows: the name of the Job Object the daemon made for this decoder.
    pub job: Option<&'a str>,
}

/// Entry point of `luminary decode-runner`. Returns the exit code.
pub fn run(args: RunnerArgs<'_>) -> i32 {
    // Answers go to a private copy of stdout; stdout then points at stderr, so nothing a
    // decoder prints can corrupt them. stdin is the shared file.
    let io = match confine::take_stdio() {
        Ok(io) => io,
        Err(e) => {
            eprintln!("decode-runner: {e}");
            return 70;
        }
    };
    let mut out = std::io::BufWriter::new(io.out);
    let shared = io.shared;
    if !shared.metadata().is_ok_and(|m| m.is_file()) {
        eprintln!("decode-runner: stdin must be the shared file");
        return 70;
    }
    let develop_max = args
        .max_pixels
        .saturating_mul(decode::DEVELOP_BYTES_PER_PIXEL);
    let mut confined = match confine::confine_self(confine::Asked {
        memory: args.memory,
        develop_max,
        timeout_s: args.timeout_s,
        parent: args.parent,
        job: args.job,
    }) {
        Ok(Some(c)) => c,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("decode-runner: {e}");
            return 70;
        }
    };
    let mut develop_room = |pixels: u64| confined.allow_develop(pixels);
    // One line per panic, no backtrace: decoders' panics are expected on damaged files,
    // and a parallel decoder can panic once per row.
    std::panic::set_hook(Box::new(|info| eprintln!("decode-runner: {info}")));
    let limits = Limits {
        max_pixels: args.max_pixels,
        ..Limits::default()
    };
    let t0 = std::time::Instant::now();
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        decode::decode_raw(args.file, &limits, &mut develop_room)
    }));
    tracing::debug!("decoded in {:?}", t0.elapsed());
    let failed = |code: ErrorCode, message: String| Answer::Failed { code, message };
    let opened = match decoded {
        Ok(Ok((decoded, opened))) => {
            let bytes = decoded.sample_bytes();
            let t = std::time::Instant::now();
            let filled = crate::shm::write_shared(&shared, bytes);
            if let Err(e) = filled {
                let why = format!("cannot write the decoded RAW to shared memory: {e}");
                let _ = answer(&mut out, &failed(ErrorCode::Internal, why));
                return 0;
            }
            tracing::debug!("shared {} MB in {:?}", bytes.len() >> 20, t.elapsed());
            drop(shared);
            if answer(&mut out, &Answer::Decoded(decoded.header.clone())).is_err() {
                return 0;
            }
            opened
        }
        Ok(Err(e)) => {
            let _ = answer(&mut out, &failed(e.code, e.message));
            return 0;
        }
        Err(p) => {
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "decoder crashed".into());
            let e = JobError::file(
                ErrorCode::CorruptInput,
                args.file,
                format!("the RAW decoder failed on this file ({text})"),
            );
            let _ = answer(&mut out, &failed(e.code, e.message));
            return 0;
        }
    };
    tracing::debug!("decoder address space at its peak: {}", vm_peak());
    // Metadata matters only when the daemon found no EXIF; it stops us otherwise.
    let md = catch_unwind(AssertUnwindSafe(|| opened.metadata())).unwrap_or(None);
    let _ = answer(&mut out, &Answer::Metadata(md));
    0
}

/// The process's largest address space so far (Linux), for calibrating the limit.
fn vm_peak() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmPeak:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn answer(out: &mut impl Write, a: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(a).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

// ---------------------------------------------------------------------------------------
// The daemon's side.

/// Longest answer line read from a decoder (metadata is a few KB).
const MAX_LINE: u64 = 4 << 20;

/// The decoder process of one ingest; killed and reaped when dropped.
struct Decoder {
    child: std::process::Child,
    /// Its limits; dropped after the child (Windows: closing the job ends it).
    _confinement: confine::Confinement,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Decoder {
    /// Kills (if still running) and reaps it; returns how it ended and the tail of what it
    /// wrote to stderr.
    fn end(&mut self) -> (Option<std::process::ExitStatus>, String) {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        (status, err)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Waited {
    Line(String),
    Ended,
    Cancelled,
    TimedOut,
}

fn next_line(d: &Decoder, deadline: std::time::Instant, cancel: &crate::error::Cancel) -> Waited {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let now = std::time::Instant::now();
        if now >= deadline {
            return Waited::TimedOut;
        }
        let step = (deadline - now).min(std::time::Duration::from_millis(50));
        match d.lines.recv_timeout(step) {
            Ok(line) => return Waited::Line(line),
            Err(RecvTimeoutError::Disconnected) => return Waited::Ended,
            Err(RecvTimeoutError::Timeout) => {
                if cancel.load(Ordering::Relaxed) {
                    return Waited::Cancelled;
                }
            }
        }
    }
}

/// A decoder process at work on one RAW (see the module documentation).
pub(crate) struct Child {
    decoder: Decoder,
    shared: crate::shm::AnonymousShared,
    path: std::path::PathBuf,
    deadline: std::time::Instant,
    timeout: std::time::Duration,
    memory: u64,
}

/// Starts the decoder process for the RAW at `path` from the executable `exe`.
pub(crate) fn start(exe: &Path, path: &Path, limits: &Limits) -> Result<Child, JobError> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let memory = checks::decode_memory_limit(limits, file_len);
    let timeout = Duration::from_secs_f64(if limits.decode_timeout_s.is_finite() {
        limits.decode_timeout_s.clamp(0.05, 86_400.0)
    } else {
        120.0
    });
    let t0 = Instant::now();
    let shared = crate::shm::AnonymousShared::new()
        .map_err(|e| internal(path, "create shared memory", e))?;
    let stdin = shared
        .file()
        .try_clone()
        .map_err(|e| internal(path, "share memory", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("decode-runner")
        .arg("--max-pixels")
        .arg(limits.max_pixels.to_string())
        .arg("--memory")
        .arg(memory.to_string())
        .arg("--timeout-s")
        .arg(timeout.as_secs_f64().to_string())
        .arg("--parent")
        .arg(std::process::id().to_string())
        // A damaged file can make a decoder panic on thousands of rows at once; with
        // backtraces on, capturing each one took a header-only IIQ 11 s instead of 0.1 s.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let confinement = confine::prepare(&mut cmd, memory, timeout.as_secs_f64())
        .map_err(|e| internal(path, "limit the memory", e))?;
    cmd.arg("--").arg(path);
    let mut child = cmd
        .spawn()
        .map_err(|e| internal(path, "start a process", e))?;
    if let Err(e) = confinement.adopt(&child) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(internal(path, "limit the memory", e));
    }
    if let Some(how) = confinement.describe() {
        tracing::debug!("RAW decoder for {} runs in {how}", path.display());
    }
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match (&mut r).take(MAX_LINE).read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        // Keep the tail: the runtime's last words ("memory allocation of … failed").
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        let mut r = stderr;
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 16384 {
                tail.drain(..tail.len() - 8192);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    Ok(Child {
        decoder: Decoder {
            child,
            _confinement: confinement,
            lines: rx,
            stderr: Some(stderr),
        },
        shared,
        path: path.to_path_buf(),
        deadline: t0 + timeout,
        timeout,
        memory,
    })
}

fn internal(path: &Path, what: &str, e: std::io::Error) -> JobError {
    JobError::file(
        ErrorCode::Internal,
        path,
        format!("cannot {what} for the RAW decoder: {e}"),
    )
}

impl Child {
    /// Waits for the decoded header: the samples are then in shared memory.
    pub fn header(&mut self, cancel: &crate::error::Cancel) -> Result<RawHeader, JobError> {
        let path = self.path.clone();
        let corrupt = |why: String| JobError::file(ErrorCode::CorruptInput, &path, why);
        match next_line(&self.decoder, self.deadline, cancel) {
            Waited::Line(line) => match serde_json::from_str::<Answer>(&line) {
                Ok(Answer::Decoded(h)) => Ok(h),
                Ok(Answer::Failed { code, message }) => Err(JobError::new(code, message)),
                _ => Err(corrupt(
                    "the RAW decoder sent an unreadable answer".to_string(),
                )),
            },
            Waited::Cancelled => {
                self.decoder.end();
                Err(JobError::cancelled())
            }
            Waited::TimedOut => {
                self.decoder.end();
                Err(corrupt(format!(
                    "the RAW decoder did not finish within {:.0} s and was stopped (limits.decode_timeout_s in config.toml)",
                    self.timeout.as_secs_f64()
                )))
            }
            Waited::Ended => {
                let (status, err) = self.decoder.end();
                Err(died(&path, status, &err, self.memory))
            }
        }
    }

    /// rawler's metadata, sent after the header (None if the child has none or stops).
    pub fn metadata(
        &mut self,
        cancel: &crate::error::Cancel,
    ) -> Option<rawler::decoders::RawMetadata> {
        match next_line(&self.decoder, self.deadline, cancel) {
            Waited::Line(line) => match serde_json::from_str::<Answer>(&line) {
                Ok(Answer::Metadata(md)) => md,
                _ => None,
            },
            _ => None,
        }
    }

    /// Ends the process and maps the samples it left in shared memory.
    pub fn into_samples(self) -> Result<crate::shm::SharedBytes, JobError> {
        let Child {
            decoder,
            shared,
            path,
            ..
        } = self;
        drop(decoder);
        shared
            .map()
            .map_err(|e| internal(&path, "map the shared memory", e))
    }
}

/// The job's error for a decoder that ended without answering.
fn died(
    path: &Path,
    status: Option<std::process::ExitStatus>,
    stderr: &str,
    memory: u64,
) -> JobError {
    if let Some(asked) = checks::failed_allocation(stderr) {
        return checks::over_memory_limit(path, memory, asked);
    }
    let how = match status {
        Some(s) if out_of_cpu_time(s) => "used more CPU time than its deadline allows".to_string(),
        Some(s) => crate::process::describe_exit(s),
        None => "ended".to_string(),
    };
    let detail = if stderr.contains("has overflowed its stack") {
        " after overflowing its stack"
    } else {
        ""
    };
    tracing::warn!(
        "RAW decoder for {} {how}{detail}; its last words: {}",
        path.display(),
        stderr.trim()
    );
    JobError::file(
        ErrorCode::CorruptInput,
        path,
        format!("the RAW decoder {how}{detail} on this file"),
    )
}

/// Whether the system ended the decoder for its CPU-time limit.
fn out_of_cpu_time(status: std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal() == Some(libc::SIGXCPU)
    }
    #[cfg(windows)]
    {
        // A job's per-process time limit ends the process with ERROR_NOT_ENOUGH_QUOTA.
        status.code() == Some(windows_sys::Win32::Foundation::ERROR_NOT_ENOUGH_QUOTA as i32)
    }
}
