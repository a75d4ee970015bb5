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
    /// No account by that name.
    #[error("no board account named {0:?}")]
    NoSuchUser(String),
    /// A lead without a team would see nothing.
    #[error("a lead needs at least one --team (or --admin)")]
    NoTeam,
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

/// Does the work of [`verify_password`] for a name that has no account, against a real hash
/// with the same parameters, so the time a login takes does not tell which names exist.
/// Always `false`.
pub fn verify_nobody(password: &str) -> bool {
    if let Some(phc) = nobody_hash() {
        let _ = verify_password(password, phc);
    }
    false
}

/// The hash [`verify_nobody`] checks against: of a random password, made once.
fn nobody_hash() -> Option<&'static str> {
    static NOBODY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NOBODY
        .get_or_init(|| hash_password(&new_token()).ok())
        .as_deref()
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

/// Gives `name` a new password (same rules as a new account's) and ends its sessions.
pub async fn set_password(store: &Store, name: &str, password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::WeakPassword);
    }
    let hash = hash_password(password)?;
    if store.set_password(name, &hash).await? {
        Ok(())
    } else {
        Err(AccountError::NoSuchUser(name.to_string()))
    }
}

/// Team names as stored: trimmed, none empty, none twice, in the order given. A comma
/// separates names (the store keeps them joined by commas).
pub fn clean_teams(teams: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in teams.iter().flat_map(|t| t.split(',')).map(str::trim) {
        if !t.is_empty() && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// What `callguard floor user set` changes; `None` keeps what the account has.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New shown name (the login name when blank).
    pub display_name: Option<String>,
    /// New teams, replacing the old ones.
    pub teams: Option<Vec<String>>,
    /// New role: admin (`true`) or lead.
    pub admin: Option<bool>,
}

/// Changes an account's shown name, teams or role; the account as it is now. A lead must keep
/// at least one team: with none it would see nothing.
pub async fn change_user(
    store: &Store,
    name: &str,
    change: &UserChange,
) -> Result<UserRow, AccountError> {
    let Some(mut row) = store.user(name).await? else {
        return Err(AccountError::NoSuchUser(name.to_string()));
    };
    if let Some(d) = &change.display_name {
        row.display_name = match d.trim() {
            "" => row.name.clone(),
            d => d.to_string(),
        };
    }
    if let Some(t) = &change.teams {
        row.teams = clean_teams(t);
    }
    if let Some(a) = change.admin {
        row.admin = a;
    }
    if !row.admin && row.teams.is_empty() {
        return Err(AccountError::NoTeam);
    }
    if store.update_user(&row).await? {
        Ok(row)
    } else {
        Err(AccountError::NoSuchUser(name.to_string()))
    }
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
    let teams = clean_teams(&user.teams);
    if teams.is_empty() && !user.admin {
        return Err(AccountError::NoTeam);
    }
    let row = UserRow {
        name: user.name.clone(),
        display_name: if user.display_name.trim().is_empty() {
            user.name.clone()
        } else {
            user.display_name.trim().to_string()
        },
        teams,
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

/// Most names and addresses the throttle follows at once. Past it, entries whose window has
/// passed are forgotten; if that is not enough (a flood of names or addresses), logins are
/// refused until it is: the table never grows without bound.
pub const MAX_FOLLOWED: usize = 10_000;

/// Counts failed logins per account and per address (in this instance's memory: with several
/// instances, each enforces the limit on its own). An attempt counts as failed from the moment
/// it starts until it succeeds, so attempts sent at the same time cannot all pass the check
/// while their passwords are being checked.
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

    /// The account's key (a name no account can have shares one key: it can never log in,
    /// and a flood of long made-up names must not fill the table) and the address's (an IPv6
    /// address by its /64, which one client can fill on its own).
    fn keys(user: &str, addr: IpAddr) -> [String; 2] {
        let user = if valid_name(user) {
            format!("user:{}", user.to_lowercase())
        } else {
            "user:?".to_string()
        };
        let addr = match addr {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => {
                let s = a.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            IpAddr::V6(a) => format!("addr:{}", a.to_canonical()),
            IpAddr::V4(a) => format!("addr:{a}"),
        };
        [user, addr]
    }

    /// Whether a login for `user` from `addr` may be tried now. If so, it counts as failed
    /// until [`LoginThrottle::succeeded`] is called with the same `now`.
    pub fn begin(&self, user: &str, addr: IpAddr, now: Instant) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        let window = self.limit.window;
        if map.len() >= MAX_FOLLOWED {
            map.retain(|_, list| list.iter().any(|t| now.duration_since(*t) < window));
        }
        let keys = Self::keys(user, addr);
        let new_keys = keys.iter().filter(|k| !map.contains_key(*k)).count();
        if map.len() + new_keys > MAX_FOLLOWED {
            return false;
        }
        let allowed = keys.iter().all(|k| {
            let list = map.entry(k.clone()).or_default();
            list.retain(|t| now.duration_since(*t) < window);
            list.len() < self.limit.failures as usize
        });
        if allowed {
            for k in keys {
                map.entry(k).or_default().push(now);
            }
        }
        allowed
    }

    /// The attempt that [`LoginThrottle::begin`] allowed at `began` succeeded: the account's
    /// failures are forgotten, and the attempt no longer counts against the address (several
    /// leads behind one office address log in all day).
    pub fn succeeded(&self, user: &str, addr: IpAddr, began: Instant) {
        if let Ok(mut map) = self.failures.lock() {
            let [user, addr] = Self::keys(user, addr);
            map.remove(&user);
            if let Some(list) = map.get_mut(&addr)
                && let Some(i) = list.iter().position(|t| *t == began)
            {
                list.remove(i);
            }
        }
    }

    /// Names and addresses followed now.
    pub fn followed(&self) -> usize {
        self.failures.lock().map(|m| m.len()).unwrap_or(0)
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
        // Three attempts at once, none answered yet: the fourth is refused already.
        for _ in 0..3 {
            assert!(t.begin("tanaka", a1, now));
        }
        assert!(!t.begin("tanaka", a1, now));
        assert!(!t.begin("TANAKA", a2, now), "per account, from any address");
        assert!(!t.begin("sato", a1, now), "per address, for any account");
        assert!(t.begin("sato", a2, now));
        let later = now + Duration::from_secs(61);
        assert!(t.begin("tanaka", a1, later), "the window passes");
    }

    #[test]
    fn a_good_login_does_not_count_against_its_address() {
        let t = LoginThrottle::new(LoginLimit {
            failures: 2,
            window: Duration::from_secs(60),
        });
        let office: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for lead in ["tanaka", "sato", "suzuki", "ito"] {
            assert!(t.begin(lead, office, now), "{lead}");
            t.succeeded(lead, office, now);
        }
        assert!(t.begin("tanaka", office, now));
        assert!(t.begin("tanaka", office, now));
        assert!(!t.begin("tanaka", office, now), "two failures still count");
    }

    #[test]
    fn the_throttle_follows_a_bounded_number_of_names_and_addresses() {
        let now = Instant::now();
        let many = |failures| {
            LoginThrottle::new(LoginLimit {
                failures,
                window: Duration::from_secs(60),
            })
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        // Names no account can have share one key, however many there are.
        let t = many(1_000);
        for i in 0..100 {
            assert!(t.begin(&format!("{}{i}", "x".repeat(100_000)), a, now));
        }
        assert_eq!(t.followed(), 2);
        // One IPv6 client is one /64, whichever address it takes in it.
        let t = many(1_000);
        for i in 0..100u16 {
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i);
            assert!(t.begin("sato", IpAddr::V6(v6), now));
        }
        assert_eq!(t.followed(), 2);
        // Many addresses: refused once the table is full, never grown past it.
        let t = many(u32::MAX);
        let mut refused = 0;
        for i in 0..(MAX_FOLLOWED as u32 + 100) {
            let v4 = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            if !t.begin("?", IpAddr::V4(v4), now) {
                refused += 1;
            }
        }
        assert_eq!(refused, 101, "one key is the shared name's");
        assert_eq!(t.followed(), MAX_FOLLOWED);
        // Once the window has passed, the old entries make room again.
        let later = now + Duration::from_secs(61);
        assert!(t.begin("tanaka", "10.9.9.9".parse().unwrap(), later));
        assert_eq!(t.followed(), 2);
    }

    #[test]
    fn a_name_without_an_account_is_checked_against_a_real_hash() {
        let phc = nobody_hash().expect("a hash for nobody");
        let parsed = PasswordHash::new(phc).expect("a valid PHC string");
        let own = hash_password("some password 123").unwrap();
        let own = PasswordHash::new(&own).unwrap();
        assert_eq!(parsed.algorithm, own.algorithm);
        assert_eq!(
            parsed.params, own.params,
            "the same work as a real account's"
        );
        assert!(!verify_nobody("anything"));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("tanaka.k"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("<script>"));
    }
}
