//! Ledger anchoring, the checking side: `callguard verify --against-floor` compares the local
//! ledger's tail with the last line the floor has seen from this workstation (the
//! `…<site>.ledger.head` request). A ledger shorter than what the floor saw lost its tail; a
//! line whose hash differs from the floor's copy was rewritten.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::config::FloorConfig;
use super::contract::LedgerHeadReply;
use super::link::{ConnectMode, Link, LinkError};
use crate::evidence::ledger;

/// How long `verify --against-floor` waits for the floor's answer.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The local ledger's lines as `(seq, SHA-256 of the line)`, in file order; unparsable lines
/// are skipped (the ledger check reports them).
pub fn local_lines(evidence_dir: &Path) -> std::io::Result<Vec<(u64, String)>> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let text =
        match std::fs::read_to_string(evidence_dir.join(crate::evidence::layout::LEDGER_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            serde_json::from_str::<Seq>(l)
                .ok()
                .map(|s| (s.seq, ledger::line_hash(l)))
        })
        .collect())
}

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Anchor {
    /// The floor has seen nothing from this workstation yet.
    FloorKnowsNothing {
        /// The local ledger's last seq.
        local_seq: Option<u64>,
    },
    /// The local ledger reaches at least as far as the floor's copy, and the line the floor
    /// saw last is the same here.
    Ok {
        /// The local ledger's last seq.
        local_seq: u64,
        /// The last seq the floor saw.
        floor_seq: u64,
    },
    /// The local ledger ends before the line the floor saw last: its tail was lost or removed.
    Shorter {
        /// The local ledger's last seq (`None` = empty or missing).
        local_seq: Option<u64>,
        /// The last seq the floor saw.
        floor_seq: u64,
    },
    /// The line the floor saw last differs from the local line with the same seq.
    Differs {
        /// The seq.
        seq: u64,
        /// The floor's hash of it.
        floor_sha256: String,
        /// The local hash.
        local_sha256: String,
    },
}

impl Anchor {
    /// Whether the ledger passes.
    pub fn is_ok(&self) -> bool {
        matches!(self, Anchor::Ok { .. } | Anchor::FloorKnowsNothing { .. })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Anchor::FloorKnowsNothing { local_seq } => format!(
                "the floor has seen no ledger line of this workstation yet (local last seq {})",
                local_seq.map_or("none".into(), |s| s.to_string())
            ),
            Anchor::Ok {
                local_seq,
                floor_seq,
            } => format!(
                "ledger reaches seq {local_seq}; the floor saw up to seq {floor_seq}, and that line matches"
            ),
            Anchor::Shorter {
                local_seq,
                floor_seq,
            } => format!(
                "ledger shorter than the floor has seen: local last seq {}, the floor saw seq {floor_seq}",
                local_seq.map_or("none (empty or missing)".into(), |s| s.to_string())
            ),
            Anchor::Differs {
                seq,
                floor_sha256,
                local_sha256,
            } => format!(
                "ledger line {seq} differs from the floor's copy (floor {}, local {})",
                &floor_sha256[..floor_sha256.len().min(16)],
                &local_sha256[..local_sha256.len().min(16)]
            ),
        }
    }
}

/// Compares the local lines with the floor's head.
pub fn compare(local: &[(u64, String)], head: &LedgerHeadReply) -> Anchor {
    let local_seq = local.iter().map(|(s, _)| *s).max();
    let (Some(floor_seq), true) = (head.seq, head.known) else {
        return Anchor::FloorKnowsNothing { local_seq };
    };
    if local_seq.is_none_or(|l| l < floor_seq) {
        return Anchor::Shorter {
            local_seq,
            floor_seq,
        };
    }
    if let Some(floor_sha) = &head.line_sha256
        && let Some((_, local_sha)) = local.iter().find(|(s, _)| *s == floor_seq)
        && local_sha != floor_sha
    {
        return Anchor::Differs {
            seq: floor_seq,
            floor_sha256: floor_sha.clone(),
            local_sha256: local_sha.clone(),
        };
    }
    Anchor::Ok {
        local_seq: local_seq.unwrap_or(floor_seq),
        floor_seq,
    }
}

/// Asks the floor for this workstation's ledger head and compares it with `evidence_dir`'s
/// ledger.
pub async fn against_floor(
    floor: &FloorConfig,
    agent: &str,
    host: &str,
    evidence_dir: &Path,
) -> Result<Anchor, LinkError> {
    let local = local_lines(evidence_dir).map_err(|e| LinkError::Other(format!("ledger: {e}")))?;
    let link = Link::connect(floor, agent, host, ConnectMode::Once).await?;
    let head = link.ledger_head(host, HEAD_TIMEOUT).await;
    link.close().await;
    Ok(compare(&local, &head?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::contract::SCHEMA;

    fn head(seq: u64, sha: &str) -> LedgerHeadReply {
        LedgerHeadReply {
            schema: SCHEMA.into(),
            known: true,
            seq: Some(seq),
            line_sha256: Some(sha.into()),
            manifest_sha256: None,
            received_at: None,
        }
    }

    #[test]
    fn a_lost_tail_is_caught() {
        let local = vec![(1, "a".to_string()), (2, "b".to_string())];
        assert!(compare(&local, &head(2, "b")).is_ok());
        assert!(compare(&local, &head(1, "a")).is_ok());
        assert_eq!(
            compare(&local, &head(3, "c")),
            Anchor::Shorter {
                local_seq: Some(2),
                floor_seq: 3
            }
        );
        assert!(!compare(&[], &head(1, "a")).is_ok());
        assert!(matches!(
            compare(&local, &head(2, "x")),
            Anchor::Differs { seq: 2, .. }
        ));
        assert!(compare(&local, &LedgerHeadReply::default()).is_ok());
    }
}
