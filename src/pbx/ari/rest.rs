//! The few ARI REST calls callguard makes: list channels (resync), snoop, record, play, and
//! download a stored recording. Credentials go in an HTTP Basic header, never in a URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use url::Url;

use super::event::Channel;
use crate::pbx::ws::Credentials;

/// Connect timeout of every REST call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte from Asterisk for this long: the call failed.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest recording downloaded: a WAV file's own limit (its RIFF size is 32 bits), so a
/// larger body is no recording and never fills the evidence disk.
pub const MAX_RECORDING_BYTES: u64 = u32::MAX as u64 + 8;
/// Largest channel list read (thousands of channels take a few MB).
const MAX_LIST_BYTES: u64 = 64 << 20;
/// Most of an error body kept for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The URL or the TLS settings are unusable.
    #[error("{0}")]
    Setup(String),
    /// 401: the user or password is wrong.
    #[error(
        "Asterisk refused ARI user `{user}` (HTTP 401): check pbx.username and the password (pbx.password_file or CALLGUARD__PBX__PASSWORD) against ari.conf"
    )]
    Unauthorized {
        /// The ARI user.
        user: String,
    },
    /// Another HTTP status.
    #[error("{what}: HTTP {status} from Asterisk{detail}")]
    Status {
        /// What was asked.
        what: String,
        /// The status.
        status: u16,
        /// `: <message>` from the body, if any.
        detail: String,
    },
    /// Asterisk could not be reached or the answer broke off.
    #[error("{what}: cannot reach Asterisk: {msg}")]
    Transport {
        /// What was asked.
        what: String,
        /// Why.
        msg: String,
    },
    /// The answer does not parse.
    #[error("{what}: unexpected answer from Asterisk: {msg}")]
    Body {
        /// What was asked.
        what: String,
        /// Why.
        msg: String,
    },
    /// The answer is larger than any answer to that call can be.
    #[error("{what}: the answer from Asterisk is more than {max} bytes; refused")]
    TooLarge {
        /// What was asked.
        what: String,
        /// The most accepted.
        max: u64,
    },
    /// The downloaded file could not be written.
    #[error("cannot write {path}: {msg}", path = path.display())]
    Io {
        /// Local file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
}

impl RestError {
    /// An answer over its size limit: asking again gets the same.
    pub fn is_too_large(&self) -> bool {
        matches!(self, RestError::TooLarge { .. })
    }

    /// HTTP 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RestError::Status { status: 404, .. })
    }

    /// `409 Channel not in Stasis application`: the channel (a fresh snoop) has not entered
    /// the application yet; nothing was done.
    pub fn is_not_in_stasis(&self) -> bool {
        matches!(self, RestError::Status { status: 409, detail, .. } if detail.contains("not in Stasis"))
    }

    /// `409 Recording '…' already exists`: a recording of that name is there already (with
    /// `ifExists=fail`). No other status means this.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, RestError::Status { status: 409, detail, .. } if detail.contains("already exists"))
    }
}

/// The ARI base URLs derived from `pbx.url` (`ws://HOST:8088` or `wss://…`).
#[derive(Debug, Clone, PartialEq)]
pub struct AriUrls {
    /// `http(s)://HOST:PORT/…/ari`.
    pub rest: Url,
    /// `ws(s)://HOST:PORT/…/ari/events?app=APP&subscribeAll=true`.
    pub events: Url,
}

impl AriUrls {
    /// Derives both URLs. A path in `pbx.url` is kept (a reverse proxy prefix); a trailing
    /// `/ari` or `/ari/events` is not repeated.
    pub fn derive(pbx_url: &str, app: &str) -> Result<AriUrls, RestError> {
        let ws = Url::parse(pbx_url)
            .map_err(|e| RestError::Setup(format!("pbx.url `{pbx_url}`: {e}")))?;
        let http_scheme = match ws.scheme() {
            "ws" | "http" => "http",
            "wss" | "https" => "https",
            other => {
                return Err(RestError::Setup(format!(
                    "pbx.url: scheme `{other}` is not ws:// or wss://"
                )));
            }
        };
        let mut path = ws.path().trim_end_matches('/').to_string();
        for tail in ["/ari/events", "/ari"] {
            if let Some(p) = path.strip_suffix(tail) {
                path = p.to_string();
                break;
            }
        }
        let mut rest = ws.clone();
        rest.set_query(None);
        rest.set_fragment(None);
        rest.set_path(&format!("{path}/ari"));
        let mut events = rest.clone();
        events.set_path(&format!("{path}/ari/events"));
        events
            .query_pairs_mut()
            .append_pair("app", app)
            .append_pair("subscribeAll", "true");
        // Scheme changes between ws and http are refused by `Url::set_scheme`; rebuild instead.
        let rest = swap_scheme(&rest, http_scheme)?;
        Ok(AriUrls { rest, events })
    }
}

fn swap_scheme(u: &Url, scheme: &str) -> Result<Url, RestError> {
    let s = u.as_str();
    let rest_of = s.split_once(':').map(|(_, r)| r).unwrap_or(s);
    Url::parse(&format!("{scheme}:{rest_of}")).map_err(|e| RestError::Setup(e.to_string()))
}

/// An ARI REST client.
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: Url,
    creds: Credentials,
}

impl Rest {
    /// A client for `base` (`http(s)://HOST:PORT/ari`); `ca_file` adds a private CA.
    pub fn new(base: Url, creds: Credentials, ca_file: &str) -> Result<Rest, RestError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("callguard/", env!("CARGO_PKG_VERSION")));
        if !ca_file.is_empty() {
            let pem = std::fs::read(ca_file)
                .map_err(|e| RestError::Setup(format!("pbx.ca_file {ca_file}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RestError::Setup(format!("pbx.ca_file {ca_file}: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RestError::Setup(format!("HTTP client: {e}")))?;
        Ok(Rest { http, base, creds })
    }

    /// The ARI user (for messages).
    pub fn user(&self) -> &str {
        &self.creds.username
    }

    /// `base` plus path segments, each percent-encoded as one segment (`/` → `%2F`).
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        what: &str,
    ) -> Result<reqwest::Response, RestError> {
        let mut req = self.http.request(method, url);
        if let Some(auth) = self.creds.basic_header() {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        let mut resp = req.send().await.map_err(|e| RestError::Transport {
            what: what.to_string(),
            msg: crate::host::error_chain(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(RestError::Unauthorized {
                user: self.creds.username.clone(),
            });
        }
        if !status.is_success() {
            let mut body = Vec::new();
            // An error body past its limit still gives the message read so far.
            let _ = read_capped(&mut resp, MAX_ERROR_BYTES, what, &mut body).await;
            let body = String::from_utf8_lossy(&body);
            return Err(RestError::Status {
                what: what.to_string(),
                status: status.as_u16(),
                detail: ari_message(&body),
            });
        }
        Ok(resp)
    }

    /// `GET /ari/channels`.
    pub async fn channels(&self) -> Result<Vec<Channel>, RestError> {
        let what = "GET /ari/channels";
        let mut resp = self
            .send(Method::GET, self.url(&["channels"], &[]), what)
            .await?;
        let mut bytes = Vec::new();
        read_capped(&mut resp, MAX_LIST_BYTES, what, &mut bytes).await?;
        serde_json::from_slice(&bytes).map_err(|e| RestError::Body {
            what: what.into(),
            msg: e.to_string(),
        })
    }

    /// `POST /ari/channels/{id}/snoop`: a snoop channel with the given id, placed in `app`.
    pub async fn snoop(
        &self,
        channel_id: &str,
        spy: &str,
        whisper: &str,
        app: &str,
        snoop_id: &str,
    ) -> Result<(), RestError> {
        let url = self.url(
            &["channels", channel_id, "snoop"],
            &[
                ("spy", spy),
                ("whisper", whisper),
                ("app", app),
                ("snoopId", snoop_id),
            ],
        );
        self.send(Method::POST, url, &format!("snoop on channel {channel_id}"))
            .await
            .map(drop)
    }

    /// `POST /ari/channels/{id}/record`: records the channel as WAV under `name`.
    pub async fn record(&self, channel_id: &str, name: &str) -> Result<(), RestError> {
        let url = self.url(
            &["channels", channel_id, "record"],
            &[("name", name), ("format", "wav"), ("ifExists", "fail")],
        );
        self.send(Method::POST, url, &format!("record channel {channel_id}"))
            .await
            .map(drop)
    }

    /// `POST /ari/channels/{id}/play?media=…`.
    pub async fn play(&self, channel_id: &str, media: &str) -> Result<(), RestError> {
        let url = self.url(&["channels", channel_id, "play"], &[("media", media)]);
        self.send(
            Method::POST,
            url,
            &format!("play {media} on channel {channel_id}"),
        )
        .await
        .map(drop)
    }

    /// `GET /ari/recordings/stored/{name}/file` into `dest` (created 0600, never overwritten).
    /// Returns the byte count. A partial file is removed, and so is a body over
    /// [`MAX_RECORDING_BYTES`].
    pub async fn download(&self, name: &str, dest: &Path) -> Result<u64, RestError> {
        self.download_at_most(name, dest, MAX_RECORDING_BYTES).await
    }

    /// [`Rest::download`] of at most `max` bytes.
    pub async fn download_at_most(
        &self,
        name: &str,
        dest: &Path,
        max: u64,
    ) -> Result<u64, RestError> {
        use tokio::io::AsyncWriteExt;
        let what = format!("download of recording {name}");
        let url = self.url(&["recordings", "stored", name, "file"], &[]);
        let mut resp = self.send(Method::GET, url, &what).await?;
        let io = |e: std::io::Error| RestError::Io {
            path: dest.to_path_buf(),
            msg: e.to_string(),
        };
        let file = crate::fsutil::create_new_private_file(dest).map_err(io)?;
        let mut file = tokio::fs::File::from_std(file);
        let copied: Result<u64, RestError> = async {
            let mut n = 0u64;
            // Written chunk by chunk as it comes, never gathered whole.
            while let Some(chunk) = read_capped_once(&mut resp, max, &mut n, &what).await? {
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)?;
            Ok(n)
        }
        .await;
        if copied.is_err() {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
        }
        copied
    }
}

/// The next chunk of `resp`'s body, `None` at its end; `read` counts the bytes so far, and a
/// body that goes past `max` is refused.
async fn read_capped_once(
    resp: &mut reqwest::Response,
    max: u64,
    read: &mut u64,
    what: &str,
) -> Result<Option<bytes::Bytes>, RestError> {
    let chunk = resp.chunk().await.map_err(|e| RestError::Transport {
        what: what.to_string(),
        msg: crate::host::error_chain(&e),
    })?;
    if let Some(c) = &chunk {
        *read += c.len() as u64;
        if *read > max {
            return Err(RestError::TooLarge {
                what: what.to_string(),
                max,
            });
        }
    }
    Ok(chunk)
}

/// Appends `resp`'s body to `buf`, refusing a body over `max` bytes (what came before the
/// chunk that went past it stays in `buf`).
async fn read_capped(
    resp: &mut reqwest::Response,
    max: u64,
    what: &str,
    buf: &mut Vec<u8>,
) -> Result<(), RestError> {
    let mut n = 0u64;
    while let Some(c) = read_capped_once(resp, max, &mut n, what).await? {
        buf.extend_from_slice(&c);
    }
    Ok(())
}

/// ARI error bodies are `{"message":"…"}`.
fn ari_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_str::<Msg>(body) {
        Ok(m) => format!(": {}", m.message),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_rest_and_events_urls() {
        let u = AriUrls::derive("ws://pbx.example:8088", "callguard-ws1").unwrap();
        assert_eq!(u.rest.as_str(), "http://pbx.example:8088/ari");
        assert_eq!(
            u.events.as_str(),
            "ws://pbx.example:8088/ari/events?app=callguard-ws1&subscribeAll=true"
        );
        let u = AriUrls::derive("wss://proxy.example/asterisk/ari/", "a b").unwrap();
        assert_eq!(u.rest.as_str(), "https://proxy.example/asterisk/ari");
        assert_eq!(
            u.events.as_str(),
            "wss://proxy.example/asterisk/ari/events?app=a+b&subscribeAll=true"
        );
    }

    #[test]
    fn only_the_exact_refusals_are_told_apart() {
        let status = |status, detail: &str| RestError::Status {
            what: "record channel cg-snoop-1".into(),
            status,
            detail: ari_message(&format!(r#"{{"message":"{detail}"}}"#)),
        };
        let race = status(409, "Channel not in Stasis application");
        assert!(race.is_not_in_stasis() && !race.is_already_exists());
        let exists = status(
            409,
            "Recording 'callguard/1' already exists and can not be overwritten",
        );
        assert!(exists.is_already_exists() && !exists.is_not_in_stasis());
        let format = status(422, "specified format is unknown on this system");
        assert!(!format.is_already_exists() && !format.is_not_in_stasis());
    }

    #[test]
    fn a_slash_in_a_name_stays_in_one_segment() {
        let base = Url::parse("http://127.0.0.1:8088/ari").unwrap();
        let rest = Rest::new(base, Credentials::default(), "").unwrap();
        let u = rest.url(
            &["recordings", "stored", "callguard/1795354434.7", "file"],
            &[],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8088/ari/recordings/stored/callguard%2F1795354434.7/file"
        );
    }
}
