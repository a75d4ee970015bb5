//! The escalation sink's health rows for `callguard doctor`: each team-lead webhook reachable,
//! or with `--send-test-ping` a real test ping accepted. The ping goes out with the sender's
//! client (no redirects), its secret reading and its signing, so what passes here is what a
//! real ping does.

use crate::config::{Language, WebhookConfig, WebhookFormat};
use crate::health::{Check, PROBE_TIMEOUT, Status, say};

use super::{EscalationOptions, sender};

/// Event name of a test ping; receivers can drop it.
pub const TEST_EVENT: &str = "callguard.test";

/// Who the test ping says it comes from.
pub struct Sender<'a> {
    /// The sink's options (receivers, agent name, host).
    pub opts: &'a EscalationOptions,
    /// The agent's extension (`agent.extension`).
    pub agent: &'a str,
}

/// One row per webhook (or a `webhooks` row when there is none).
pub async fn checks(from: &Sender<'_>, send_test_ping: bool, lang: Language) -> Vec<Check> {
    let hooks = &from.opts.webhooks;
    if hooks.is_empty() {
        return vec![Check::new(
            "webhooks",
            Status::Warn,
            say(
                lang,
                "[[escalation.webhook]] がありません：上長には誰にも連絡されません",
                "no [[escalation.webhook]]: escalations reach no team lead",
            ),
            say(
                lang,
                "上長の Webhook を /etc/callguard/conf.d/ に追加してください（例：/usr/share/doc/callguard/examples/conf.d/50-team-leads.toml、すべての設定項目：/etc/callguard/callguard.toml）",
                "add the team leads' webhook in /etc/callguard/conf.d/ (example: /usr/share/doc/callguard/examples/conf.d/50-team-leads.toml; every key: /etc/callguard/callguard.toml)",
            ),
        )];
    }
    // The client pings are sent with (no redirects), with the probe's shorter timeout.
    let client = match sender::client_with_timeout(PROBE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::new(
                "webhooks",
                Status::Fail,
                say(
                    lang,
                    format!("HTTP を準備できません：{e}"),
                    format!("cannot set up HTTP: {e}"),
                ),
                say(
                    lang,
                    "システムの TLS 証明書（ca-certificates）を確かめてください",
                    "check the system's TLS certificates (ca-certificates)",
                ),
            )];
        }
    };
    let mut rows = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let name = format!("webhook[{i}]");
        let shown = crate::config::mask_url(&hook.url);
        rows.push(if send_test_ping {
            test_ping(&client, from, hook, &name, &shown, lang).await
        } else {
            reachable(&client, hook, &name, &shown, lang).await
        });
    }
    rows
}

/// The row of a receiver that could not be reached.
fn unreachable(name: &str, shown: &str, e: &reqwest::Error, lang: Language) -> Check {
    let why = crate::host::error_chain(e);
    Check::new(
        name,
        Status::Fail,
        say(
            lang,
            format!("{shown}：到達できません：{why}"),
            format!("{shown}: unreachable: {why}"),
        ),
        say(
            lang,
            "URL、DNS、プロキシ、この端末と受信側の間のファイアウォールを確かめてください",
            "check the URL, DNS, proxy and firewall between this machine and the receiver",
        ),
    )
}

async fn reachable(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    name: &str,
    shown: &str,
    lang: Language,
) -> Check {
    // Any HTTP answer (405 to a HEAD included) proves the path; only a test ping proves the body.
    match client.head(&hook.url).send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            Check::pass(
                name,
                say(
                    lang,
                    format!(
                        "{shown}：到達できます（HTTP {code}）。--send-test-ping で実際にテスト送信します"
                    ),
                    format!("{shown}: reachable (HTTP {code}); --send-test-ping sends a real ping"),
                ),
            )
        }
        Err(e) => unreachable(name, shown, &e, lang),
    }
}

/// The body of a test ping: the contract's shape with `"event": "callguard.test"` for `json`,
/// a plain text message for Slack and Teams.
pub fn test_body(from: &Sender<'_>, format: WebhookFormat, id: &str) -> serde_json::Value {
    let host = &from.opts.origin.host;
    let text = format!(
        "callguard test ping from {host}: team-lead pings from this workstation arrive here"
    );
    match format {
        WebhookFormat::Json => serde_json::json!({
            "event": TEST_EVENT,
            "id": id,
            "kind": "test",
            "agent": from.agent,
            "agent_name": from.opts.origin.agent_name,
            "sent_at": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            "host": host,
            "text": text,
        }),
        WebhookFormat::Slack | WebhookFormat::Teams => serde_json::json!({ "text": text }),
    }
}

async fn test_ping(
    client: &reqwest::Client,
    from: &Sender<'_>,
    hook: &WebhookConfig,
    name: &str,
    shown: &str,
    lang: Language,
) -> Check {
    let mut raw = [0u8; 8];
    let id = match getrandom::fill(&mut raw) {
        Ok(()) => format!("test-{}", hex::encode(raw)),
        Err(_) => format!(
            "test-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ),
    };
    let body = test_body(from, hook.format, &id).to_string();
    let mut req = client
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header(sender::IDEMPOTENCY_HEADER, &id);
    if !hook.secret_file.is_empty() {
        // The secret is read and the body signed exactly as a real ping's.
        match sender::read_secret(&hook.secret_file) {
            Ok(secret) => {
                req = req.header(
                    sender::SIGNATURE_HEADER,
                    sender::signature(&secret, body.as_bytes()),
                )
            }
            Err(e) => {
                return Check::new(
                    name,
                    Status::Fail,
                    format!("{shown}: {e}"),
                    say(
                        lang,
                        "secret_file を担当者のユーザーが読めるようにしてください",
                        "make the secret file readable by the agent's user",
                    ),
                );
            }
        }
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => {
            let code = resp.status().as_u16();
            Check::pass(
                name,
                say(
                    lang,
                    format!("{shown}：テスト送信が届きました（HTTP {code}）"),
                    format!("{shown}: test ping delivered (HTTP {code})"),
                ),
            )
        }
        Ok(resp) => {
            let code = resp.status().as_u16();
            Check::new(
                name,
                Status::Fail,
                say(
                    lang,
                    format!("{shown}：テスト送信が拒否されました（HTTP {code}）"),
                    format!("{shown}: test ping refused (HTTP {code})"),
                ),
                say(
                    lang,
                    "URL（Slack や Teams の URL にはトークンが含まれます）、format、secret を確かめてください",
                    "check the URL (a Slack/Teams URL carries its token), the format and the secret",
                ),
            )
        }
        Err(e) => unreachable(name, shown, &e, lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ping_body_is_marked_as_a_test() {
        let opts = EscalationOptions::from_config(&crate::config::Config::default());
        let from = Sender {
            opts: &opts,
            agent: "1001",
        };
        let v = test_body(&from, WebhookFormat::Json, "test-1");
        assert_eq!(v["event"], TEST_EVENT);
        assert_eq!(v["id"], "test-1");
        assert_eq!(v["agent"], "1001");
    }
}
