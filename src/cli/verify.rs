//! `callguard verify` and `callguard key show`: the checks are `evidence::verify`'s, the
//! printing and exit codes are here.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::evidence::keys;
use crate::evidence::verify::{HeadSource, verify_paths_with};

/// `callguard verify`: exit 0 all good, 1 any failure (with `strict`, a stray folder too),
/// 2 usage error.
pub fn cli(
    config: Option<&Path>,
    paths: Vec<PathBuf>,
    pubkey: Option<PathBuf>,
    head: Option<PathBuf>,
    json: bool,
    strict: bool,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let need_config = paths.is_empty() || pubkey.is_none() || config.is_some();
    let cfg = if need_config {
        match super::load(config) {
            Ok(c) => Some(c),
            Err(code) => return code,
        }
    } else {
        None
    };
    let key = match public_key(pubkey.as_deref(), cfg.as_ref()) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let paths = if paths.is_empty() {
        match &cfg {
            Some(c) => vec![c.evidence_dir()],
            None => Vec::new(),
        }
    } else {
        paths
    };
    // On the workstation (its own key, from its configuration), its data dir holds the
    // ledger head; a key given by hand is another machine's, whose head is not here.
    let head = match (head, &cfg) {
        (Some(f), _) => HeadSource::File(f),
        (None, Some(c)) if pubkey.is_none() => HeadSource::DataDir(c.data_dir()),
        _ => HeadSource::None,
    };
    match verify_paths_with(&paths, &key, &head) {
        Ok(out) => {
            for line in out.lines(json, strict) {
                println!("{line}");
            }
            if out.ok_strict(strict) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("callguard verify: {e}");
            ExitCode::from(super::EXIT_USAGE)
        }
    }
}

/// The key `verify` checks signatures with: `--pubkey FILE`, else this workstation's own
/// (found through its configuration). Says why not on stderr, with the usage exit code.
pub(super) fn public_key(
    pubkey: Option<&Path>,
    cfg: Option<&crate::config::Config>,
) -> Result<ed25519_dalek::VerifyingKey, std::process::ExitCode> {
    let usage = std::process::ExitCode::from(super::EXIT_USAGE);
    let key_path = match (pubkey, cfg) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(c)) => keys::key_paths(&c.data_dir()).1,
        (None, None) => {
            eprintln!("callguard verify: give --pubkey FILE");
            return Err(usage);
        }
    };
    keys::read_public(&key_path).map_err(|e| {
        eprintln!("callguard verify: public key: {e}");
        usage
    })
}

/// `callguard key show`: the public key (PEM), its `key_id` and file; the key is made if missing.
pub fn key_show(config: Option<&Path>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let cfg = match super::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let data = cfg.data_dir();
    match keys::load_or_create(&data) {
        Ok(k) => {
            let public = k.verifying_key();
            let (_, pub_path) = keys::key_paths(&data);
            println!("key_id: {}", keys::key_id(&public));
            println!("public key file: {}", pub_path.display());
            println!("public key (base64): {}", B64.encode(public.as_bytes()));
            print!("{}", keys::public_pem(&public));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callguard key show: {e}");
            ExitCode::FAILURE
        }
    }
}
