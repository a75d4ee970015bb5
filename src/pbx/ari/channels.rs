//! Which Asterisk channels are agent calls. A channel belongs to endpoint `E` when its name is
//! `E-<suffix>` (`PJSIP/1001` matches `PJSIP/1001-0000002a`). Helper channels never count: snoops
//! (callguard's own recorders and whisperers), announcers, recorders, RTP helpers, and the `;2`
//! half of a Local channel pair (the `;1` half is the one bridged with the other party).

/// Channel technologies that are never a person on a call.
const HELPER_TECHNOLOGIES: &[&str] = &[
    "Snoop/",
    "Announcer/",
    "Recorder/",
    "CBAnn/",
    "CBRec/",
    "UnicastRTP/",
    "AudioSocket/",
    "WebSocket/",
    "Message/",
];

/// The agent-call filter of one daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentChannels {
    /// Endpoints; an entry ending in `*` is a prefix (`PJSIP/10*`). Empty = every channel.
    endpoints: Vec<String>,
}

impl AgentChannels {
    /// From `agent.endpoint` (one agent) and `agent.endpoints` (a floor); both empty = every call.
    pub fn new(endpoint: &str, endpoints: &[String]) -> AgentChannels {
        let mut all: Vec<String> = Vec::new();
        for e in std::iter::once(endpoint).chain(endpoints.iter().map(String::as_str)) {
            let e = e.trim();
            if !e.is_empty() && !all.iter().any(|x| x == e) {
                all.push(e.to_string());
            }
        }
        AgentChannels { endpoints: all }
    }

    /// The agent (endpoint) a channel belongs to, or `None` when it is not an agent call.
    pub fn agent_of(&self, name: &str) -> Option<String> {
        if HELPER_TECHNOLOGIES.iter().any(|t| name.starts_with(t)) {
            return None;
        }
        if name.starts_with("Local/") && name.ends_with(";2") {
            return None;
        }
        // The endpoint part: everything before the last `-` (`PJSIP/1001-0000002a` → `PJSIP/1001`).
        let (endpoint, _) = name.rsplit_once('-')?;
        if endpoint.is_empty() {
            return None;
        }
        if self.endpoints.is_empty() {
            return Some(endpoint.to_string());
        }
        self.endpoints
            .iter()
            .find_map(|e| match e.strip_suffix('*') {
                Some(prefix) => endpoint.starts_with(prefix).then(|| endpoint.to_string()),
                None => name
                    .strip_prefix(e.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
                    .then(|| e.clone()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent() {
        let f = AgentChannels::new("PJSIP/1001", &[]);
        assert_eq!(
            f.agent_of("PJSIP/1001-0000002a").as_deref(),
            Some("PJSIP/1001")
        );
        assert_eq!(f.agent_of("PJSIP/10010-0000002a"), None);
        assert_eq!(f.agent_of("PJSIP/1002-0000002a"), None);
        assert_eq!(f.agent_of("PJSIP/1001"), None);
        assert_eq!(f.agent_of("Snoop/PJSIP/1001-00000001"), None);
    }

    #[test]
    fn local_pairs_count_once() {
        let f = AgentChannels::new("Local/1001@agentphones", &[]);
        assert_eq!(
            f.agent_of("Local/1001@agentphones-00000003;1").as_deref(),
            Some("Local/1001@agentphones")
        );
        assert_eq!(f.agent_of("Local/1001@agentphones-00000003;2"), None);
        assert_eq!(f.agent_of("Local/1001@agentphones2-00000009;1"), None);
    }

    #[test]
    fn floor_lists_prefixes_and_all() {
        let f = AgentChannels::new("", &["PJSIP/10*".into(), "SIP/alice".into()]);
        assert_eq!(f.agent_of("PJSIP/1042-0001").as_deref(), Some("PJSIP/1042"));
        assert_eq!(f.agent_of("SIP/alice-0001").as_deref(), Some("SIP/alice"));
        assert_eq!(f.agent_of("PJSIP/2001-0001"), None);
        let all = AgentChannels::new("", &[]);
        assert_eq!(
            all.agent_of("PJSIP/2001-0001").as_deref(),
            Some("PJSIP/2001")
        );
        assert_eq!(all.agent_of("Snoop/1795354434.7-00000001"), None);
        assert_eq!(all.agent_of("Local/talk@customers-00000002;2"), None);
    }
}
