//! `wss://` to a PBX whose certificate comes from a private CA (`pbx.ca_file`): the real daemon,
//! a TLS websocket server on 127.0.0.1 with a CA and certificate made by the test.

mod common;

use std::sync::Arc;

use callguard::events::Report;
use common::{TestRun, test_config};
use futures_util::SinkExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

struct Pki {
    ca_pem: String,
    server: Arc<tokio_rustls::rustls::ServerConfig>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

#[tokio::test]
async fn wss_with_a_private_ca_connects_and_carries_calls() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pbx-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let start = json!({"type":"call.start","call_id":"tls-1","agent":"1001","caller":"0312345678"});
                let _ = ws.send(Message::Text(start.to_string().into())).await;
                // Keep the connection open until the client goes.
                use futures_util::StreamExt;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });

    let mut cfg = test_config(dir.path(), &format!("wss://localhost:{port}/"));
    cfg.pbx.ca_file = ca_file.display().to_string();
    let mut d = TestRun::headless().start(cfg);
    let url = d
        .next(|r| match r {
            Report::Connected(u) => Some(u.clone()),
            _ => None,
        })
        .await;
    assert!(url.starts_with("wss://localhost"), "{url}");
    let id = d
        .next(|r| match r {
            Report::CallStarted(c) => Some(c.call_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(id, "tls-1");
    d.stop().await;

    // Without the private CA the certificate is refused, and the daemon says why.
    let mut cfg = test_config(dir.path(), &format!("wss://localhost:{port}/"));
    cfg.pbx.ca_file = String::new();
    let mut d = TestRun::headless().start(cfg);
    let why = d
        .next(|r| match r {
            Report::Disconnected(w) => Some(w.clone()),
            _ => None,
        })
        .await;
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    d.stop().await;
}
