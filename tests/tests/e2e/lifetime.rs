//! A daemon's life: started by a client whose output is read through a pipe, stopped
//! however its socket fared, and gone when idle.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::linux_helpers::{alive, frame, wait_gone};
use luminary_tests::daemon::Env;
use serde_json::{json, Value};

fn daemon_pid(env: &Env) -> i32 {
    let out = env.run(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["pid"].as_i64().unwrap() as i32
}

/// A pipe whose write end is inheritable (no close-on-exec), as an editor's would be.
fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The read end stays ours alone.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    (r, w)
}

/// Reads `r` to its end on a thread; `None` if no end-of-file came within `within`.
fn read_to_eof(mut r: impl Read + Send + 'static, within: Duration) -> Option<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx.recv_timeout(within).ok()
}

/// The pipes' inodes a process holds open (`pipe:[N]` in /proc/PID/fd).
fn pipes_held(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("pipe:"))
                .collect()
        })
        .unwrap_or_default()
}

fn pipe_inode(fd: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// GIMP reads the CLI's output with `subprocess.run(capture_output=True)`, darktable with
/// `io.popen`: the call that starts the daemon must still end, so the daemon may hold
/// neither the client's standard handles nor any other descriptor it could inherit.
#[test]
fn a_call_that_starts_the_daemon_returns_when_its_output_is_read_through_a_pipe() {
    let env = Env::new();
    let (extra_r, extra_w) = inheritable_pipe();
    let extra_inode = pipe_inode(&extra_w);
    let mut child = env
        .cmd()
        .args(["status", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(extra_w);
    let (stdin, stdout, stderr) = (
        child.stdin.take().unwrap(),
        child.stdout.take().unwrap(),
        child.stderr.take().unwrap(),
    );
    let stdin_inode = format!(
        "{}",
        std::fs::read_link(format!("/proc/self/fd/{}", stdin.as_raw_fd()))
            .unwrap()
            .display()
    );
    let out = read_to_eof(stdout, Duration::from_secs(30))
        .expect("standard output never reached its end: the daemon holds it");
    let err = read_to_eof(stderr, Duration::from_secs(10))
        .expect("standard error never reached its end: the daemon holds it");
    let extra = read_to_eof(std::fs::File::from(extra_r), Duration::from_secs(10));
    assert!(
        child.wait().unwrap().success(),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let pid = serde_json::from_slice::<Value>(&out).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    assert!(alive(pid), "the daemon is gone");
    assert!(
        extra.is_some(),
        "a descriptor the client inherited stayed open in the daemon"
    );
    let held = pipes_held(pid);
    for ours in [&extra_inode, &stdin_inode] {
        assert!(
            !held.contains(ours),
            "the daemon holds the starter's {ours}: {held:?}"
        );
    }
    drop(stdin);
}

/// logind removes `XDG_RUNTIME_DIR` at logout; a test may delete its sandbox. The daemon
/// must still end on SIGTERM, and end by itself when nobody can reach it any more.
#[test]
fn a_daemon_whose_socket_folder_was_removed_stops_on_sigterm_and_by_itself() {
    // SIGTERM at once after the removal.
    let env = Env::new();
    let pid = daemon_pid(&env);
    std::fs::remove_dir_all(env.socket().parent().unwrap()).unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        wait_gone(pid, Duration::from_secs(15)),
        "SIGTERM did not end a daemon whose socket folder was removed\n{}",
        env.daemon_log()
    );

    // No signal at all: the daemon notices on its own.
    let env = Env::new();
    let pid = daemon_pid(&env);
    std::fs::remove_dir_all(env.socket().parent().unwrap()).unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "a daemon nobody can reach is still running\n{}",
        env.daemon_log()
    );
    assert!(
        env.daemon_log()
            .contains("stopping: its socket file was removed or replaced"),
        "{}",
        env.daemon_log()
    );
    // The next call starts a fresh daemon in a fresh folder.
    let next = daemon_pid(&env);
    assert_ne!(next, pid);
}

/// Only the socket file removed, its lock left: the next client's daemon finds the lock
/// taken by one that is stopping, and the client waits for it and starts its own. Never
/// two daemons for one user.
/// A daemon that is going away (killed, its threads still exiting) can take a connection
/// and drop it. The client then starts a new daemon instead of failing the call.
#[test]
fn a_client_that_meets_a_dying_daemon_starts_a_new_one() {
    use std::os::unix::fs::DirBuilderExt;
    let env = Env::new();
    let sock = env.socket();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(sock.parent().unwrap())
        .unwrap();
    let dying = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let took = std::thread::spawn(move || {
        // One connection taken and dropped unanswered, then the listener is gone too;
        // its socket file stays behind, as a killed daemon's does.
        let (conn, _) = dying.accept().unwrap();
        drop(conn);
        drop(dying);
    });
    let out = env.run(&["status", "--json"]);
    took.join().unwrap();
    assert!(
        out.status.success(),
        "status failed on a dying daemon: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(alive(v["pid"].as_i64().unwrap() as i32));
}

#[test]
fn a_removed_socket_hands_over_to_one_new_daemon() {
    let env = Env::new();
    let old = daemon_pid(&env);
    std::fs::remove_file(env.socket()).unwrap();
    let t = Instant::now();
    let new = daemon_pid(&env);
    assert_ne!(new, old);
    assert!(
        wait_gone(old, Duration::from_secs(5)),
        "the old daemon still runs beside the new one"
    );
    assert!(alive(new));
    println!("hand-over took {:?}", t.elapsed());
    // The old daemon removed neither the new socket nor the new lock.
    assert!(env.socket().exists());
    assert!(env.socket().with_file_name("luminary.sock.lock").exists());
    assert_eq!(daemon_pid(&env), new);
}

#[test]
fn an_idle_daemon_exits_after_idle_exit_s_but_not_while_a_client_is_connected() {
    let env = Env::new();
    env.write_config("[daemon]\nidle_exit_s = 1.5\n");
    let pid = daemon_pid(&env);
    let mut s = UnixStream::connect(env.socket()).unwrap();
    frame(
        &mut s,
        &json!({"type": "hello", "protocol": "1.0", "client": "idle-test"}),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(pid), "the daemon left a connected client");
    drop(s);
    let t = Instant::now();
    assert!(
        wait_gone(pid, Duration::from_secs(6)),
        "an idle daemon did not exit\n{}",
        env.daemon_log()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1200),
        "exited {:?} after the last client, before idle_exit_s",
        t.elapsed()
    );
    assert!(env.daemon_log().contains("stopping: it was idle"));
    assert!(!env.socket().exists(), "an idle daemon left its socket");
    // A client starts a new one.
    assert_ne!(daemon_pid(&env), pid);
}

/// A field of `/proc/PID/status` in MB (`VmRSS`, `VmHWM`).
fn proc_mb(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// Issue #20: after a batch, an idle daemon gives its memory back. Twenty jobs on real
/// photos (each its own file, so nothing comes from a cache) take the daemon well past
/// 128 MB; within 10 s of the last one it is back under 64 MB resident.
#[test]
fn an_idle_daemon_gives_its_memory_back_after_a_batch() {
    let env = Env::new();
    let photos = luminary_tests::photos_dir().unwrap();
    let mut files = Vec::new();
    for i in 0..20 {
        let name = ["flower.png", "blossom.png", "portrait.png"][i % 3];
        let f = env.work.join(format!("shot-{i:02}.png"));
        std::fs::copy(photos.join(name), &f).unwrap();
        files.push(f.to_string_lossy().into_owned());
    }
    let out_dir = env.work.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut args = vec!["enhance", "--json", "--preset", "auto", "--out-dir"];
    args.push(out_dir.to_str().unwrap());
    args.extend(files.iter().map(String::as_str));
    let out = env.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let finished = Instant::now();
    let pid = daemon_pid(&env);
    let peak = proc_mb(pid, "VmHWM:");
    let mut rss = proc_mb(pid, "VmRSS:");
    while rss >= 64 && finished.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        rss = proc_mb(pid, "VmRSS:");
    }
    println!(
        "daemon: peak {peak} MB during the batch, {rss} MB resident {:.1} s after it",
        finished.elapsed().as_secs_f64()
    );
    // Well past the target (1.5×): the batch really took memory that had to be given
    // back. (Its peak is 127–133 MB here, depending on how the jobs overlap.)
    assert!(
        peak >= 96,
        "the batch should have taken memory (peak {peak} MB)"
    );
    assert!(
        rss < 64,
        "{rss} MB resident 10 s after the batch (peak {peak} MB)\n{}",
        env.daemon_log()
    );
}
