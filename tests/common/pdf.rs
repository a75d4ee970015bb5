//! Reading the PDFs the floor writes, with Debian's poppler-utils (`pdftotext`, `pdftoppm`). A
//! missing tool fails the test with what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The poppler tool `name` on `PATH`; panics (a test failure, never a skip) when it is missing.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join(name).exists() {
            return dir.join(name);
        }
    }
    panic!("`{name}` is missing: install Debian's poppler-utils (make deps)");
}

/// The text of `pdf`, laid out as on the page (`pdftotext -layout`).
pub fn text(pdf: &Path) -> String {
    let out = Command::new(tool("pdftotext"))
        .args(["-layout"])
        .arg(pdf)
        .arg("-")
        .output()
        .expect("run pdftotext");
    assert!(
        out.status.success(),
        "pdftotext {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pdftotext gives UTF-8")
}

/// The text of a PDF held in memory (a download).
pub fn text_of(bytes: &[u8], dir: &Path, name: &str) -> String {
    assert!(bytes.starts_with(b"%PDF-"), "{name} is not a PDF");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the PDF");
    text(&path)
}
