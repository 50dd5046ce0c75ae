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
/// socket file first. The listener does not remove its socket file when dropped: by then
/// the path may name a successor's socket, so the daemon removes it only if it is still
/// its own (`lifetime::OwnedSocket`).
pub fn listen(socket: &str) -> io::Result<Listener> {
    let opts = ListenerOptions::new()
        .name(name(socket)?)
        .reclaim_name(false);
    #[cfg(unix)]
    let opts = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        opts.mode(0o600)
    };
    #[cfg(windows)]
    let opts = {
        use interprocess::os::windows::local_socket::ListenerOptionsExt;
        opts.security_descriptor(windows_private::descriptor()?)
    };
    opts.create_sync()
}

/// The named pipe's access list on Windows. Without one, a pipe gets the default DACL of
/// the creator's token, which also admits SYSTEM, administrators and — for some service
/// accounts — everyone; ours admits the current user and no one else.
#[cfg(windows)]
mod windows_private {
    use std::io;

    use interprocess::os::windows::security_descriptor::SecurityDescriptor;
    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
        GetSecurityInfo, SDDL_REVISION_1, SE_KERNEL_OBJECT,
    };
    use windows_sys::Win32::Security::{
        GetTokenInformation, TokenUser, DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    /// `D:P(A;;GA;;;<user SID>)`: a protected DACL (nothing inherited) with one entry,
    /// generic-all for the current user.
    pub fn descriptor() -> io::Result<SecurityDescriptor> {
        let sddl = format!("D:P(A;;GA;;;{})", user_sid()?);
        let wide = widestring::U16CString::from_str(&sddl)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        SecurityDescriptor::deserialize(&wide)
    }

    /// The access list of the pipe behind `stream`, as SDDL.
    pub fn access_list(stream: &super::Stream) -> Option<String> {
        use std::os::windows::io::{AsHandle, AsRawHandle};
        #[allow(unreachable_patterns)]
        let handle = match stream {
            super::Stream::NamedPipe(s) => s.as_handle().as_raw_handle(),
            _ => return None,
        };
        // SAFETY: a valid pipe handle borrowed for the call; the descriptor and the string
        // the system allocates are freed before returning.
        unsafe {
            let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
            let err = GetSecurityInfo(
                handle as HANDLE,
                SE_KERNEL_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut sd,
            );
            if err != 0 {
                return None;
            }
            let mut wide: *mut u16 = std::ptr::null_mut();
            let ok = ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut wide,
                std::ptr::null_mut(),
            );
            LocalFree(sd);
            if ok == 0 {
                return None;
            }
            let sddl = widestring::U16CStr::from_ptr_str(wide).to_string_lossy();
            LocalFree(wide.cast());
            Some(sddl)
        }
    }

    /// The current process's user SID as a string (`S-1-5-21-…`).
    fn user_sid() -> io::Result<String> {
        // SAFETY: plain Win32 calls on handles and buffers owned here; every handle and
        // LocalAlloc'ed string is released before returning.
        unsafe {
            let mut token: HANDLE = std::ptr::null_mut();
            if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0u32;
            GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
            // u64 words keep the TOKEN_USER inside suitably aligned.
            let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
            let ok = GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len);
            let err = io::Error::last_os_error();
            CloseHandle(token);
            if ok == 0 {
                return Err(err);
            }
            let user = &*(buf.as_ptr() as *const TOKEN_USER);
            let mut wide: *mut u16 = std::ptr::null_mut();
            if ConvertSidToStringSidW(user.User.Sid, &mut wide) == 0 {
                return Err(io::Error::last_os_error());
            }
            let sid = widestring::U16CStr::from_ptr_str(wide).to_string_lossy();
            LocalFree(wide.cast());
            Ok(sid)
        }
    }
}

/// Who may open the socket, as the system holds it: on Windows the named pipe's access
/// list read back from the connection `stream` (SDDL, e.g. `D:P(A;;FA;;;S-1-5-21-…)`); on
/// Unix the socket file's mode. For `luminary status`, so the access list can be checked on
/// a real system rather than assumed.
pub fn access_list(socket: &str, stream: &Stream) -> Option<String> {
    #[cfg(windows)]
    {
        let _ = socket;
        windows_private::access_list(stream)
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = stream;
        let m = std::fs::metadata(socket).ok()?;
        Some(format!(
            "mode {:04o}, owner uid {}",
            m.mode() & 0o7777,
            m.uid()
        ))
    }
}

/// Connects to a daemon.
pub fn connect(socket: &str) -> io::Result<Stream> {
    Stream::connect(name(socket)?)
}

/// Whether the peer runs as the same user. `true` where the OS cannot tell us (on Windows
/// the pipe's access list, which names only the current user, already keeps others out).
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
