//! Files and folders that hold evidence or state: private to the user (folders 0700, files 0600),
//! created without following a planted file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700; tightens an existing one to 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates or truncates `path` with mode 0600, never through a symbolic link, and tightens an
/// existing file to 0600.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Creates `path` with mode 0600, failing if it exists (never overwrites).
pub fn create_new_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// An exclusive lock on a file, held until dropped (or the process dies, `kill -9` included).
#[derive(Debug)]
pub struct ExclusiveLock {
    _file: File,
}

/// Takes an exclusive, non-blocking lock on `path` (created 0600 if missing). `WouldBlock` when
/// another process holds it.
pub fn lock_exclusive(path: &Path) -> io::Result<ExclusiveLock> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(io::Error::from)?;
    Ok(ExclusiveLock { _file: file })
}

/// Fsyncs a folder, so that a rename or removal in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` atomically: a private temp file (`.<name>.<pid>-<n>.tmp`) is written
/// and fsynced, renamed over `name`, then the folder is fsynced.
///
/// The one directory-fsync rule of the project: every rename or removal that a later reader
/// relies on (an entry that must exist after a crash, or must be gone) is followed by an fsync
/// of its folder before the caller goes on. After a crash the file is either the old or the new
/// version, never a torn one. `dir` is created 0700 if missing.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create_private_dir(dir)?;
    // A temp name of its own per writer: two processes (`callguard key show` and a starting
    // daemon both writing `evidence.pub`) or two threads must never share one, or one rename
    // finds the file gone.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let written = create_private_file(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))
    });
    if let Err(e) = written {
        // A temp file left behind would hold its space for good (on a full disk, all of it).
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Appends `line` (whole lines, ending in `\n`) to `path` (created 0600) and fsyncs it. A write
/// or fsync that fails takes its bytes back (the file is cut to its length before), so a line
/// the disk refused half-way never becomes a torn line that the next one runs into. The error
/// says so when even that cut fails. A new file whose folder cannot be fsynced is an error
/// too, with its line in place.
pub fn append_line(path: &Path, line: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let len = f.metadata()?.len();
    if let Err(e) = f.write_all(line).and_then(|()| f.sync_data()) {
        return match f.set_len(len) {
            Ok(()) => Err(e),
            Err(cut) => Err(io::Error::new(
                e.kind(),
                format!("{e}; the part written could not be taken back ({cut})"),
            )),
        };
    }
    if len == 0
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        // A new file: its name must survive a power cut as well as its line.
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes `path` and fsyncs its folder; a file already gone is fine.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_of_one_file_at_once_all_succeed() {
        let dir = tempfile::tempdir().expect("dir");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&d, "evidence.pub", format!("key {t}\n").as_bytes())?;
                    }
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("every write succeeds");
        }
        let text = std::fs::read_to_string(dir.path().join("evidence.pub")).expect("read");
        assert!(text.starts_with("key "), "{text}");
        let leftovers = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(leftovers, 1, "no temp file is left behind");
    }

    #[test]
    fn a_write_that_fails_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("dir");
        // A folder in the file's place: the temp file is written, the rename fails.
        std::fs::create_dir(dir.path().join("segment.log")).expect("folder");
        std::fs::write(dir.path().join("segment.log").join("x"), b"x").expect("not empty");
        let err = write_atomic(dir.path(), "segment.log", b"lines\n");
        assert!(err.is_err(), "renaming onto a folder must fail");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("segment.log")]);
    }
}
