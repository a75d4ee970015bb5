//! Fleet health: a workstation whose heartbeats stopped, or whose PBX link is down, has no
//! protection. The board shows it red; the leads get one ping per outage through the project's
//! webhook sink (outbox and retries included).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::store::{Store, WorkstationRow};
use super::web::pages::hm;
use crate::config::Language;
use crate::events::{Action, Problem};

/// How often the fleet is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The ping text for a workstation without protection since `since_ms`.
pub fn outage_text(w: &WorkstationRow, since_ms: i64, lang: Language) -> String {
    let who = if w.agent_name.is_empty() {
        w.agent.clone()
    } else {
        format!("{} ({})", w.agent_name, w.agent)
    };
    match (lang, w.pbx_up) {
        (Language::Ja, true) => format!(
            "{who} の端末 {} から {} 以降応答がありません（保護停止）",
            w.host,
            hm(since_ms)
        ),
        (Language::Ja, false) => format!(
            "{who} の端末 {} が {} から PBX に接続していません（保護停止）",
            w.host,
            hm(since_ms)
        ),
        (Language::En, true) => format!(
            "workstation {} of {who}: no heartbeat, protection off since {}",
            w.host,
            hm(since_ms)
        ),
        (Language::En, false) => format!(
            "workstation {} of {who}: PBX link down, protection off since {}",
            w.host,
            hm(since_ms)
        ),
    }
}

/// Checks the fleet every [`CHECK_EVERY`] until `stop`: each newly unprotected workstation is
/// pinged once (claimed in the store, so two floor instances ping once between them) and the
/// board is told to redraw.
pub async fn watch(
    store: Store,
    stale_after_ms: Option<i64>,
    lang: Language,
    actions: mpsc::UnboundedSender<Action>,
    notify: watch::Sender<u64>,
    stop: CancellationToken,
) {
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        match store.workstations().await {
            Ok(ws) => {
                for w in ws {
                    let Some(since) = w.off_since(now, stale_after_ms) else {
                        continue;
                    };
                    if w.pinged_ms.is_some() {
                        continue;
                    }
                    match store.claim_outage_ping(&w.key, now).await {
                        Ok(true) => {
                            tracing::warn!(workstation = %w.key, host = %w.host,
                                pbx_up = w.pbx_up, "workstation without protection");
                            let _ = actions.send(Action::Problem(Problem {
                                call_id: None,
                                kind: "floor.protection_off".into(),
                                text: outage_text(&w, since, lang),
                            }));
                            notify.send_modify(|v| *v = v.wrapping_add(1));
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "fleet: cannot claim the ping"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "fleet: cannot read workstations"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
