//! Board accounts: argon2id password hashes, session tokens (only their SHA-256 is stored) and
//! the login rate limit (per account and per address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use super::store::{Store, StoreError, UserRow};

/// Why an account could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The password is unusable.
    #[error("the password must have at least {MIN_PASSWORD} characters")]
    WeakPassword,
    /// The name is unusable.
    #[error("a user name is 1–64 letters, digits, `.`, `_` or `-`")]
    BadName,
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

fn argon() -> Argon2<'static> {
    // OWASP's argon2id baseline (19 MiB, 2 passes): a login stays well under a second on a
    // small server.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    argon()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| argon().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A fresh random token (256 bits, hex): session cookies and CSRF tokens.
pub fn new_token() -> String {
    let mut buf = [0u8; 32];
    if getrandom::fill(&mut buf).is_err() {
        // Without randomness no session may be issued: an empty token never matches.
        return String::new();
    }
    hex::encode(buf)
}

/// What the store keeps for a session token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A new account as `callguard floor user add` asks for it.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// Display name (shown to the agent in acks); the login name when empty.
    pub display_name: String,
    /// Teams the user leads.
    pub teams: Vec<String>,
    /// Sees everyone and the audit page.
    pub admin: bool,
}

/// Creates an account with an argon2id hash of `password`.
pub async fn add_user(
    store: &Store,
    user: &NewUser,
    password: &str,
    now_ms: i64,
) -> Result<(), AccountError> {
    if !valid_name(&user.name) {
        return Err(AccountError::BadName);
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::WeakPassword);
    }
    let row = UserRow {
        name: user.name.clone(),
        display_name: if user.display_name.trim().is_empty() {
            user.name.clone()
        } else {
            user.display_name.trim().to_string()
        },
        teams: user.teams.clone(),
        admin: user.admin,
        password_hash: hash_password(password)?,
    };
    store.add_user(&row, now_ms).await?;
    Ok(())
}

/// Failed logins allowed per window, per account and per address.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimit {
    /// Failures allowed in `window` before refusing.
    pub failures: u32,
    /// The window.
    pub window: Duration,
}

impl Default for LoginLimit {
    fn default() -> Self {
        LoginLimit {
            failures: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Counts failed logins per account and per address (in this instance's memory: with several
/// instances, each enforces the limit on its own).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    limit: LoginLimit,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginThrottle {
    /// A throttle with `limit`.
    pub fn new(limit: LoginLimit) -> LoginThrottle {
        LoginThrottle {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, addr: IpAddr) -> [String; 2] {
        [
            format!("user:{}", user.to_lowercase()),
            format!("addr:{addr}"),
        ]
    }

    /// Whether a login for `user` from `addr` may be tried now.
    pub fn allowed(&self, user: &str, addr: IpAddr, now: Instant) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        Self::keys(user, addr).iter().all(|k| {
            let list = map.entry(k.clone()).or_default();
            list.retain(|t| now.duration_since(*t) < self.limit.window);
            list.len() < self.limit.failures as usize
        })
    }

    /// Counts a failed login.
    pub fn failed(&self, user: &str, addr: IpAddr, now: Instant) {
        if let Ok(mut map) = self.failures.lock() {
            for k in Self::keys(user, addr) {
                map.entry(k).or_default().push(now);
            }
        }
    }

    /// Forgets an account's failures after a good login.
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&format!("user:{}", user.to_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), a);
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn logins_are_limited_per_account_and_per_address() {
        let t = LoginThrottle::new(LoginLimit {
            failures: 3,
            window: Duration::from_secs(60),
        });
        let (a1, a2): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.allowed("tanaka", a1, now));
            t.failed("tanaka", a1, now);
        }
        assert!(!t.allowed("tanaka", a1, now));
        assert!(
            !t.allowed("TANAKA", a2, now),
            "per account, from any address"
        );
        assert!(!t.allowed("sato", a1, now), "per address, for any account");
        assert!(t.allowed("sato", a2, now));
        let later = now + Duration::from_secs(61);
        assert!(t.allowed("tanaka", a1, later), "the window passes");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("tanaka.k"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("<script>"));
    }
}
