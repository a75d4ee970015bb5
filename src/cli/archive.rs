//! `callguard verify s3://…`: the checks are `archive::remote`'s, the printing and exit codes
//! are here; same flags, output and exit codes as for local folders (0 all good, 1 any
//! failure, 2 cannot verify).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::archive::remote;

/// `callguard verify s3://BUCKET/PREFIX[/HOST] [LOCAL_EVIDENCE_ROOT…]`: credentials and endpoint
/// from `[archive]` (or the AWS environment); local roots given beside the URL have their
/// ledgers compared with the archived ones.
pub fn verify(
    config: Option<&Path>,
    paths: Vec<PathBuf>,
    pubkey: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let usage = ExitCode::from(super::EXIT_USAGE);
    let cfg = if config.is_some() || pubkey.is_none() {
        match super::load(config) {
            Ok(c) => Some(c),
            Err(code) => return code,
        }
    } else {
        None
    };
    let key = match super::verify::public_key(pubkey.as_deref(), cfg.as_ref()) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let archive = cfg.map(|c| c.archive).unwrap_or_default();
    let (urls, locals): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.into_iter().partition(|p| remote::is_s3(p));
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
