//! How the RAW decoder process is held in: its memory, its CPU time, its death with the
//! daemon, and its standard handles. The only platform code of the decoder process.
//!
//! * Unix: `RLIMIT_AS` (soft at the parse-and-decode budget, hard with room for a develop
//!   at `max_pixels`, raised by the decoded size only), `RLIMIT_CPU` as a backstop, and on
//!   Linux `PR_SET_PDEATHSIG`.
//! * Windows: a Job Object the daemon creates before starting the decoder, with a commit
//!   limit (`JOB_OBJECT_LIMIT_PROCESS_MEMORY`), a CPU-time limit, death with the daemon
//!   (`KILL_ON_JOB_CLOSE`: the daemon holds the only lasting handle) and no error dialog on a
//!   crash. The decoder waits until it is in the job before it reads a byte of the file, so
//!   there is no moment when it runs unconfined; it raises its own limit for a develop by
//!   opening the job by name for that one call. It is started with no console window.
//!
//! Either way a failed allocation ends the decoder with the runtime's "memory allocation of
//! N bytes failed", which the daemon turns into `too_large` (`checks::failed_allocation`).

use std::fs::File;

/// What the decoder writes its answers to, and the shared file it fills.
pub(super) struct ChildIo {
    /// The shared file (the process's standard input).
    pub shared: File,
    /// A private copy of standard output: the process's own standard output then points
    /// at standard error, so nothing a decoder prints can corrupt the answers.
    pub out: File,
}

/// Takes the decoder process's standard handles apart (see [`ChildIo`]). Call first, while
/// only one thread exists.
pub(super) fn take_stdio() -> Result<ChildIo, String> {
    let out = crate::process::private_stdout()
        .map_err(|e| format!("cannot set up standard output: {e}"))?;
    #[cfg(unix)]
    // SAFETY: descriptor 0 is ours from here on; nothing else in this process reads stdin.
    let shared = unsafe { std::os::fd::FromRawFd::from_raw_fd(0) };
    #[cfg(windows)]
    let shared = windows::stdin_file()?;
    Ok(ChildIo { shared, out })
}

/// The decoder's side of its limits, set up by [`confine_self`].
pub(super) struct Confined {
    /// The parse-and-decode budget, bytes (0: none).
    memory: u64,
    /// The most it may be raised to for a develop.
    hard: u64,
    #[cfg(windows)]
    job: Option<String>,
}

/// What the daemon told the decoder about its limits (its command line).
pub(super) struct Asked<'a> {
    /// Bytes for parsing and decoding (0: none).
    pub memory: u64,
    /// Bytes a develop may add at `max_pixels`.
    pub develop_max: u64,
    /// The daemon's deadline, seconds.
    pub timeout_s: f64,
    /// The daemon's process id (0: unknown).
    pub parent: u32,
    /// Windows: the name of the job the daemon made for this decoder.
    pub job: Option<&'a str>,
}

/// Puts the decoder under its limits, or says why it cannot run. `Ok(None)`: the daemon
/// is already gone, so there is nothing to do.
pub(super) fn confine_self(asked: Asked<'_>) -> Result<Option<Confined>, String> {
    let hard = asked.memory.saturating_add(asked.develop_max);
    #[cfg(unix)]
    {
        // Windows-only; the parent's pid is read on Linux only (death signals).
        let _ = (asked.job, asked.parent);
        #[cfg(target_os = "linux")]
        // SAFETY: plain system calls.
        unsafe {
            // Die with the daemon thread that started us; if it is already gone, go.
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if asked.parent != 0 && libc::getppid() as u32 != asked.parent {
                return Ok(None);
            }
        }
        // A backstop for a decoder orphaned where death signals do not exist.
        let cpu = cpu_seconds(asked.timeout_s);
        unix::set_limit(libc::RLIMIT_CPU, cpu, cpu + 5);
        // Tight while rawler parses headers and decodes; the hard limit leaves room for a
        // develop at `max_pixels`, granted by the size actually decoded.
        if asked.memory > 0 && !unix::set_limit(libc::RLIMIT_AS, asked.memory, hard) {
            return Err(format!(
                "cannot limit memory: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Some(Confined {
            memory: asked.memory,
            hard,
        }))
    }
    #[cfg(windows)]
    {
        let _ = (asked.parent, asked.timeout_s);
        crate::process::quiet_crashes();
        if let Some(name) = asked.job {
            windows::wait_until_in_job(name)?;
        }
        Ok(Some(Confined {
            memory: asked.memory,
            hard,
            job: asked.job.map(str::to_string),
        }))
    }
}

impl Confined {
    /// Raises the memory limit by what a develop of `pixels` needs, up to the hard limit.
    pub fn allow_develop(&mut self, pixels: u64) {
        if self.memory == 0 {
            return;
        }
        let room = pixels.saturating_mul(super::decode::DEVELOP_BYTES_PER_PIXEL);
        let limit = self.memory.saturating_add(room).min(self.hard);
        #[cfg(unix)]
        unix::set_limit(libc::RLIMIT_AS, limit, self.hard);
        #[cfg(windows)]
        if let Some(name) = &self.job {
            if let Err(e) = windows::set_job_memory(name, limit) {
                eprintln!("decode-runner: cannot raise the memory limit for develop: {e}");
            }
        }
    }
}

/// CPU seconds the decoder may use: its deadline on every core, plus a margin.
fn cpu_seconds(timeout_s: f64) -> u64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (timeout_s.clamp(1.0, 86_400.0) * threads + 10.0) as u64
}

#[cfg(unix)]
mod unix {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub type Resource = libc::__rlimit_resource_t;
    #[cfg(all(unix, not(all(target_os = "linux", target_env = "gnu"))))]
    pub type Resource = libc::c_int;

    pub fn set_limit(resource: Resource, soft: u64, hard: u64) -> bool {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: a plain system call on a valid struct.
        unsafe { libc::setrlimit(resource, &lim) == 0 }
    }
}

/// The daemon's side: what must exist before the decoder starts and live until it ends.
/// Dropping it ends a decoder still running (Windows: its job is closed).
pub(super) struct Confinement {
    #[cfg(windows)]
    job: windows::Job,
}

/// Prepares `cmd` (the decoder's command line) for confinement: on Windows the decoder's
/// job, named on its command line, and no console window.
pub(super) fn prepare(
    cmd: &mut std::process::Command,
    memory: u64,
    timeout_s: f64,
) -> std::io::Result<Confinement> {
    #[cfg(unix)]
    {
        // glibc reserves 64 MB of address space per thread's arena; two are plenty here
        // and keep the limit independent of the core count.
        cmd.env("MALLOC_ARENA_MAX", "2");
        let _ = (memory, timeout_s);
        Ok(Confinement {})
    }
    #[cfg(windows)]
    {
        let job = windows::Job::create(memory, cpu_seconds(timeout_s))?;
        cmd.arg("--job").arg(&job.name);
        crate::process::no_console_window(cmd);
        Ok(Confinement { job })
    }
}

impl Confinement {
    /// Puts the started decoder into its job (Windows; it waits for that before decoding).
    pub fn adopt(&self, child: &std::process::Child) -> std::io::Result<()> {
        #[cfg(windows)]
        {
            self.job.assign(child)
        }
        #[cfg(unix)]
        {
            let _ = child;
            Ok(())
        }
    }

    /// What holds the decoder in, for the debug log (Windows: its job, the limit set and
    /// what the system reports back; wine stores no job limits and reports none).
    pub fn describe(&self) -> Option<String> {
        #[cfg(windows)]
        {
            Some(self.job.describe())
        }
        #[cfg(unix)]
        {
            None
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::os::windows::io::{AsRawHandle, FromRawHandle};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_INPUT_HANDLE};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, IsProcessInJob,
        JobObjectExtendedLimitInformation, OpenJobObjectW, QueryInformationJobObject,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        JOB_OBJECT_LIMIT_PROCESS_MEMORY, JOB_OBJECT_LIMIT_PROCESS_TIME,
    };
    use windows_sys::Win32::System::SystemServices::{JOB_OBJECT_QUERY, JOB_OBJECT_SET_ATTRIBUTES};
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(Some(0)).collect()
    }

    /// A handle closed on drop.
    struct Owned(HANDLE);

    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: owned here, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// Standard input as a file: the daemon gives the shared file there.
    pub fn stdin_file() -> Result<File, String> {
        // SAFETY: the process's standard input handle, taken over for good.
        unsafe {
            let input = GetStdHandle(STD_INPUT_HANDLE);
            if input.is_null() || input as isize == -1 {
                return Err("standard input must be the shared file".into());
            }
            Ok(File::from_raw_handle(input as _))
        }
    }

    fn open(name: &str, access: u32) -> io::Result<Owned> {
        let w = wide(name);
        // SAFETY: a NUL-terminated name; the handle is owned by the result.
        let h = unsafe { OpenJobObjectW(access, 0, w.as_ptr()) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Owned(h))
    }

    /// Waits (up to 10 s) until the daemon has put this process into the job `name`.
    pub fn wait_until_in_job(name: &str) -> Result<(), String> {
        let job =
            open(name, JOB_OBJECT_QUERY).map_err(|e| format!("cannot open the job {name}: {e}"))?;
        let t = Instant::now();
        loop {
            let mut inside = 0;
            // SAFETY: valid handles and an out-parameter on the stack.
            let ok = unsafe { IsProcessInJob(GetCurrentProcess(), job.0, &mut inside) };
            if ok != 0 && inside != 0 {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err("the daemon did not put the decoder into its job".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn limits(job: HANDLE) -> io::Result<JOBOBJECT_EXTENDED_LIMIT_INFORMATION> {
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        // SAFETY: the struct is the size the class expects.
        let ok = unsafe {
            QueryInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                (&mut info as *mut JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }

    fn set_limits(job: HANDLE, info: &JOBOBJECT_EXTENDED_LIMIT_INFORMATION) -> io::Result<()> {
        // SAFETY: as above.
        let ok = unsafe {
            SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                (info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The decoder's side: raises its own job's memory limit to `bytes`.
    pub fn set_job_memory(name: &str, bytes: u64) -> io::Result<()> {
        let job = open(name, JOB_OBJECT_QUERY | JOB_OBJECT_SET_ATTRIBUTES)?;
        let mut info = limits(job.0)?;
        info.ProcessMemoryLimit = bytes as usize;
        set_limits(job.0, &info)
    }

    /// One decoder's job, held by the daemon.
    pub struct Job {
        handle: Owned,
        pub name: String,
        /// The memory limit set, bytes (0: none).
        memory: u64,
    }

    // SAFETY: a job handle may be used from any thread.
    unsafe impl Send for Job {}

    impl Job {
        pub fn create(memory: u64, cpu_s: u64) -> io::Result<Job> {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                r"Local\luminary-decoder-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let w = wide(&name);
            // SAFETY: default security (the creator's), a NUL-terminated name.
            let h = unsafe { CreateJobObjectW(std::ptr::null(), w.as_ptr()) };
            if h.is_null() {
                return Err(io::Error::last_os_error());
            }
            let handle = Owned(h);
            let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
            let mut flags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
                | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
                | JOB_OBJECT_LIMIT_PROCESS_TIME;
            // In 100-nanosecond ticks.
            info.BasicLimitInformation.PerProcessUserTimeLimit = (cpu_s as i64) * 10_000_000;
            if memory > 0 {
                flags |= JOB_OBJECT_LIMIT_PROCESS_MEMORY;
                info.ProcessMemoryLimit = memory as usize;
            }
            info.BasicLimitInformation.LimitFlags = flags;
            set_limits(handle.0, &info)?;
            Ok(Job {
                handle,
                name,
                memory,
            })
        }

        pub fn assign(&self, child: &std::process::Child) -> io::Result<()> {
            // SAFETY: valid job and process handles.
            if unsafe { AssignProcessToJobObject(self.handle.0, child.as_raw_handle() as HANDLE) }
                == 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        pub fn describe(&self) -> String {
            let reported = match limits(self.handle.0) {
                Ok(info)
                    if info.BasicLimitInformation.LimitFlags & JOB_OBJECT_LIMIT_PROCESS_MEMORY
                        != 0 =>
                {
                    format!("the system reports {} MB", info.ProcessMemoryLimit >> 20)
                }
                Ok(_) => "the system reports no memory limit".to_string(),
                Err(e) => format!("the system reports nothing ({e})"),
            };
            format!(
                "job {}, memory limit {} MB set, {reported}",
                self.name,
                self.memory >> 20
            )
        }
    }
}
