//! File I/O at the boundary: atomic writes and bounded reads.
//!
//! Invariant: bitmac never leaves a half-written output file. Every output
//! goes to a temporary file in the destination directory, is flushed and
//! synced, then renamed over the destination (rename is atomic on POSIX
//! within one filesystem).

use crate::error::{json_error, Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically (temp file in the same directory, then
/// rename). Creates missing parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, &e))?;
    f.commit()
}

/// A file written incrementally and published atomically: the bytes go to a
/// temporary file `.NAME.PID.tmp` in the destination directory (created if
/// missing); [`AtomicFile::commit`] flushes, syncs and renames it over the
/// destination. Dropped without a commit (an error, a panic unwinding), the
/// temporary file is removed, so nothing is left behind. This is the one
/// mechanism behind [`write_atomic`]; use it for outputs too large to build
/// in memory (traces, waveforms).
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Create the temporary file for `path` (errors name `path`).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, &e))?;
        let name =
            path.file_name().ok_or_else(|| Error::input(format!("{}: not a file path", path.display())))?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, &e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush, sync and rename over the destination. On failure the temporary
    /// file is removed and the error names the destination.
    pub fn commit(mut self) -> Result<()> {
        let Some(w) = self.file.take() else {
            return Err(Error::internal(format!("{}: committed twice", self.path.display())));
        };
        let res = w.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all());
        if let Err(e) = res {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::io(&self.path, &e));
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.tmp);
            Error::io(&self.path, &e)
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("write after commit")),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf),
            None => Err(std::io::Error::other("write after commit")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Read a whole file, mapping failures to a one-line error naming it.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, &e))
}

/// Read a whole UTF-8 text file.
pub fn read_to_string(path: &Path) -> Result<String> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|_| Error::input(format!("{}: not valid UTF-8 text", path.display())))
}

/// Read and deserialize a JSON file; errors name the file and serde's reason
/// (unknown fields are rejected where the target type says
/// `deny_unknown_fields`).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| json_error(path.display(), &e))
}
