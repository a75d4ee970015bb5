//! Free space on the evidence file system.

use std::io;
use std::path::Path;

/// Bytes available to this user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
