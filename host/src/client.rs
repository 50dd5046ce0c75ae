//! Talking to the daemon, starting it first when nobody answers.
//!
//! Like sccache, the CLI re-executes its own binary as `luminary serve` in the background,
//! detached from the terminal, and waits until the socket answers. Two clients racing to
//! start a daemon are fine: the daemon lock lets one win and the other client simply
//! connects to it.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::paths::Paths;
use crate::protocol::{
    self, read_frame, write_frame, Event, FrameError, Request, PROTOCOL_VERSION,
};
use crate::spawn::{self, Spawned};
use crate::transport::{self, Connection};

/// A handshaken connection to the daemon.
pub struct Client {
    conn: Connection,
    /// The daemon's version, from `welcome`.
    pub daemon_version: String,
}

/// Why a handshake did not give a client.
enum Handshake {
    /// The connection broke before a welcome: nobody there, or a daemon going away.
    Gone(anyhow::Error),
    /// A daemon answered and refused (another protocol major, too many clients, …).
    Refused(anyhow::Error),
}

/// How long to wait for a freshly started daemon.
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn spawn_daemon(paths: &Paths) -> anyhow::Result<Spawned> {
    let exe = crate::paths::self_exe().context("cannot find the luminary executable")?;
    std::fs::create_dir_all(&paths.cache_dir).ok();
    let args: Vec<OsString> = vec![
        "serve".into(),
        "--log-file".into(),
        paths.log_file().into(),
        "--socket".into(),
        paths.socket.clone().into(),
        "--config".into(),
        paths.config_file.clone().into(),
    ];
    // Its own folder, not the caller's: a daemon must not keep a photo folder (or a
    // memory card) in use.
    let cwd = if paths.cache_dir.is_dir() {
        paths.cache_dir.clone()
    } else {
        std::env::temp_dir()
    };
    spawn::detached(&exe, &args, &cwd).context("cannot start the Luminary daemon")
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
        let first = match transport::connect(&paths.socket) {
            Ok(s) => Client::handshake(s),
            Err(e) => Err(Handshake::Gone(e.into())),
        };
        match first {
            Ok(c) => return Ok(c),
            Err(Handshake::Refused(e)) => return Err(e),
            Err(Handshake::Gone(e)) if !spawn => {
                bail!(
                    "no Luminary daemon answers on {} ({e}); start one with `luminary serve`",
                    paths.socket
                )
            }
            // Nobody listens, or a daemon that is going away (killed, stopping) took the
            // connection and dropped it: start one.
            Err(Handshake::Gone(_)) => {}
        }
        let mut child = spawn_daemon(paths)?;
        let start = Instant::now();
        loop {
            if let Some(c) = Client::try_connect(paths)? {
                child.release();
                return Ok(c);
            }
            if let Ok(Some(exit)) = child.try_wait() {
                // Another client may have started a daemon at the same moment: try it.
                if let Some(c) = Client::try_connect(paths)? {
                    return Ok(c);
                }
                // A daemon holds the lock but does not answer: it is stopping (its socket
                // was removed, say). Start ours again once it has gone.
                if exit.code == Some(crate::lifetime::EXIT_ALREADY_SERVING)
                    && start.elapsed() < START_TIMEOUT
                {
                    std::thread::sleep(Duration::from_millis(100));
                    child = spawn_daemon(paths)?;
                    continue;
                }
                bail!(
                    "the Luminary daemon exited at start-up ({}). From its log {}:\n{}",
                    exit.text,
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

    /// One attempt: a handshaken client, `None` while nobody (or only a dying daemon)
    /// answers, or the daemon's refusal.
    fn try_connect(paths: &Paths) -> anyhow::Result<Option<Client>> {
        let Ok(conn) = transport::connect(&paths.socket) else {
            return Ok(None);
        };
        match Client::handshake(conn) {
            Ok(c) => Ok(Some(c)),
            Err(Handshake::Gone(_)) => Ok(None),
            Err(Handshake::Refused(e)) => Err(e),
        }
    }

    fn handshake(conn: Connection) -> Result<Client, Handshake> {
        let (mut rx, mut tx) = (&conn, &conn);
        let client = format!("luminary-cli/{}", env!("CARGO_PKG_VERSION"));
        write_frame(
            &mut tx,
            &Request::Hello {
                protocol: PROTOCOL_VERSION.into(),
                client,
            },
        )
        .map_err(|e| Handshake::Gone(e.into()))?;
        let frame = read_frame(&mut rx)
            .map_err(|e| match e {
                FrameError::Io(_) => Handshake::Gone(e.into()),
                FrameError::TooLarge(_) => Handshake::Refused(e.into()),
            })?
            .ok_or_else(|| {
                Handshake::Gone(anyhow!(
                    "the daemon closed the connection during the handshake"
                ))
            })?;
        let refused = |e: anyhow::Error| Handshake::Refused(e);
        match serde_json::from_slice::<Event>(&frame).map_err(|e| refused(e.into()))? {
            Event::Welcome {
                protocol: p,
                version,
                ..
            } => {
                if protocol::major(&p) != protocol::major(PROTOCOL_VERSION) {
                    return Err(refused(anyhow!(
                        "the daemon speaks protocol {p}, this client {PROTOCOL_VERSION}"
                    )));
                }
                Ok(Client {
                    conn,
                    daemon_version: version,
                })
            }
            Event::Error { message, .. } => Err(refused(anyhow!("{message}"))),
            other => Err(refused(anyhow!(
                "unexpected first message from the daemon: {other:?}"
            ))),
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
