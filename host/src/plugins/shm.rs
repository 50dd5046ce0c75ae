//! Pixels shared between the daemon and a plugin runner through a memory-mapped file.
//!
//! Sending a 24 MP float image through a pipe costs two copies and a few hundred
//! milliseconds each way; a shared mapping costs one copy in and one out. The file lives in
//! `/dev/shm` where there is one (memory, never the disk), else in the temp folder, is
//! created private to the user (0600), and is removed when the daemon's handle is dropped —
//! including when a job fails or is cancelled.

use std::fs::OpenOptions;
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

impl SharedPixels {
    /// Creates a zeroed shared buffer of `samples` floats.
    pub fn create(samples: usize) -> io::Result<SharedPixels> {
        let file = tempfile::Builder::new()
            .prefix("luminary-pixels-")
            .tempfile_in(shm_dir())?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
