//! Publishing an output: written in full under no visible name, flushed to disk, then
//! given its name with no clobbering — a reader never sees half a file and no existing
//! file is ever replaced.
//!
//! * On Linux the output is an unnamed file (`O_TMPFILE`) in the target folder, linked
//!   into place with `linkat`, which fails rather than replace a file. A daemon killed at
//!   any moment leaves the folder exactly as it was: the kernel frees an unnamed file with
//!   its last descriptor, before any new daemon starts.
//! * Where the file system has no unnamed files (NFS, SMB, exFAT, ramfs; every other
//!   platform), or `/proc` is missing (a chroot), the output is a hidden
//!   `.luminary-*.part` file published by a no-clobber rename, and the job journal lets
//!   the next daemon remove one that a killed daemon left.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An output being written.
pub struct Pending {
    kind: Kind,
}

enum Kind {
    /// An unnamed file in the target folder.
    #[cfg(target_os = "linux")]
    Unnamed(File),
    /// A hidden temporary file, recorded in the journal while it exists.
    Named {
        tmp: tempfile::NamedTempFile,
        _journal: crate::journal::Entry,
    },
}

impl Pending {
    /// Creates the output's file in `dir`, unnamed where the system allows.
    pub fn create(dir: &Path) -> io::Result<Pending> {
        #[cfg(target_os = "linux")]
        if let Some(file) = unnamed_in(dir) {
            return Ok(Pending {
                kind: Kind::Unnamed(file),
            });
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".luminary-").suffix(".part");
        // Outputs are ordinary photos: readable like any file the user saves (tempfile's
        // default is owner-only). The umask still applies.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(dir)?;
        // Recorded so that a daemon killed mid-write leaves nothing once the next one starts.
        let journal = crate::journal::record(tmp.path());
        Ok(Pending {
            kind: Kind::Named {
                tmp,
                _journal: journal,
            },
        })
    }

    /// The file to write.
    pub fn file(&self) -> &File {
        match &self.kind {
            #[cfg(target_os = "linux")]
            Kind::Unnamed(f) => f,
            Kind::Named { tmp, .. } => tmp.as_file(),
        }
    }

    /// The file to write, starting writeback as it goes ([`Writeback`]).
    pub fn writer(&self) -> Writeback<'_> {
        Writeback {
            file: self.file(),
            since: 0,
        }
    }

    /// Whether the output has no name until it is published.
    pub fn is_unnamed(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Kind::Unnamed(_) = self.kind {
            return true;
        }
        false
    }

    /// Gives the written, synced file the first free name `names` yields; `Ok(None)` when
    /// every one is taken. On any error the file is gone.
    pub fn publish(self, names: impl Iterator<Item = PathBuf>) -> io::Result<Option<PathBuf>> {
        let mut kind = self.kind;
        for target in names {
            match kind {
                #[cfg(target_os = "linux")]
                Kind::Unnamed(ref f) => match link_unnamed(f, &target) {
                    Ok(()) => return sync_parent(target).map(Some),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                },
                Kind::Named { tmp, _journal } => match tmp.persist_noclobber(&target) {
                    Ok(_) => return sync_parent(target).map(Some),
                    Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                        kind = Kind::Named {
                            tmp: e.file,
                            _journal,
                        }
                    }
                    Err(e) => return Err(e.error),
                },
            }
        }
        Ok(None)
    }
}

/// Bytes written between two requests to start writeback.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The output's file as the encoders write it. On Linux, every [`WRITEBACK_EVERY`] bytes
/// it asks the kernel to start writing what it has so far to disk (`sync_file_range`,
/// which does not wait), so the `fsync` before publishing finds most of a large output
/// already written instead of all of it dirty in memory. Elsewhere a plain pass-through.
pub struct Writeback<'a> {
    file: &'a File,
    since: u64,
}

impl Writeback<'_> {
    /// Asks for writeback of the file's dirty pages to start. Only a hint: the `fsync`
    /// that follows reports any real failure.
    fn start(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: an open descriptor; offset 0 and length 0 mean the whole file.
            let r = unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl io::Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = io::Write::write(&mut &*self.file, buf)?;
        self.since += n as u64;
        if self.since >= WRITEBACK_EVERY {
            self.since = 0;
            let _ = self.start();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::Write::flush(&mut &*self.file)
    }
}

impl io::Seek for Writeback<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        io::Seek::seek(&mut &*self.file, pos)
    }
}

/// The folder's entry is what makes the new name survive a power cut.
fn sync_parent(target: PathBuf) -> io::Result<PathBuf> {
    #[cfg(unix)]
    if let Some(dir) = target.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(target)
}

/// An unnamed file in `dir`, or `None` where the file system (or a missing `/proc`, which
/// `linkat` needs) does not allow one.
#[cfg(target_os = "linux")]
fn unnamed_in(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .ok()
}

/// Links an unnamed file at `target`; `AlreadyExists` if that name is taken.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    let to = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the file name"))?;
    // SAFETY: two NUL-terminated paths; linkat never replaces an existing name.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    fn names(dir: &Path) -> impl Iterator<Item = PathBuf> + '_ {
        (1..4).map(move |n| dir.join(format!("out-{n}.tif")))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The writer passes writes and seeks through unchanged while it asks for writeback
    /// (which the kernel accepts for an output's file).
    #[test]
    fn the_writer_writes_and_seeks_like_the_file_and_starts_writeback() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pending::create(dir.path()).unwrap();
        let mut w = p.writer();
        let block: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        for _ in 0..20 {
            w.write_all(&block).unwrap();
        }
        w.seek(io::SeekFrom::Start(3)).unwrap();
        w.write_all(b"abc").unwrap();
        w.seek(io::SeekFrom::End(0)).unwrap();
        w.flush().unwrap();
        w.start().expect("writeback accepted");
        let got = p.publish(names(dir.path())).unwrap().unwrap();
        let data = std::fs::read(got).unwrap();
        assert_eq!(data.len(), 20 << 20);
        assert_eq!(&data[..3], &block[..3]);
        assert_eq!(&data[3..6], b"abc");
        assert!(data[6..1 << 20] == block[6..] && data[19 << 20..] == block[..]);
    }

    #[test]
    fn an_output_is_invisible_until_published_and_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out-1.tif"), b"the photographer's file").unwrap();
        let p = Pending::create(dir.path()).unwrap();
        p.file().write_all(b"new result").unwrap();
        if cfg!(target_os = "linux") {
            assert!(p.is_unnamed(), "ext4 and tmpfs have O_TMPFILE");
            assert_eq!(listing(dir.path()), ["out-1.tif"]);
        }
        let got = p.publish(names(dir.path())).unwrap().unwrap();
        assert_eq!(got, dir.path().join("out-2.tif"));
        assert_eq!(std::fs::read(&got).unwrap(), b"new result");
        assert_eq!(
            std::fs::read(dir.path().join("out-1.tif")).unwrap(),
            b"the photographer's file"
        );
        assert_eq!(listing(dir.path()), ["out-1.tif", "out-2.tif"]);
    }

    #[test]
    fn a_dropped_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pending::create(dir.path()).unwrap();
        p.file().write_all(b"half").unwrap();
        drop(p);
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn when_every_name_is_taken_nothing_is_published() {
        let dir = tempfile::tempdir().unwrap();
        for n in 1..4 {
            std::fs::write(dir.path().join(format!("out-{n}.tif")), b"x").unwrap();
        }
        let p = Pending::create(dir.path()).unwrap();
        assert_eq!(p.publish(names(dir.path())).unwrap(), None);
        assert_eq!(listing(dir.path()).len(), 3);
    }
}
