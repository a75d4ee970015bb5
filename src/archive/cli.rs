//! The command-line side of `callguard verify s3://…`: same flags, output and exit codes as
//! for local folders (0 all good, 1 any failure, 2 cannot verify).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::remote;

/// Whether a `verify` argument names the archive.
pub fn is_s3(p: &Path) -> bool {
    p.to_string_lossy().starts_with("s3://")
}

/// `callguard verify s3://BUCKET/PREFIX[/HOST] [LOCAL_EVIDENCE_ROOT…]`: credentials and endpoint
/// from `[archive]` (or the AWS environment); local roots given beside the URL have their
/// ledgers compared with the archived ones.
pub fn verify(
    config: Option<&Path>,
    paths: Vec<PathBuf>,
    pubkey: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let usage = ExitCode::from(crate::cli::EXIT_USAGE);
    let cfg = if config.is_some() || pubkey.is_none() {
        match crate::cli::load(config) {
            Ok(c) => Some(c),
            Err(code) => return code,
        }
    } else {
        None
    };
    let key_path = match (&pubkey, &cfg) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => crate::evidence::keys::key_paths(&c.data_dir()).1,
        (None, None) => {
            eprintln!("callguard verify: give --pubkey FILE");
            return usage;
        }
    };
    let key = match crate::evidence::keys::read_public(&key_path) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("callguard verify: public key: {e}");
            return usage;
        }
    };
    let archive = cfg.map(|c| c.archive).unwrap_or_default();
    let (urls, locals): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| is_s3(p));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callguard verify: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for url in urls {
        let url = url.to_string_lossy().into_owned();
        match rt.block_on(remote::verify(&archive, &url, &key, &locals)) {
            Ok(r) => {
                for n in &r.notes {
                    eprintln!("callguard verify: note: {n}");
                }
                for line in r.outcome.lines(json, false) {
                    println!("{line}");
                }
                ok &= r.outcome.ok();
            }
            Err(e) => {
                eprintln!("callguard verify: {url}: {e}");
                return usage;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
