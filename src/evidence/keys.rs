//! The evidence signing key: Ed25519, made on first run at `<data dir>/keys/evidence.key`
//! (PKCS#8 PEM, mode 0600) with its public half in `evidence.pub` (SubjectPublicKeyInfo PEM),
//! so `openssl pkeyutl -verify` can check a manifest without callguard.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::fsutil;

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

/// The public key's file name in the keys folder.
const PUB_NAME: &str = "evidence.pub";

/// Where the key files are, under the data dir.
pub fn key_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("keys");
    (dir.join("evidence.key"), dir.join(PUB_NAME))
}

/// `key_id`: the first 16 hex of the SHA-256 of the 32 public key bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))[..16].to_string()
}

/// The public key as PEM (SubjectPublicKeyInfo).
pub fn public_pem(key: &VerifyingKey) -> String {
    // Encoding 32 known-good bytes into a fixed structure cannot fail; the fallback keeps the
    // signature infallible without a panic path.
    key.to_public_key_pem(LineEnding::LF)
        .unwrap_or_else(|e| format!("# cannot encode the public key: {e}\n"))
}

/// The private key as PKCS#8 v1 PEM: the seed alone, without the optional public key, exactly
/// as callguard has always written it (and as `openssl genpkey -algorithm ed25519` does).
fn private_pem(key: &SigningKey) -> Result<String, String> {
    let bytes = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the private key: {e}"))
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
            let pem = private_pem(&key).map_err(|msg| KeyError::Format {
                path: key_path.clone(),
                msg,
            })?;
            f.write_all(pem.as_bytes())
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
        let keys_dir = pub_path.parent().unwrap_or(data_dir);
        fsutil::write_atomic(keys_dir, PUB_NAME, want.as_bytes()).map_err(io(&pub_path))?;
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
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(text.trim())
            .map_err(|e| format!("not an Ed25519 public key: {e}"));
    }
    let raw = text.trim();
    let bytes = if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(raw).map_err(|e| e.to_string())?
    } else {
        B64.decode(raw.as_bytes())
            .map_err(|e| format!("not PEM, base64 or hex: {e}"))?
    };
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(key) => {
            VerifyingKey::from_bytes(&key).map_err(|e| format!("not an Ed25519 public key: {e}"))
        }
        // base64 of a whole SubjectPublicKeyInfo (the PEM body on one line).
        Err(_) => VerifyingKey::from_public_key_der(&bytes)
            .map_err(|_| format!("not an Ed25519 public key ({} bytes)", bytes.len())),
    }
}

fn parse_private(text: &str) -> Result<SigningKey, String> {
    if !text.contains("-----BEGIN PRIVATE KEY-----") {
        return Err("no PRIVATE KEY PEM block".into());
    }
    SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))
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

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/evidence-key-0.1"
    );

    /// A key written by callguard 0.1 (hand-rolled DER) loads unchanged, its public file is
    /// left as it is, and a key written now is byte for byte what 0.1 wrote.
    #[test]
    fn keys_written_by_0_1_keep_loading_and_new_keys_match_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for name in ["evidence.key", "evidence.pub"] {
            std::fs::copy(format!("{FIXTURE}/{name}"), keys.join(name)).unwrap();
        }
        let (kp, pp) = key_paths(dir.path());
        std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pub_before = std::fs::read(&pp).unwrap();

        let key = load_or_create(dir.path()).unwrap();
        assert_eq!(key_id(&key.verifying_key()), "e5d0e9dbc20ad57c");
        assert_eq!(
            std::fs::read(&pp).unwrap(),
            pub_before,
            "public file rewritten"
        );
        assert_eq!(read_public(&pp).unwrap(), key.verifying_key());

        // The 0.1 encoding: a fixed DER prefix, then the seed (private) or the key (public).
        let old_private = {
            let mut der = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            der.extend_from_slice(key.as_bytes());
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                B64.encode(der)
            )
        };
        assert_eq!(private_pem(&key).unwrap(), old_private);
        assert_eq!(
            private_pem(&key).unwrap(),
            std::fs::read_to_string(&kp).unwrap()
        );
        assert_eq!(
            public_pem(&key.verifying_key()),
            String::from_utf8(pub_before).unwrap()
        );
        // The PEM body alone, as some tools hand it out, is read too.
        let body = "MCowBQYDK2VwAyEAAnPn8OXzcnIFDaZftKpTfpe6OBE0fZTT41aXf9jjdGQ=";
        assert_eq!(parse_public(body).unwrap(), key.verifying_key());
    }

    #[test]
    fn a_damaged_private_key_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let (kp, _) = key_paths(dir.path());
        std::fs::create_dir_all(kp.parent().unwrap()).unwrap();
        std::fs::write(
            &kp,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFU0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&kp, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyError::Format { .. })
        ));
    }
}
