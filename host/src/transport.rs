//! The local socket: a Unix socket (mode 0600, in a 0700 folder) or a Windows named pipe,
//! through `interprocess`. Platform differences live here and nowhere else.

use std::io;

use interprocess::local_socket::{prelude::*, ListenerOptions, Stream};

pub use interprocess::local_socket::{Listener, Stream as Connection};

#[cfg(unix)]
fn name(socket: &str) -> io::Result<interprocess::local_socket::Name<'_>> {
    use interprocess::local_socket::GenericFilePath;
    socket.to_fs_name::<GenericFilePath>()
}

#[cfg(windows)]
fn name(socket: &str) -> io::Result<interprocess::local_socket::Name<'_>> {
    use interprocess::local_socket::GenericNamespaced;
    let short = socket.trim_start_matches(r"\\.\pipe\");
    short.to_ns_name::<GenericNamespaced>()
}

/// Prepares the socket's folder: created if missing, and on Unix private to the user.
pub fn prepare_dir(socket: &str) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(dir) = std::path::Path::new(socket).parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            // Our own runtime folder must not be readable by others; a shared folder given
            // with --socket (e.g. /tmp) is left alone, the socket's own mode protects it.
            let meta = std::fs::metadata(dir)?;
            use std::os::unix::fs::MetadataExt;
            if meta.uid() == unsafe { libc::geteuid() }
                && meta.permissions().mode() & 0o077 != 0
                && dir.ends_with("luminary")
            {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = socket;
    Ok(())
}

/// Creates the listener. The caller must hold the daemon lock and have removed any stale
/// socket file first.
pub fn listen(socket: &str) -> io::Result<Listener> {
    let opts = ListenerOptions::new().name(name(socket)?);
    #[cfg(unix)]
    let opts = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        opts.mode(0o600)
    };
    opts.create_sync()
}

/// Connects to a daemon.
pub fn connect(socket: &str) -> io::Result<Stream> {
    Stream::connect(name(socket)?)
}

/// Whether the peer runs as the same user. `true` where the OS cannot tell us (the pipe's
/// default access list and the socket's mode already keep other users out).
pub fn peer_is_same_user(stream: &Stream) -> bool {
    #[cfg(unix)]
    {
        match stream.peer_creds() {
            Ok(creds) => match creds.euid() {
                Some(uid) => uid == unsafe { libc::geteuid() },
                None => true,
            },
            Err(_) => true,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        true
    }
}
