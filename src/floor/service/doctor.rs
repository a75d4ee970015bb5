//! `callguard floor doctor`: what the floor service needs, checked line by line on the machine
//! that runs it, each with its fix: the board's address and TLS files, the store, the NATS
//! connection with the floor's credentials, the `CALLGUARD` stream, and, with `[archive]`, the
//! archive it reads evidence from and the workstations' public keys.
//!
//! The checks do what the service does at start and nothing more: the store is opened as the
//! service opens it (a new SQLite file and the migrations included), the stream is looked up,
//! never created, and the archive is only asked whether the bucket answers to the credentials.

use std::time::Duration;

use crate::config::{Config, Language};
use crate::floor::config::FloorConfig;
use crate::floor::contract;
use crate::floor::link::{ConnectMode, Link, LinkError};
use crate::health::{Check, Status, say};

/// How long the stream lookup may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the configuration the service would and runs every check; `language` overrides the
/// configuration's (`--json` asks for English).
pub async fn diagnose(
    explicit: Option<&std::path::Path>,
    language: Option<Language>,
) -> crate::doctor::Report {
    let (cfg, lang, row) = match crate::doctor::load(explicit, language) {
        Ok(v) => v,
        Err(report) => return report,
    };
    let mut rows = vec![row];
    rows.extend(checks(&cfg, lang).await);
    crate::doctor::Report::new(rows, lang)
}

/// The rows after the configuration's, in report order.
pub async fn checks(cfg: &Config, lang: Language) -> Vec<Check> {
    let Some(fc) = cfg.floor.clone() else {
        return vec![Check::new(
            "floor",
            Status::Fail,
            say(
                lang,
                "設定に [floor] がありません",
                "the configuration has no [floor] table",
            ),
            say(
                lang,
                "[floor] に nats_url、site、db、listen を書いてください（README「The floor tier」）",
                "add [floor] with nats_url, site, db and listen (README \"The floor tier\")",
            ),
        )];
    };
    let mut out = vec![board(&fc, lang), store(cfg, lang).await];
    out.extend(bus(&fc, lang).await);
    out.extend(archive(cfg, &fc, lang).await);
    out
}

/// `floor.listen` and the TLS files, as the service checks them before it listens.
fn board(fc: &FloorConfig, lang: Language) -> Check {
    let addr: std::net::SocketAddr = match fc.listen.parse() {
        Ok(a) => a,
        Err(_) => {
            return Check::new(
                "board",
                Status::Fail,
                format!("floor.listen = {:?} is not an address:port", fc.listen),
                say(
                    lang,
                    "floor.listen を 0.0.0.0:8443 のように書いてください",
                    "write floor.listen as e.g. 0.0.0.0:8443",
                ),
            );
        }
    };
    match super::web::tls_config(addr, &fc.tls_cert, &fc.tls_key) {
        Ok(Some(_)) => Check::pass(
            "board",
            say(
                lang,
                format!("https://{addr}/ で開きます（{} の証明書）", fc.tls_cert),
                format!("serves https://{addr}/ (certificate {})", fc.tls_cert),
            ),
        ),
        Ok(None) => Check::pass(
            "board",
            say(
                lang,
                format!("http://{addr}/ で開きます（ループバックのみ、TLS なし）"),
                format!("serves http://{addr}/ (loopback only, no TLS)"),
            ),
        ),
        Err(e) => Check::new(
            "board",
            Status::Fail,
            e.to_string(),
            say(
                lang,
                "floor.tls_cert と floor.tls_key に読める PEM ファイルを指定してください（ループバック以外では必須）",
                "give floor.tls_cert and floor.tls_key as readable PEM files (required off loopback)",
            ),
        ),
    }
}

/// The store, opened as the service opens it.
async fn store(cfg: &Config, lang: Language) -> Check {
    let url = super::db_url(cfg);
    let shown = shown_db(&url);
    match super::store::Store::open(&url).await {
        Ok(_) => Check::pass(
            "store",
            say(
                lang,
                format!("{shown}：開けました（スキーマは最新）"),
                format!("{shown}: open, schema up to date"),
            ),
        ),
        Err(e) => Check::new(
            "store",
            Status::Fail,
            format!("{shown}: {e}"),
            say(
                lang,
                "floor.db を直してください（sqlite://PATH か postgres://…、サーバーと権限）",
                "fix floor.db (sqlite://PATH or postgres://…, the server and its grants)",
            ),
        ),
    }
}

/// The store as the rows show it: the file of SQLite; the server and database of PostgreSQL,
/// without user or password (rows mask what follows a URL's host).
fn shown_db(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        return format!("SQLite {}", rest.split('?').next().unwrap_or(rest));
    }
    match url::Url::parse(url) {
        Ok(u) => format!(
            "PostgreSQL {}:{} {}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path().trim_start_matches('/')
        ),
        Err(_) => super::store::mask_db_url(url),
    }
}

/// The NATS connection with the floor's credentials, and the stream.
async fn bus(fc: &FloorConfig, lang: Language) -> Vec<Check> {
    let shown = fc.masked().nats_url;
    let host = crate::host::name();
    let link = match Link::connect(fc, "floor", &host, ConnectMode::Once).await {
        Ok(l) => l,
        Err(e) => {
            let fix = match &e {
                LinkError::Credentials(_) => say(
                    lang,
                    "floor.user と floor.password_file（または nkey_file / creds_file）を NATS サーバーの floor ユーザーに合わせてください",
                    "match floor.user and floor.password_file (or nkey_file / creds_file) to the NATS server's floor user",
                ),
                _ => say(
                    lang,
                    "NATS サーバーが動いていて floor.nats_url で届くか、TLS なら floor.ca_file を確かめてください",
                    "check that the NATS server runs and answers at floor.nats_url (with TLS: floor.ca_file)",
                ),
            };
            return vec![Check::new("bus", Status::Fail, e.to_string(), fix)];
        }
    };
    let mut out = vec![Check::pass(
        "bus",
        say(
            lang,
            format!("{shown}：接続でき、認証情報も通りました"),
            format!("{shown}: connected, credentials taken"),
        ),
    )];
    let js = async_nats::jetstream::new(link.client().clone());
    let lookup = async {
        use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
        match js.get_stream(contract::STREAM).await {
            Ok(mut s) => s
                .info()
                .await
                .map(|i| Some(i.state.clone()))
                .map_err(|e| e.to_string()),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(e.to_string()),
            },
        }
    };
    out.push(match tokio::time::timeout(STREAM_TIMEOUT, lookup).await {
        Ok(Ok(Some(state))) => Check::pass(
            "stream",
            say(
                lang,
                format!(
                    "{}：{} 件、{} バイト",
                    contract::STREAM,
                    state.messages,
                    state.bytes
                ),
                format!(
                    "{}: {} messages, {} bytes",
                    contract::STREAM,
                    state.messages,
                    state.bytes
                ),
            ),
        ),
        Ok(Ok(None)) => missing_stream(fc, lang),
        Ok(Err(e)) => Check::new(
            "stream",
            Status::Fail,
            format!("{}: {e}", contract::STREAM),
            say(
                lang,
                "floor ユーザーに $JS.API.> の権限があるか、JetStream が有効か確かめてください（deploy/nats/）",
                "check that the floor user may use $JS.API.> and that JetStream is on (deploy/nats/)",
            ),
        ),
        Err(_) => Check::new(
            "stream",
            Status::Fail,
            format!(
                "{}: no answer within {STREAM_TIMEOUT:?}",
                contract::STREAM
            ),
            say(
                lang,
                "NATS サーバーで JetStream が有効か確かめてください",
                "check that JetStream is on in the NATS server",
            ),
        ),
    });
    link.close().await;
    out
}

/// No stream yet: fine when the floor creates it at start, a failure when nobody will.
fn missing_stream(fc: &FloorConfig, lang: Language) -> Check {
    if fc.create_stream {
        Check::new(
            "stream",
            Status::Warn,
            say(
                lang,
                format!(
                    "{} はまだありません：callguard floor が起動時に作ります",
                    contract::STREAM
                ),
                format!(
                    "{} does not exist yet: callguard floor creates it at start",
                    contract::STREAM
                ),
            ),
            say(
                lang,
                "callguard floor を起動してください（それまでワークステーションはイベントをためておきます）",
                "start callguard floor (until then the workstations keep their events queued)",
            ),
        )
    } else {
        Check::new(
            "stream",
            Status::Fail,
            say(
                lang,
                format!(
                    "{} がなく、floor.create_stream = false です",
                    contract::STREAM
                ),
                format!(
                    "{} does not exist, and floor.create_stream = false",
                    contract::STREAM
                ),
            ),
            say(
                lang,
                "deploy/nats/stream.json で作るか、floor.create_stream = true にしてください",
                "create it from deploy/nats/stream.json, or set floor.create_stream = true",
            ),
        )
    }
}

/// With `[archive]`: the bucket answers to the floor's credentials, and the workstations' keys
/// are there to check signatures with.
async fn archive(cfg: &Config, fc: &FloorConfig, lang: Language) -> Vec<Check> {
    if !cfg.archive.enabled() {
        return Vec::new();
    }
    let fix = say(
        lang,
        "[archive] の endpoint、bucket、鍵ファイル、ca_file を直してください（床サービスには読み取り権限が必要です）",
        "fix [archive]'s endpoint, bucket, key files and ca_file (the floor needs read access)",
    );
    let access = match super::evidence::access(cfg).await {
        Ok(Some(a)) => a,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![Check::new("archive", Status::Fail, e.to_string(), fix)],
    };
    let bucket = &cfg.archive.bucket;
    let mut out = vec![match access.archive.check_bucket().await {
        Ok(()) => Check::pass(
            "archive",
            say(
                lang,
                format!(
                    "バケット {bucket}：接続でき、認証情報も通りました（証拠の確認に使います）"
                ),
                format!("bucket {bucket}: reachable, credentials taken (evidence checks read it)"),
            ),
        ),
        Err(e) => Check::new("archive", Status::Fail, e.to_string(), fix),
    }];
    out.push(keys(&fc.evidence_keys, lang));
    out
}

/// `floor.evidence_keys`: a folder of `<host>.pub`, one per workstation.
fn keys(dir: &str, lang: Language) -> Check {
    if dir.is_empty() {
        return Check::new(
            "evidence-keys",
            Status::Warn,
            say(
                lang,
                "floor.evidence_keys がありません：アーカイブのフォルダーは署名を確かめられず、ボードには「公開鍵なし」と出ます",
                "floor.evidence_keys is not set: archived folders cannot have their signatures checked (the board shows \"no public key\")",
            ),
            say(
                lang,
                "各ワークステーションの `callguard key show` を <host>.pub としてフォルダーに置き、floor.evidence_keys に指定してください",
                "put each workstation's `callguard key show` in a folder as <host>.pub and set floor.evidence_keys",
            ),
        );
    }
    let fix = say(
        lang,
        "各ワークステーションの `callguard key show` を <host>.pub として置いてください",
        "put each workstation's `callguard key show` there as <host>.pub",
    );
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let n = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pub"))
                .count();
            if n == 0 {
                Check::new(
                    "evidence-keys",
                    Status::Warn,
                    say(
                        lang,
                        format!("{dir}：公開鍵（*.pub）がありません"),
                        format!("{dir}: no public keys (*.pub)"),
                    ),
                    fix,
                )
            } else {
                Check::pass(
                    "evidence-keys",
                    say(
                        lang,
                        format!("{dir}：ワークステーションの公開鍵 {n} 件"),
                        format!(
                            "{dir}: {n} workstation public key{}",
                            if n == 1 { "" } else { "s" }
                        ),
                    ),
                )
            }
        }
        Err(e) => Check::new("evidence-keys", Status::Fail, format!("{dir}: {e}"), fix),
    }
}
