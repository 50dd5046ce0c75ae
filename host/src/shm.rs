//! Pixels shared between the daemon and a plugin runner through a memory-mapped file.
//!
//! Sending a 24 MP float image through a pipe costs two copies and a few hundred
//! milliseconds each way; a shared mapping costs one copy in and one out. The file lives in
//! `/dev/shm` where there is one (memory, never the disk), else in the temp folder, is
//! created private to the user (0600), and is removed when the daemon's handle is dropped —
//! including when a job fails or is cancelled.
//!
//! [`AnonymousShared`] is the nameless variant the RAW decoder process writes into: a
//! memfd on Linux (an unlinked temporary file elsewhere), handed to the child as a file
//! descriptor. With no name there is nothing a killed daemon could leave behind, so it
//! needs no journal entry, and a memfd is not bounded by the size of `/dev/shm`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

/// A shared buffer of `f32` samples.
pub struct SharedPixels {
    map: MmapMut,
    path: PathBuf,
    /// Present on the side that created the file: removing it on drop.
    _owner: Option<tempfile::TempPath>,
    /// Declared after `_owner`, so the file goes before its record, never the other way.
    _journal: Option<crate::journal::Entry>,
}

fn shm_dir() -> PathBuf {
    let dev_shm = Path::new("/dev/shm");
    if cfg!(target_os = "linux") && dev_shm.is_dir() {
        dev_shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Free bytes on the file system holding `dir`, where the platform says.
#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a struct for the call to fill.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled by the successful call.
    let st = unsafe { st.assume_init() };
    // The casts are no-ops on Linux only: macOS's `f_bavail` is 32 bits.
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_bytes(_: &Path) -> Option<u64> {
    None
}

/// Where a pixel buffer of `bytes` goes: `/dev/shm` (Linux) when it has the room, else the
/// temp folder when that has it. A buffer is a sparse file; writing into pages its file
/// system cannot hold kills the process (SIGBUS), daemon and all, so a photo too large for
/// both is refused here, as a job error that says why. (`/dev/shm` is half of RAM on a
/// desktop, but 64 MB in a default Docker container: a 12 MP picture needs 140 MB.)
fn dir_for(bytes: u64) -> io::Result<PathBuf> {
    let mut places = vec![shm_dir(), std::env::temp_dir()];
    places.dedup();
    let mut short = Vec::new();
    for dir in places {
        match free_bytes(&dir) {
            Some(free) if free < bytes => {
                short.push(format!("{} has {} MB", dir.display(), free >> 20))
            }
            _ => return Ok(dir),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::StorageFull,
        format!(
            "no room for {} MB of pixels: {}",
            bytes >> 20,
            short.join(", ")
        ),
    ))
}

impl SharedPixels {
    /// Creates a zeroed shared buffer of `samples` floats, where there is room for it
    /// ([`dir_for`]).
    pub fn create(samples: usize) -> io::Result<SharedPixels> {
        let file = tempfile::Builder::new()
            .prefix("luminary-pixels-")
            .tempfile_in(dir_for((samples * 4) as u64)?)?;
        file.as_file().set_len((samples * 4) as u64)?;
        // SAFETY: the file is ours, private (0600) and sized above; nobody else truncates it.
        let map = unsafe { MmapMut::map_mut(file.as_file())? };
        let (file, path) = file.into_parts();
        drop(file);
        let journal = crate::journal::record(&path);
        Ok(SharedPixels {
            map,
            path: path.to_path_buf(),
            _owner: Some(path),
            _journal: Some(journal),
        })
    }

    /// Maps an existing buffer (the runner's side); it must hold `samples` floats.
    pub fn open(path: &Path, samples: usize) -> io::Result<SharedPixels> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() < (samples * 4) as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared pixel file is too small",
            ));
        }
        // SAFETY: the daemon created and sized the file and keeps it alive for the call.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(SharedPixels {
            map,
            path: path.to_path_buf(),
            _owner: None,
            _journal: None,
        })
    }

    /// Where the buffer lives, for the runner.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The samples.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.map.len() / 4;
        // SAFETY: mappings are page-aligned, so aligned for f32; length in whole floats.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr() as *mut f32, len) }
    }

    /// The samples, read-only.
    pub fn as_slice(&self) -> &[f32] {
        let len = self.map.len() / 4;
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const f32, len) }
    }
}

/// A nameless shared file (see the module documentation).
pub struct AnonymousShared {
    file: File,
}

impl AnonymousShared {
    /// A new empty shared file, closed on exec (hand it to a child explicitly).
    pub fn new() -> io::Result<AnonymousShared> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: a plain system call; the fd it returns is ours alone.
            let fd = unsafe { libc::memfd_create(c"luminary-pixels".as_ptr(), libc::MFD_CLOEXEC) };
            if fd >= 0 {
                return Ok(AnonymousShared {
                    file: unsafe { File::from_raw_fd(fd) },
                });
            }
        }
        Ok(AnonymousShared {
            file: tempfile::tempfile_in(shm_dir())?,
        })
    }

    /// The file, e.g. to give a child process a descriptor of it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Maps what the file holds now, read-only.
    pub fn map(&self) -> io::Result<SharedBytes> {
        SharedBytes::map(&self.file)
    }
}

/// A read-only mapping of a shared file, viewed as bytes, `u16` or `f32`.
pub struct SharedBytes {
    map: Option<memmap2::Mmap>,
}

impl SharedBytes {
    fn map(file: &File) -> io::Result<SharedBytes> {
        if file.metadata()?.len() == 0 {
            return Ok(SharedBytes { map: None }); // mmap refuses empty files
        }
        // Populated: the pages exist already, so this only maps them, in one go.
        // SAFETY: the writer has finished (it said so) before we map; nobody truncates.
        Ok(SharedBytes {
            map: Some(unsafe { memmap2::MmapOptions::new().populate().map(file)? }),
        })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The bytes as native-endian `u16` (a trailing odd byte is ignored).
    pub fn as_u16(&self) -> &[u16] {
        let b = self.bytes();
        if b.is_empty() {
            return &[];
        }
        // SAFETY: mappings are page-aligned; length in whole samples.
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u16, b.len() / 2) }
    }

    /// The bytes as native-endian `f32` (trailing bytes are ignored).
    pub fn as_f32(&self) -> &[f32] {
        let b = self.bytes();
        if b.is_empty() {
            return &[];
        }
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) }
    }
}

/// The child's side: `file` becomes `bytes`. Written with `pwrite` from a few threads
/// rather than through a mapping: the kernel then allocates the pages in bulk instead of
/// one fault at a time (about twice as fast for a 24 MP RAW's 48 MB).
pub fn write_shared(file: &File, bytes: &[u8]) -> io::Result<()> {
    use rayon::prelude::*;
    file.set_len(bytes.len() as u64)?;
    const CHUNK: usize = 8 << 20;
    bytes
        .par_chunks(CHUNK)
        .enumerate()
        .try_for_each(|(i, chunk)| write_at(file, chunk, (i * CHUNK) as u64))
}

#[cfg(unix)]
fn write_at(file: &File, chunk: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, chunk, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut chunk: &[u8], mut offset: u64) -> io::Result<()> {
    while !chunk.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, chunk, offset)?;
        chunk = &chunk[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_shared_file_carries_bytes_and_has_no_name() {
        let shared = AnonymousShared::new().unwrap();
        let other = shared.file().try_clone().unwrap();
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&0.5f32.to_ne_bytes());
        b[4..6].copy_from_slice(&7u16.to_ne_bytes());
        write_shared(&other, &b).unwrap();
        let m = shared.map().unwrap();
        assert_eq!(m.bytes().len(), 8);
        assert_eq!(m.as_f32()[0], 0.5);
        assert_eq!(m.as_u16()[2], 7);
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let link = std::fs::read_link(format!("/proc/self/fd/{}", shared.file().as_raw_fd()));
            if let Ok(link) = link {
                assert!(!link.exists(), "{}", link.display());
            }
        }
    }

    /// A buffer goes to `/dev/shm` when it fits there; one larger than `/dev/shm`'s free
    /// space goes to the temp folder instead (when that holds it), where writing it cannot
    /// kill the daemon with SIGBUS; one larger than both is an error naming both.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_buffer_goes_where_there_is_room_for_it() {
        let shm = Path::new("/dev/shm");
        let small = SharedPixels::create(1000).unwrap();
        assert!(small.path().starts_with(shm), "{}", small.path().display());
        let shm_free = free_bytes(shm).unwrap();
        let tmp = std::env::temp_dir();
        let tmp_free = free_bytes(&tmp).unwrap();
        // Sparse: neither is written, so neither takes the room it names.
        let samples = (shm_free / 4 + (1 << 20)) as usize;
        match SharedPixels::create(samples) {
            Ok(big) => {
                assert!(tmp_free >= samples as u64 * 4);
                assert!(big.path().starts_with(&tmp), "{}", big.path().display());
            }
            Err(e) => {
                assert!(tmp_free < samples as u64 * 4, "{e}");
                assert_eq!(e.kind(), io::ErrorKind::StorageFull);
            }
        }
        let huge = (shm_free.max(tmp_free) / 4 + (1 << 20)) as usize;
        let err = SharedPixels::create(huge).err().expect("no room anywhere");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("/dev/shm has"), "{err}");
    }

    #[test]
    fn both_sides_see_the_same_pixels_and_the_file_goes_away() {
        let mut a = SharedPixels::create(1000).unwrap();
        a.as_mut_slice()[7] = 0.25;
        let path = a.path().to_path_buf();
        {
            let mut b = SharedPixels::open(&path, 1000).unwrap();
            assert_eq!(b.as_slice()[7], 0.25);
            b.as_mut_slice()[8] = 0.5;
        }
        assert_eq!(a.as_slice()[8], 0.5);
        assert!(SharedPixels::open(&path, 2000).is_err(), "size is checked");
        drop(a);
        assert!(!path.exists());
    }
}
