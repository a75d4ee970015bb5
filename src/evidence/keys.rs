//! The evidence signing key: Ed25519, made on first run at `<data dir>/keys/evidence.key`
//! (PKCS#8 PEM, mode 0600) with its public half in `evidence.pub` (SubjectPublicKeyInfo PEM),
//! so `openssl pkeyutl -verify` can check a manifest without callguard.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::fsutil;

/// DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold an Ed25519 key in a format callguard reads.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// Where the key files are, under the data dir.
pub fn key_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("keys");
    (dir.join("evidence.key"), dir.join("evidence.pub"))
}

/// `key_id`: the first 16 hex of the SHA-256 of the 32 public key bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string()
}

/// The public key as PEM (SubjectPublicKeyInfo).
pub fn public_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der)
    )
}

fn private_pem(key: &SigningKey) -> String {
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(der)
    )
}

/// Loads the signing key, making it (and the public key file) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<SigningKey, KeyError> {
    let (key_path, pub_path) = key_paths(data_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    let key = match std::fs::read_to_string(&key_path) {
        Ok(text) => {
            let mode = std::fs::metadata(&key_path)
                .map_err(io(&key_path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %key_path.display(), mode = format!("{:o}", mode & 0o777),
                    "evidence key is readable by others; tightening to 0600");
                std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io(&key_path))?;
            }
            parse_private(&text).map_err(|msg| KeyError::Format {
                path: key_path.clone(),
                msg,
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = key_path.parent().unwrap_or(data_dir);
            fsutil::create_private_dir(dir).map_err(io(dir))?;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyError::Io {
                path: key_path.clone(),
                source: std::io::Error::other(format!("no system randomness: {e}")),
            })?;
            let key = SigningKey::from_bytes(&seed);
            // Written whole under a temporary name, then linked into place: a crash never
            // leaves a half-written key, and a key made meanwhile by another process wins.
            let tmp = dir.join(format!(".evidence.key.{}.tmp", std::process::id()));
            let mut f = fsutil::create_private_file(&tmp).map_err(io(&tmp))?;
            f.write_all(private_pem(&key).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io(&tmp))?;
            let linked = std::fs::hard_link(&tmp, &key_path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return load_or_create(data_dir);
                }
                Err(e) => return Err(io(&key_path)(e)),
            }
            tracing::info!(path = %key_path.display(), key_id = %key_id(&key.verifying_key()),
                "evidence signing key created");
            key
        }
        Err(e) => return Err(io(&key_path)(e)),
    };
    // The public file is derived; (re)write it when missing or different.
    let want = public_pem(&key.verifying_key());
    if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(want.as_str()) {
        let mut f = fsutil::create_private_file(&pub_path).map_err(io(&pub_path))?;
        f.write_all(want.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&pub_path))?;
        // Public by nature: readable so it can be handed out.
        std::fs::set_permissions(&pub_path, std::fs::Permissions::from_mode(0o644))
            .map_err(io(&pub_path))?;
    }
    Ok(key)
}

/// Reads a public key file: SPKI PEM (`evidence.pub`), or 32 bytes as base64 or hex on one line.
pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_public(&text).map_err(|msg| KeyError::Format {
        path: path.to_path_buf(),
        msg,
    })
}

/// Parses the text of a public key file (see [`read_public`]).
pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    let raw = pem_body(text, "PUBLIC KEY").unwrap_or_else(|| text.trim().to_string());
    let bytes = if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(&raw).map_err(|e| e.to_string())?
    } else {
        B64.decode(raw.as_bytes())
            .map_err(|e| format!("not PEM, base64 or hex: {e}"))?
    };
    let key: [u8; 32] = match bytes.len() {
        32 => bytes.as_slice().try_into().map_err(|_| "bad length")?,
        44 if bytes[..12] == SPKI_PREFIX => bytes[12..].try_into().map_err(|_| "bad length")?,
        n => return Err(format!("not an Ed25519 public key ({n} bytes)")),
    };
    VerifyingKey::from_bytes(&key).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

fn parse_private(text: &str) -> Result<SigningKey, String> {
    let body = pem_body(text, "PRIVATE KEY").ok_or("no PRIVATE KEY PEM block")?;
    let der = B64
        .decode(body.as_bytes())
        .map_err(|e| format!("bad base64: {e}"))?;
    if der.len() != 48 || der[..16] != PKCS8_PREFIX {
        return Err("not an Ed25519 PKCS#8 private key".into());
    }
    let seed: [u8; 32] = der[16..].try_into().map_err(|_| "bad length")?;
    Ok(SigningKey::from_bytes(&seed))
}

fn pem_body(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    Some(text[start..stop].split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let (kp, pp) = key_paths(dir.path());
        let mode = std::fs::metadata(&kp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let public = read_public(&pp).unwrap();
        assert_eq!(public, a.verifying_key());
        assert_eq!(key_id(&public).len(), 16);
        let b64 = B64.encode(public.as_bytes());
        assert_eq!(parse_public(&b64).unwrap(), public);
        assert_eq!(
            parse_public(&hex::encode(public.as_bytes())).unwrap(),
            public
        );
        assert!(parse_public("garbage").is_err());
    }
}
