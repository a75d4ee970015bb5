//! Generates the packaged documentation from the command-line definitions, so man pages and
//! completions never drift from `callguard --help`:
//!
//! - `OUT/man/callguard.1` and one page per subcommand (`callguard-config-check.1`, …);
//! - `OUT/completions/{bash/callguard, zsh/_callguard, fish/callguard.fish}`.
//!
//! Run by `make deb` before `cargo deb`: `cargo run --example gen-assets -- target/assets`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: gen-assets OUT_DIR")?;
    let man = out.join("man");
    let completions = out.join("completions");
    // Stale pages of a renamed subcommand must not be packaged.
    for dir in [&man, &completions] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    clap_mangen::generate_to(callguard::cli::Cli::command(), &man)
        .with_context(|| format!("writing man pages to {}", man.display()))?;

    for (shell, file) in [
        (Shell::Bash, "bash/callguard"),
        (Shell::Zsh, "zsh/_callguard"),
        (Shell::Fish, "fish/callguard.fish"),
    ] {
        write_completion(shell, &completions.join(file))?;
    }
    let mut pages: Vec<String> = std::fs::read_dir(&man)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    println!(
        "gen-assets: {} man pages ({}), bash/zsh/fish completions in {}",
        pages.len(),
        pages.join(" "),
        out.display()
    );
    Ok(())
}

fn write_completion(shell: Shell, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    clap_complete::generate(
        shell,
        &mut callguard::cli::Cli::command(),
        "callguard",
        &mut file,
    );
    Ok(())
}
