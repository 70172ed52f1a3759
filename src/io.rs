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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, &e))?;
    let name =
        path.file_name().ok_or_else(|| Error::input(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, &e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, &e)
    })
}

/// Read a whole input file (a regular file of at most [`MAX_INPUT_BYTES`]),
/// mapping failures to a one-line error naming it. See [`read_limited`].
pub fn read(path: &Path) -> Result<Vec<u8>> {
    read_limited(path, MAX_INPUT_BYTES)
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

/// Write a file atomically by streaming into the temporary file: `fill`
/// writes the contents (through a buffered writer); on any error the
/// temporary file is removed and the destination is untouched. Same
/// guarantees as [`write_atomic`], without holding the whole output in
/// memory.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let out = f.out.as_mut().ok_or_else(|| Error::internal("AtomicFile without a writer"))?;
    // On error `f` is dropped uncommitted, which removes the temporary file.
    fill(out).map_err(|e| Error::io(path, &e))?;
    f.commit()
}

/// Largest input file bitmac reads, in bytes (1 GiB). Every input goes
/// through [`read`] (or [`read_limited`] with a tighter cap), so no input
/// can make bitmac allocate more than this for the file's bytes. The limit
/// is documented in `docs/limits.md`.
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Linux's `O_NONBLOCK` (`<asm-generic/fcntl.h>`, 04000 on every Linux
/// architecture except alpha/parisc/sparc): opening a FIFO with it never
/// blocks waiting for a writer. Elsewhere the `stat` check alone guards.
#[cfg(any(target_os = "linux", target_os = "android"))]
const O_NONBLOCK: i32 = 0o4000;

/// What kind of non-regular file `ft` is, for error messages.
fn file_kind(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading only if it is a regular file. The type is
/// checked with `stat` before opening (so a FIFO or a device is never
/// opened, and opening never blocks), and again on the open handle (the
/// path may have been replaced in between; on Linux the open itself is
/// non-blocking). Returns the file and its length.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let not_regular = |ft: &std::fs::FileType| {
        Error::input(format!(
            "{}: is {} (allowed: a regular file; bitmac does not read pipes or devices)",
            path.display(),
            file_kind(ft)
        ))
    };
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, &e))?;
    if !md.is_file() {
        return Err(not_regular(&md.file_type()));
    }
    let mut oo = std::fs::OpenOptions::new();
    oo.read(true);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        oo.custom_flags(O_NONBLOCK);
    }
    let f = oo.open(path).map_err(|e| Error::io(path, &e))?;
    let md = f.metadata().map_err(|e| Error::io(path, &e))?;
    if !md.is_file() {
        return Err(not_regular(&md.file_type()));
    }
    Ok((f, md.len()))
}

/// Read a whole regular file of at most `max` bytes. Pipes, devices and
/// directories are refused before anything is read; a larger file is
/// refused from its size, and a file that grows while being read is cut
/// off at `max + 1` bytes and refused. The buffer is reserved with
/// `try_reserve`, so a large file gives an error, never an allocation
/// abort.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let (f, len) = open_regular(path)?;
    let too_big = |n: u64| {
        Error::input(format!(
            "{}: {n} bytes is too large (allowed: at most {max} bytes for this input)",
            path.display()
        ))
    };
    if len > max {
        return Err(too_big(len));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize)
        .map_err(|_| Error::input(format!("{}: cannot allocate {len} bytes to read it", path.display())))?;
    f.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io(path, &e))?;
    if buf.len() as u64 > max {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// An output file written in pieces and committed atomically: bytes go to
/// a temporary file `.NAME.PID.tmp` beside the destination, and
/// [`AtomicFile::commit`] flushes, syncs and renames it over the
/// destination. Dropped without a commit (an error on the way), the
/// temporary file is removed, so nothing is left behind.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Start writing `path` (missing parent directories are created).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, &e))?;
        let name =
            path.file_name().ok_or_else(|| Error::input(format!("{}: not a file path", path.display())))?;
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(path, &e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
        })
    }

    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| Error::internal("AtomicFile written after commit"))?;
        out.write_all(bytes).map_err(|e| Error::io(&self.path, &e))
    }

    /// Flush, sync and rename over the destination.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().ok_or_else(|| Error::internal("AtomicFile committed twice"))?;
        let f = out.into_inner().map_err(|e| Error::io(&self.path, e.error()))?;
        f.sync_all().map_err(|e| Error::io(&self.path, &e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, &e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// True for a name of the form `.NAME.PID.tmp` ([`write_atomic`]'s and
/// [`AtomicFile`]'s temporary files): such a file is left behind only by a
/// process killed mid-write.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    match rest.rsplit_once('.') {
        Some((base, pid)) => !base.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// True when the process `pid` may still be running (Linux: `/proc/PID`
/// exists; elsewhere always true, so nothing of a live writer is removed).
pub fn pid_may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(any(target_os = "linux", target_os = "android")) && Path::new("/proc/self").exists() {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}
