//! One delivery attempt of a stored ping, and the retry policy around it.
//!
//! 2xx = delivered; 408, 429, 5xx and connection errors = try again (honouring `Retry-After`);
//! any other status = permanent failure (a retry would get the same answer).

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::outbox::Delivery;

/// Header carrying the HMAC of the body.
pub const SIGNATURE_HEADER: &str = "X-Callguard-Signature";
/// Header carrying the ping id.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Time allowed for one attempt (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver took it (the HTTP status).
    Delivered(u16),
    /// Try again, after at least `after` when the receiver said so.
    Retry {
        /// Why it did not go through.
        reason: String,
        /// `Retry-After`, when given.
        after: Option<Duration>,
    },
    /// The receiver refused it for good.
    Permanent(String),
}

pub use crate::queue::RetryPolicy;

/// The HTTP client for pings: no redirects (a redirected POST may turn into a GET and lose the
/// body), a bounded time per attempt.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("callguard/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen for HMAC-SHA256.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The secret in `path`: the file's content without a trailing newline.
pub fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read secret_file {path}: {e}"))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("secret_file {path} is empty"));
    }
    Ok(bytes)
}

/// Sends `d` once.
pub async fn attempt(client: &reqwest::Client, d: &Delivery) -> Outcome {
    let mut req = client
        .post(&d.url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .header(IDEMPOTENCY_HEADER, &d.ping_id)
        .body(d.body.clone());
    if !d.secret_file.is_empty() {
        // A missing secret is fixable by the admin: keep the ping and retry rather than send it
        // unsigned or drop it.
        match read_secret(&d.secret_file) {
            Ok(secret) => {
                req = req.header(SIGNATURE_HEADER, signature(&secret, d.body.as_bytes()));
            }
            Err(reason) => {
                return Outcome::Retry {
                    reason,
                    after: None,
                };
            }
        }
    }
    match req.send().await {
        Ok(resp) => classify(resp.status().as_u16(), resp.headers(), Utc::now().into()),
        Err(e) => Outcome::Retry {
            reason: describe(&e),
            after: None,
        },
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// The outcome of an answer with `status`.
pub fn classify(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    now: DateTime<FixedOffset>,
) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}"),
            after: headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now)),
        },
        300..=399 => Outcome::Permanent(format!(
            "HTTP {status}: the receiver redirects; set the url to the final address"
        )),
        _ => Outcome::Permanent(format!("HTTP {status}")),
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<FixedOffset>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    Some(at.signed_duration_since(now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            retry_for: Duration::from_secs(86400),
        };
        for (n, full) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let d = p.delay(n);
            let full = Duration::from_secs(full);
            assert!(d <= full && d >= full / 2, "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn statuses_and_retry_after() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap();
        let h = reqwest::header::HeaderMap::new();
        assert_eq!(classify(204, &h, now), Outcome::Delivered(204));
        assert_eq!(
            classify(404, &h, now),
            Outcome::Permanent("HTTP 404".into())
        );
        assert!(matches!(
            classify(503, &h, now),
            Outcome::Retry { after: None, .. }
        ));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:30 GMT".parse().unwrap(),
        );
        assert_eq!(
            classify(429, &h, now),
            Outcome::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
