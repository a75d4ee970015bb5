//! Accepting connections: HTTPS with rustls when a certificate is configured, plain HTTP only
//! on a loopback address (a board on the network without TLS would send passwords and session
//! cookies in the clear).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the board could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP on a non-loopback address.
    #[error(
        "floor.listen = {0} is not a loopback address: set floor.tls_cert and floor.tls_key \
         (the board sends passwords and session cookies), or listen on 127.0.0.1"
    )]
    PlainOffLoopback(SocketAddr),
    /// Only one of cert/key.
    #[error("floor.tls_cert and floor.tls_key go together: set both or neither")]
    HalfTls,
    /// Certificate or key unreadable.
    #[error("{key} {path}: {msg}")]
    Pem {
        /// Which key.
        key: &'static str,
        /// File.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// The TLS settings for `cert`/`key` (PEM files); `None` when both are empty. Checks the
/// loopback rule for `addr`.
pub fn tls_config(
    addr: SocketAddr,
    cert: &str,
    key: &str,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) if addr.ip().is_loopback() => return Ok(None),
        (true, true) => return Err(ServeError::PlainOffLoopback(addr)),
        (false, false) => {}
        _ => return Err(ServeError::HalfTls),
    }
    let pem = |k: &'static str, path: &str, msg: String| ServeError::Pem {
        key: k,
        path: path.to_string(),
        msg,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem("floor.tls_cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem("floor.tls_cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem(
            "floor.tls_cert",
            cert,
            "no PEM certificate in it".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem("floor.tls_key", key, e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Longest a client may take over the TLS handshake. Without a bound, anyone who can reach the
/// board could hold connections (a task and a file descriptor each) open for good by opening
/// them and saying nothing.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request's headers, for the same reason (a response
/// that streams, like the board's events, is not bounded by it).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a form post may take from its headers to its answer, its body included: a client
/// sending the body a byte at a time holds its connection this long at most (`408`). Only
/// posts: a page or a report is read with a `GET`, the live updates are a response.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers `408` to a post that has not been answered within [`POST_TIMEOUT`].
async fn post_deadline(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    match tokio::time::timeout(POST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!("board: a post not done within {POST_TIMEOUT:?}");
            axum::http::StatusCode::REQUEST_TIMEOUT.into_response()
        }
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `stop`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    stop: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = app.layer(axum::middleware::from_fn(post_deadline));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "board: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app
            .clone()
            .layer(axum::Extension(ConnectInfo::<SocketAddr>(peer)));
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Err(_) => {
                            tracing::debug!(%peer, "board: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                            return;
                        }
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            tokio::select! {
                                r = conn => r,
                                _ = stop.cancelled() => Ok(()),
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "board: TLS handshake failed");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => r,
                        _ = stop.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "board: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:8480".parse().unwrap();
        assert!(tls_config(lo, "", "").unwrap().is_none());
        let any: SocketAddr = "0.0.0.0:8480".parse().unwrap();
        let err = tls_config(any, "", "").unwrap_err().to_string();
        assert!(
            err.contains("not a loopback address") && err.contains("floor.tls_cert"),
            "{err}"
        );
        assert!(matches!(
            tls_config(any, "/x/cert.pem", ""),
            Err(ServeError::HalfTls)
        ));
    }

    /// A self-signed certificate and its key as PEM files in `dir`.
    fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec!["floor.example".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    /// Serves a one-route app on a loopback port; returns its address and the stop.
    async fn board(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async { "ok" }).post(|body: String| async move { body }),
        );
        tokio::spawn(serve(listener, tls, app, stop.clone()));
        (addr, stop)
    }

    /// Reads until the server closes the connection; what it sent, and when it closed. Fails
    /// when it is still open after five minutes (of the paused clock: at once).
    async fn until_closed(c: &mut tokio::net::TcpStream) -> (Vec<u8>, tokio::time::Instant) {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let read = c.read_to_end(&mut got);
        if tokio::time::timeout(Duration::from_secs(300), read)
            .await
            .is_err()
        {
            panic!("the board still holds the connection after 300 s");
        }
        (got, tokio::time::Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_does_the_tls_handshake_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let tls = tls_config(lo, cert.to_str().unwrap(), key.to_str().unwrap()).unwrap();
        let (addr, stop) = board(tls).await;
        let start = tokio::time::Instant::now();
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (got, closed) = until_closed(&mut silent).await;
        assert!(got.is_empty());
        let waited = closed - start;
        assert!(
            waited >= HANDSHAKE_TIMEOUT && waited < HANDSHAKE_TIMEOUT * 2,
            "{waited:?}"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_headers_never_end_is_let_go_and_a_whole_one_is_answered() {
        use tokio::io::AsyncWriteExt;
        let (addr, stop) = board(None).await;
        let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
        whole
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (got, _) = until_closed(&mut whole).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
            "{text}"
        );

        let start = tokio::time::Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let (_, closed) = until_closed(&mut slow).await;
        let waited = closed - start;
        assert!(
            waited >= HEADER_TIMEOUT && waited < HEADER_TIMEOUT * 2,
            "{waited:?}"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_whose_body_never_ends_gets_408_and_a_whole_one_its_answer() {
        use tokio::io::AsyncWriteExt;
        let (addr, stop) = board(None).await;
        let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
        whole
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
            )
            .await
            .unwrap();
        let (got, _) = until_closed(&mut whole).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
            "{text}"
        );

        let start = tokio::time::Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\nab",
        )
        .await
        .unwrap();
        let (got, closed) = until_closed(&mut slow).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let waited = closed - start;
        assert!(
            waited >= POST_TIMEOUT && waited < POST_TIMEOUT * 2,
            "{waited:?}"
        );
        stop.cancel();
    }

    #[test]
    fn a_certificate_and_key_give_https() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let cfg = tls_config(any, cert.to_str().unwrap(), key.to_str().unwrap())
            .unwrap()
            .expect("TLS");
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let bad = tls_config(any, key.to_str().unwrap(), key.to_str().unwrap()).unwrap_err();
        assert!(bad.to_string().contains("floor.tls_cert"), "{bad}");
    }
}
