//! Opening a PBX websocket, shared by the connectors: HTTP Basic credentials in a header (never in
//! the URL), rustls for `wss://` with the system roots plus `pbx.ca_file`, and size limits.

use std::time::Duration;

use base64::Engine;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Hard limit of one websocket message; larger ones drop the connection. Frames between 1 MiB
/// and this are read and refused one by one, so a single oversized frame costs no reconnect.
pub const WS_MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// A PBX that does not complete the handshake in this time counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive ping period.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// No frame at all (pongs included) for this long: the connection is dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// An open PBX websocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Who we are towards the PBX. `Debug` shows the user only.
#[derive(Clone, Default)]
pub struct Credentials {
    /// HTTP Basic user; empty = no `Authorization` header.
    pub username: String,
    /// HTTP Basic password.
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

impl Credentials {
    /// The `Authorization` header value, if a user is set.
    pub fn basic_header(&self) -> Option<String> {
        if self.username.is_empty() {
            return None;
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.as_deref().unwrap_or("")
        ));
        Some(format!("Basic {token}"))
    }
}

/// Why a websocket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The server answered the upgrade with 401.
    #[error("HTTP 401 Unauthorized from the PBX")]
    Unauthorized,
    /// Anything else (unreachable, TLS, other HTTP status…).
    #[error("{0}")]
    Other(String),
}

/// Opens `url` (`ws://` or `wss://`) with the credentials and the private CA, if any.
pub async fn open(url: &str, creds: &Credentials, ca_file: &str) -> Result<Socket, OpenError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| OpenError::Other(e.to_string()))?;
    if let Some(value) = creds.basic_header() {
        let value = HeaderValue::from_str(&value)
            .map_err(|e| OpenError::Other(format!("bad credentials header: {e}")))?;
        request.headers_mut().insert("Authorization", value);
    }
    let connector = if url.starts_with("wss:") {
        let tls =
            crate::tls::client_config(ca_file).map_err(|e| OpenError::Other(e.to_string()))?;
        Some(tokio_tungstenite::Connector::Rustls(tls))
    } else {
        None
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(WS_MAX_MESSAGE);
    config.max_frame_size = Some(WS_MAX_MESSAGE);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| OpenError::Other(format!("no answer within {CONNECT_TIMEOUT:?}")))?
    {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) if resp.status() == StatusCode::UNAUTHORIZED => {
            Err(OpenError::Unauthorized)
        }
        Err(e) => Err(OpenError::Other(describe(&e))),
    }
}

/// A short reason: HTTP status for a refused upgrade, else the error text.
pub fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => format!("HTTP {} from the PBX", resp.status()),
        other => other.to_string(),
    }
}
