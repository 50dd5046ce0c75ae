//! Talking to the daemon, starting it first when nobody answers.
//!
//! Like sccache, the CLI re-executes its own binary as `luminary serve` in the background,
//! detached from the terminal, and waits until the socket answers. Two clients racing to
//! start a daemon are fine: the daemon lock lets one win and the other client simply
//! connects to it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::paths::Paths;
use crate::protocol::{self, read_frame, write_frame, Event, Request, PROTOCOL_VERSION};
use crate::transport::{self, Connection};

/// A handshaken connection to the daemon.
pub struct Client {
    conn: Connection,
    /// The daemon's version, from `welcome`.
    pub daemon_version: String,
}

/// How long to wait for a freshly started daemon.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn spawn_daemon(paths: &Paths) -> anyhow::Result<std::process::Child> {
    let exe = crate::paths::self_exe().context("cannot find the luminary executable")?;
    std::fs::create_dir_all(&paths.cache_dir).ok();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log_file());
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--socket")
        .arg(&paths.socket)
        .arg("--config")
        .arg(&paths.config_file);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    match log {
        Ok(f) => cmd.stderr(f),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C in the terminal that started it must not kill it.
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
    }
    cmd.spawn().context("cannot start the Luminary daemon")
}

fn log_tail(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

impl Client {
    /// Connects, starting the daemon when `spawn` is set and none answers.
    pub fn connect(paths: &Paths, spawn: bool) -> anyhow::Result<Client> {
        match transport::connect(&paths.socket) {
            Ok(s) => return Client::handshake(s),
            Err(e) if !spawn => {
                bail!(
                    "no Luminary daemon answers on {} ({e}); start one with `luminary serve`",
                    paths.socket
                )
            }
            Err(_) => {}
        }
        let mut child = spawn_daemon(paths)?;
        let start = Instant::now();
        loop {
            if let Ok(s) = transport::connect(&paths.socket) {
                // Reap the child in the background when it eventually exits.
                std::thread::spawn(move || child.wait());
                return Client::handshake(s);
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another client may have started a daemon at the same moment: try it.
                if let Ok(s) = transport::connect(&paths.socket) {
                    return Client::handshake(s);
                }
                bail!(
                    "the Luminary daemon exited at start-up ({status}). From its log {}:\n{}",
                    paths.log_file().display(),
                    log_tail(&paths.log_file())
                );
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "the Luminary daemon did not answer within {:?}; see {}",
                    START_TIMEOUT,
                    paths.log_file().display()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn handshake(conn: Connection) -> anyhow::Result<Client> {
        let (mut rx, mut tx) = (&conn, &conn);
        let client = format!("luminary-cli/{}", env!("CARGO_PKG_VERSION"));
        write_frame(
            &mut tx,
            &Request::Hello {
                protocol: PROTOCOL_VERSION.into(),
                client,
            },
        )?;
        let frame = read_frame(&mut rx)?
            .ok_or_else(|| anyhow!("the daemon closed the connection during the handshake"))?;
        match serde_json::from_slice::<Event>(&frame)? {
            Event::Welcome {
                protocol: p,
                version,
                ..
            } => {
                if protocol::major(&p) != protocol::major(PROTOCOL_VERSION) {
                    bail!("the daemon speaks protocol {p}, this client {PROTOCOL_VERSION}");
                }
                Ok(Client {
                    conn,
                    daemon_version: version,
                })
            }
            Event::Error { message, .. } => bail!("{message}"),
            other => bail!("unexpected first message from the daemon: {other:?}"),
        }
    }

    /// Sends a request.
    pub fn send(&mut self, req: &Request) -> anyhow::Result<()> {
        write_frame(&mut &self.conn, req).context("the daemon connection broke")
    }

    /// Waits for the next event.
    pub fn next_event(&mut self) -> anyhow::Result<Event> {
        let frame = read_frame(&mut &self.conn)?
            .ok_or_else(|| anyhow!("the daemon closed the connection"))?;
        Ok(serde_json::from_slice(&frame)?)
    }

    /// Sends a request and returns the `done` body of its answer, skipping progress.
    pub fn call(
        &mut self,
        req: &Request,
        id: &str,
    ) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        self.send(req)?;
        loop {
            match self.next_event()? {
                Event::Done { id: got, result } if got == id => return Ok(result),
                Event::Error {
                    id: Some(got),
                    code,
                    message,
                    ..
                } if got == id => bail!("{}: {message}", code.as_str()),
                Event::Error {
                    id: None,
                    code,
                    message,
                    ..
                } => bail!("{}: {message}", code.as_str()),
                _ => {}
            }
        }
    }
}
