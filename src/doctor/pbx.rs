//! The doctor's own checks of the PBX side: the websocket the connector opens (with the
//! configured credentials, through the connector's credential header and TLS set-up), and this
//! machine's clock against the PBX's `Date` header.

use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};

use crate::config::{Config, Language, PbxKind};
use crate::health::{Check, PROBE_TIMEOUT, Status, say};

/// Clock offsets up to this are fine (the HTTP Date header has one-second resolution).
const CLOCK_OK: std::time::Duration = std::time::Duration::from_secs(2);

/// The `pbx` and `clock` rows.
pub async fn checks(cfg: &Config, lang: Language) -> Vec<Check> {
    let (pbx, date) = check_pbx(cfg, lang).await;
    let answered = date.is_some() || pbx.status == Status::Pass;
    let clock = if answered {
        check_clock(date, lang)
    } else {
        Check::new(
            "clock",
            Status::Warn,
            say(
                lang,
                "わかりません：PBX が応答しませんでした",
                "cannot tell: the PBX did not answer",
            ),
            say(
                lang,
                "先に pbx の行を直してください",
                "fix the pbx line first",
            ),
        )
    };
    vec![pbx, clock]
}

/// The websocket URL the connector opens: `pbx.url`, or for Asterisk the ARI events socket
/// under it (with an application name of the doctor's own, so a running daemon keeps its events).
pub fn pbx_probe_url(cfg: &Config) -> Result<url::Url, String> {
    let mut u = url::Url::parse(&cfg.pbx.url).map_err(|e| e.to_string())?;
    if cfg.pbx.kind == PbxKind::Asterisk {
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}/ari/events"));
        u.set_query(None);
        u.query_pairs_mut()
            .append_pair("app", &format!("callguard-doctor-{}", std::process::id()))
            .append_pair("subscribeAll", "false");
    }
    Ok(u)
}

/// A failing `pbx` row, before the PBX was reached (so no `Date` for the clock).
fn fail(detail: impl Into<String>, fix: impl Into<String>) -> (Check, Option<String>) {
    (Check::new("pbx", Status::Fail, detail, fix), None)
}

/// Opens the PBX websocket with the configured credentials and closes it again. Returns the
/// check and the PBX's `Date` header, if any, for the clock check.
async fn check_pbx(cfg: &Config, lang: Language) -> (Check, Option<String>) {
    const NAME: &str = "pbx";
    let fix_url = || say(lang, "pbx.url を直してください", "fix pbx.url");
    let url = match pbx_probe_url(cfg) {
        Ok(u) => u,
        Err(e) => return fail(e, fix_url()),
    };
    let shown = crate::pbx::display_url(url.as_str());
    let password = match cfg.pbx_password() {
        Ok(p) => p,
        Err(e) => {
            return fail(
                e.to_string(),
                say(
                    lang,
                    "pbx.password_file を担当者のユーザーが読めるようにするか（モード 0600、所有者は担当者）、CALLGUARD__PBX__PASSWORD を設定してください",
                    "make pbx.password_file readable by the agent's user (mode 0600, owned by them) or set CALLGUARD__PBX__PASSWORD",
                ),
            );
        }
    };
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            return fail(e.to_string(), fix_url());
        }
    };
    // The header the connector sends (`pbx::ws`).
    let creds = crate::pbx::ws::Credentials {
        username: cfg.pbx.username.clone(),
        password,
    };
    let authenticated = !cfg.pbx.username.is_empty();
    if let Some(value) = creds.basic_header() {
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                request.headers_mut().insert("Authorization", v);
            }
            Err(e) => {
                return fail(
                    say(
                        lang,
                        format!("認証情報を送れません：{e}"),
                        format!("the credentials cannot be sent: {e}"),
                    ),
                    say(
                        lang,
                        "pbx.username とパスワードは改行を含まないプレーンテキストにしてください",
                        "pbx.username and the password must be plain text without line breaks",
                    ),
                );
            }
        }
    }
    let connector = if url.scheme() == "wss" {
        match crate::tls::client_config(&cfg.pbx.ca_file) {
            Ok(c) => Some(tokio_tungstenite::Connector::Rustls(c)),
            Err(e) => {
                return fail(
                    e.to_string(),
                    say(
                        lang,
                        "pbx.ca_file には、PBX の証明書に署名した CA の PEM 証明書を指定してください",
                        "point pbx.ca_file at the PEM certificate of the CA that signed the PBX's certificate",
                    ),
                );
            }
        }
    } else {
        None
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Err(_) => (
            Check::new(
                NAME,
                Status::Fail,
                say(
                    lang,
                    format!(
                        "{shown}：{} 秒以内に応答がありません",
                        PROBE_TIMEOUT.as_secs()
                    ),
                    format!("{shown}: no answer within {}s", PROBE_TIMEOUT.as_secs()),
                ),
                say(
                    lang,
                    "pbx.url と、ファイアウォールがこの端末から PBX のポートへの接続を通していることを確かめてください",
                    "check pbx.url and that a firewall lets this machine reach the PBX's port",
                ),
            ),
            None,
        ),
        Ok(Ok((mut ws, response))) => {
            let date = date_header(response.headers());
            let _ = tokio::time::timeout(PROBE_TIMEOUT, ws.close(None)).await;
            let user = &cfg.pbx.username;
            let detail = match (authenticated, lang) {
                (true, Language::Ja) => {
                    format!("{shown}：WebSocket を開けました。`{user}` の認証情報が通りました")
                }
                (true, Language::En) => {
                    format!("{shown}: websocket open, credentials of `{user}` accepted")
                }
                (false, Language::Ja) => {
                    format!("{shown}：WebSocket を開けました。認証情報は設定されていません")
                }
                (false, Language::En) => {
                    format!("{shown}: websocket open, no credentials configured")
                }
            };
            (Check::pass(NAME, detail), date)
        }
        Ok(Err(WsError::Http(response))) => {
            let date = date_header(response.headers());
            let status = response.status();
            let refused = status.as_u16() == 401 || status.as_u16() == 403;
            let detail = if refused {
                say(
                    lang,
                    format!("{shown}：認証情報が拒否されました（HTTP {status}）"),
                    format!("{shown}: credentials refused (HTTP {status})"),
                )
            } else {
                say(
                    lang,
                    format!("{shown}：PBX が WebSocket ではなく HTTP {status} で応答しました"),
                    format!("{shown}: the PBX answered HTTP {status} instead of a websocket"),
                )
            };
            let (ja, en) = match (refused, cfg.pbx.kind) {
                (true, PbxKind::Asterisk) => (
                    "pbx.username と pbx.password_file を、PBX の ari.conf のユーザーと照らし合わせてください",
                    "check pbx.username and pbx.password_file against the user in the PBX's ari.conf",
                ),
                (true, PbxKind::Generic) => (
                    "pbx.username と pbx.password_file を確かめてください",
                    "check pbx.username and pbx.password_file",
                ),
                (false, PbxKind::Asterisk) => (
                    "pbx.url は ARI のベース（ws://HOST:8088）にしてください。ARI とその HTTP サーバーが有効か確かめてください",
                    "pbx.url must be the ARI base (ws://HOST:8088); check that ARI and its HTTP server are enabled",
                ),
                (false, PbxKind::Generic) => (
                    "pbx.url は PBX のプロトコル v1 の WebSocket エンドポイントにしてください",
                    "pbx.url must be the PBX's protocol v1 websocket endpoint",
                ),
            };
            let fix = say(lang, ja, en);
            let check = Check::new(NAME, Status::Fail, detail, fix);
            (check, date)
        }
        Ok(Err(e)) => (
            Check::new(
                NAME,
                Status::Fail,
                say(
                    lang,
                    format!("{shown}：接続できません：{e}"),
                    format!("{shown}: cannot connect: {e}"),
                ),
                say(
                    lang,
                    "pbx.url（ホストとポート）、PBX が動いていること、ファイアウォールがこの端末からの接続を通していることを確かめてください",
                    "check pbx.url (host and port), that the PBX is up, and that a firewall lets this machine reach it",
                ),
            ),
            None,
        ),
    }
}

fn date_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn fix_ntp(lang: Language) -> String {
    say(
        lang,
        "この端末が時刻を同期していることを確かめてください（timedatectl set-ntp true）",
        "make sure this machine syncs its clock (timedatectl set-ntp true)",
    )
}

/// The offset of this machine's clock against the PBX's `Date` header.
fn check_clock(date: Option<String>, lang: Language) -> Check {
    const NAME: &str = "clock";
    let Some(date) = date else {
        return Check::new(
            NAME,
            Status::Warn,
            say(
                lang,
                "わかりません：PBX の応答に Date ヘッダーがありませんでした",
                "cannot tell: the PBX's answer carried no Date header",
            ),
            fix_ntp(lang),
        );
    };
    let theirs = match chrono::DateTime::parse_from_rfc2822(&date) {
        Ok(t) => t.with_timezone(&chrono::Utc),
        Err(e) => {
            return Check::new(
                NAME,
                Status::Warn,
                say(
                    lang,
                    format!("わかりません：PBX の Date ヘッダー `{date}` を読めません（{e}）"),
                    format!("cannot tell: the PBX's Date header `{date}` does not parse ({e})"),
                ),
                fix_ntp(lang),
            );
        }
    };
    clock_verdict(chrono::Utc::now() - theirs, lang)
}

/// Pass within [`CLOCK_OK`] (Date has one-second resolution), else warn with the offset.
pub fn clock_verdict(offset: chrono::TimeDelta, lang: Language) -> Check {
    let ms = offset.num_milliseconds();
    let secs = ms as f64 / 1000.0;
    let shown = say(
        lang,
        format!("PBX との差 {secs:+.1} 秒"),
        format!("{secs:+.1}s against the PBX"),
    );
    if ms.unsigned_abs() <= CLOCK_OK.as_millis() as u64 {
        Check::pass("clock", shown)
    } else {
        Check::new(
            "clock",
            Status::Warn,
            say(
                lang,
                format!("{shown}：証拠と通知の時刻が同じだけずれます"),
                format!("{shown}: call times in evidence and pings are off by as much"),
            ),
            say(
                lang,
                "この端末と PBX の時刻を NTP で同期してください（timedatectl set-ntp true）",
                "sync this machine's clock with NTP (timedatectl set-ntp true), and the PBX's",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asterisk_probe_uses_the_ari_events_socket() {
        let mut cfg = Config::default();
        cfg.pbx.kind = PbxKind::Asterisk;
        cfg.pbx.url = "ws://pbx.example:8088".into();
        let u = pbx_probe_url(&cfg).unwrap();
        assert_eq!(u.path(), "/ari/events");
        assert!(u.query().unwrap().contains("app=callguard-doctor-"));
    }

    #[test]
    fn clock_thresholds() {
        assert_eq!(
            clock_verdict(chrono::TimeDelta::milliseconds(1500), Language::En).status,
            Status::Pass
        );
        let off = clock_verdict(chrono::TimeDelta::seconds(-40), Language::Ja);
        assert_eq!(off.status, Status::Warn);
        assert!(off.detail.contains("-40.0 秒"), "{}", off.detail);
    }
}
