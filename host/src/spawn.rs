//! Starting the daemon so that it holds nothing of the process that started it.
//!
//! Editors read the CLI's output through a pipe (GIMP's `subprocess.run(capture_output=
//! True)`, darktable's `io.popen`, Lightroom's `LrTasks.execute`) and wait for its end.
//! A daemon that inherited that pipe's write end, or any other inheritable handle, keeps
//! the reader waiting until the daemon exits. So the daemon gets no standard handles at
//! all (it opens its own log, `serve --log-file`), its working folder is not the caller's
//! (which would pin a memory card on Windows), and:
//!
//! * on Unix every descriptor above 2 is marked close-on-exec in the child before `exec`
//!   (`close_range(CLOSE_RANGE_CLOEXEC)`, or one `fcntl` per descriptor where the kernel
//!   lacks it), because descriptors the caller leaked to us are not ours to know;
//! * on Windows the process is created with `bInheritHandles = FALSE`, which the standard
//!   library cannot do once any stdio is set, with no console (`DETACHED_PROCESS`,
//!   `CREATE_NO_WINDOW`) and its own process group (Ctrl-C in the caller's console must not
//!   reach it).

use std::ffi::OsString;
use std::io;
use std::path::Path;

/// What became of a started daemon process.
pub struct Exit {
    /// Its exit code, if it exited normally.
    pub code: Option<i32>,
    /// In words, for error messages.
    pub text: String,
}

/// A started daemon process.
pub struct Spawned {
    #[cfg(not(windows))]
    child: std::process::Child,
    #[cfg(windows)]
    process: windows::Process,
}

/// Starts `exe args…` detached, in the folder `cwd`.
pub fn detached(exe: &Path, args: &[OsString], cwd: &Path) -> io::Result<Spawned> {
    #[cfg(not(windows))]
    {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C in the terminal that started it must not kill it.
            .process_group(0);
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(|| {
                cloexec_from(3);
                Ok(())
            })
        };
        Ok(Spawned {
            child: cmd.spawn()?,
        })
    }
    #[cfg(windows)]
    {
        Ok(Spawned {
            process: windows::create(exe, args, cwd)?,
        })
    }
}

impl Spawned {
    /// Whether it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        #[cfg(not(windows))]
        {
            Ok(self.child.try_wait()?.map(|s| Exit {
                code: s.code(),
                text: s.to_string(),
            }))
        }
        #[cfg(windows)]
        {
            Ok(self.process.try_wait()?.map(|code| Exit {
                code: Some(code as i32),
                text: format!("exit code {code:#x}"),
            }))
        }
    }

    /// Lets it run on; on Unix a thread reaps it when it exits (no zombie).
    pub fn release(self) {
        #[cfg(not(windows))]
        {
            let mut child = self.child;
            std::thread::spawn(move || child.wait());
        }
    }
}

/// Marks every descriptor from `first` up close-on-exec. Runs between `fork` and `exec`,
/// so it only makes system calls.
#[cfg(not(windows))]
fn cloexec_from(first: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only changes descriptor flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if r == 0 {
            return;
        }
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and fcntl on descriptor numbers; a closed one just gives EBADF.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 16) as i32
    } else {
        1024
    };
    for fd in first..max {
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Quotes arguments into one Windows command line, by the rules `CommandLineToArgvW` and
/// the C runtime parse it back with: an argument with a space, a tab or a quote (or an
/// empty one) is put in quotes; backslashes are doubled only where they precede a quote.
pub fn windows_command_line<S: AsRef<str>>(args: &[S]) -> String {
    let mut line = String::new();
    for (i, arg) in args.iter().enumerate() {
        let arg = arg.as_ref();
        if i > 0 {
            line.push(' ');
        }
        if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\u{b}', '"']) {
            line.push_str(arg);
            continue;
        }
        line.push('"');
        let mut backslashes = 0;
        for c in arg.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    line.extend(std::iter::repeat_n('\\', 2 * backslashes + 1));
                    line.push('"');
                    backslashes = 0;
                }
                _ => {
                    line.extend(std::iter::repeat_n('\\', backslashes));
                    line.push(c);
                    backslashes = 0;
                }
            }
        }
        line.extend(std::iter::repeat_n('\\', 2 * backslashes));
        line.push('"');
    }
    line
}

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};
    use windows_sys::Win32::System::Threading::{
        CreateProcessW, GetExitCodeProcess, WaitForSingleObject, CREATE_NEW_PROCESS_GROUP,
        CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, DETACHED_PROCESS, PROCESS_INFORMATION,
        STARTUPINFOW,
    };

    /// A process handle, closed on drop (the process runs on).
    pub struct Process(HANDLE);

    // SAFETY: a process handle may be used from any thread.
    unsafe impl Send for Process {}

    impl Drop for Process {
        fn drop(&mut self) {
            // SAFETY: the handle is owned here and closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    impl Process {
        pub fn try_wait(&mut self) -> io::Result<Option<u32>> {
            // SAFETY: a valid process handle; the exit code is written to a local.
            unsafe {
                if WaitForSingleObject(self.0, 0) != WAIT_OBJECT_0 {
                    return Ok(None);
                }
                let mut code = 0u32;
                if GetExitCodeProcess(self.0, &mut code) == 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Some(code))
            }
        }
    }

    fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
        s.encode_wide().chain(Some(0)).collect()
    }

    pub fn create(exe: &Path, args: &[OsString], cwd: &Path) -> io::Result<Process> {
        let mut all = vec![exe.to_string_lossy().into_owned()];
        all.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
        let mut line: Vec<u16> = super::windows_command_line(&all)
            .encode_utf16()
            .chain(Some(0))
            .collect();
        let app = wide(exe.as_os_str());
        let dir = wide(cwd.as_os_str());
        // SAFETY: every pointer is to a NUL-terminated buffer or struct that outlives the
        // call; the command line buffer is mutable as CreateProcessW requires.
        unsafe {
            let mut si: STARTUPINFOW = std::mem::zeroed();
            si.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
            let mut pi: PROCESS_INFORMATION = std::mem::zeroed();
            let ok = CreateProcessW(
                app.as_ptr(),
                line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0, // bInheritHandles: FALSE — nothing of ours goes along.
                DETACHED_PROCESS
                    | CREATE_NEW_PROCESS_GROUP
                    | CREATE_NO_WINDOW
                    | CREATE_UNICODE_ENVIRONMENT,
                std::ptr::null(),
                dir.as_ptr(),
                &si,
                &mut pi,
            );
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            CloseHandle(pi.hThread);
            Ok(Process(pi.hProcess))
        }
    }
}

/// Points this process's standard error at `log` (appending), for a daemon started with
/// no standard handles. Everything it logs, and every child that inherits its standard
/// error (plugin runners, RAW decoders), then writes there.
pub fn log_to(log: &Path) -> io::Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    #[cfg(not(windows))]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto descriptor 2; `file` is dropped after, fd 2 stays open.
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::IntoRawHandle;
        use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        // The handle is kept for the life of the process.
        let h = file.into_raw_handle();
        // SAFETY: a valid file handle, owned by the process from here on.
        if unsafe { SetStdHandle(STD_ERROR_HANDLE, h as _) } == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::windows_command_line as line;

    /// The cases of Microsoft's "Parsing C++ command-line arguments", read back the way
    /// `CommandLineToArgvW` does.
    #[test]
    fn windows_arguments_are_quoted_so_they_parse_back_unchanged() {
        assert_eq!(
            line(&["serve", "--socket", r"\\.\pipe\luminary-Ana"]),
            r"serve --socket \\.\pipe\luminary-Ana"
        );
        assert_eq!(
            line(&[r"C:\Program Files\Luminary\luminary.exe", "serve"]),
            r#""C:\Program Files\Luminary\luminary.exe" serve"#
        );
        assert_eq!(line(&[""]), r#""""#);
        assert_eq!(line(&[r#"a"b"#]), r#""a\"b""#);
        assert_eq!(
            line(&[r"C:\Users\Ana María\cache dir\"]),
            r#""C:\Users\Ana María\cache dir\\""#
        );
        assert_eq!(line(&[r#"a\\"b c"#]), r#""a\\\\\"b c""#);
        assert_eq!(line(&[r"a\\b"]), r"a\\b");
        // `%`, `^`, `&` mean nothing here: no shell parses this line.
        assert_eq!(line(&["100%", "a^b&c"]), "100% a^b&c");
    }

    /// `CommandLineToArgvW`'s reading (after the program name): 2n backslashes before a
    /// quote are n and the quote toggles quoting, 2n+1 are n and a literal quote; other
    /// backslashes are literal.
    fn parse(line: &str) -> Vec<String> {
        let (mut args, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let n = chars[i..].iter().take_while(|&&c| c == '\\').count();
                    i += n;
                    if chars.get(i) == Some(&'"') {
                        cur.extend(std::iter::repeat_n('\\', n / 2));
                        if n % 2 == 1 {
                            cur.push('"');
                            i += 1;
                        }
                    } else {
                        cur.extend(std::iter::repeat_n('\\', n));
                    }
                    any = true;
                    continue;
                }
                '"' => {
                    quoted = !quoted;
                    any = true;
                }
                ' ' | '\t' if !quoted => {
                    if any {
                        args.push(std::mem::take(&mut cur));
                    }
                    any = false;
                }
                c => {
                    cur.push(c);
                    any = true;
                }
            }
            i += 1;
        }
        if any {
            args.push(cur);
        }
        args
    }

    #[test]
    fn tricky_arguments_survive_the_round_trip() {
        let args = [
            r"C:\Fotos\Braut & Bräutigam 2024\",
            r#"say "hi"\"#,
            "",
            r"\\server\share\a b\\",
            "tab\there",
            "100% ^!&|<>",
            r#"\""#,
        ];
        assert_eq!(parse(&line(&args)), args);
    }
}
