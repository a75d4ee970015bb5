//! The harassment guidance as rules: the agent marks what the caller does, callguard counts.
//! Counts are per call; each rule fires once per call; the call's level only ever rises.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// What the caller did (or, for `symptom`, what the agent suffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MarkKind {
    /// 暴言・人格否定: insults, denying the agent's dignity.
    Abuse,
    /// 脅迫: 「殺すぞ」「家に行くぞ」「ネットに書くぞ」.
    Threat,
    /// 著しく不当な要求: money, 土下座, dismissing staff.
    Demand,
    /// 「責任者を出せ」.
    Manager,
    /// The same demand again.
    Repeat,
    /// 性的言動.
    Sexual,
    /// 物を投げる・叩く.
    Violence,
    /// The agent trembles, has palpitations, tears.
    Symptom,
}

/// Every kind, in the order they are listed to people.
pub const ALL_KINDS: [MarkKind; 8] = [
    MarkKind::Abuse,
    MarkKind::Threat,
    MarkKind::Demand,
    MarkKind::Manager,
    MarkKind::Repeat,
    MarkKind::Sexual,
    MarkKind::Violence,
    MarkKind::Symptom,
];

impl MarkKind {
    /// The CLI and config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkKind::Abuse => "abuse",
            MarkKind::Threat => "threat",
            MarkKind::Demand => "demand",
            MarkKind::Manager => "manager",
            MarkKind::Repeat => "repeat",
            MarkKind::Sexual => "sexual",
            MarkKind::Violence => "violence",
            MarkKind::Symptom => "symptom",
        }
    }

    /// The guidance's Japanese term.
    pub fn label_ja(self) -> &'static str {
        match self {
            MarkKind::Abuse => "暴言・人格否定",
            MarkKind::Threat => "脅迫",
            MarkKind::Demand => "著しく不当な要求",
            MarkKind::Manager => "責任者を出せ",
            MarkKind::Repeat => "同じ要求の繰り返し",
            MarkKind::Sexual => "性的言動",
            MarkKind::Violence => "暴力（物を投げる・叩く）",
            MarkKind::Symptom => "担当者の身体症状",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            MarkKind::Abuse => "abuse / insults",
            MarkKind::Threat => "threat",
            MarkKind::Demand => "unreasonable demand",
            MarkKind::Manager => "demands a manager",
            MarkKind::Repeat => "repeated demand",
            MarkKind::Sexual => "sexual remarks",
            MarkKind::Violence => "violence",
            MarkKind::Symptom => "agent has physical symptoms",
        }
    }

    /// Criminal-law provisions a mark of this kind may touch (information, not legal advice).
    pub fn provisions(self) -> &'static [&'static str] {
        match self {
            MarkKind::Threat => &["脅迫罪（刑法222条）"],
            MarkKind::Demand => &["強要罪（刑法223条）", "不退去罪（刑法130条）"],
            MarkKind::Violence => &["威力業務妨害罪（刑法234条）"],
            _ => &[],
        }
    }
}

impl fmt::Display for MarkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown mark kind; the message lists the valid ones.
///
/// ```
/// use callguard::harassment::MarkKind;
/// assert_eq!("threat".parse::<MarkKind>(), Ok(MarkKind::Threat));
/// let err = "yelling".parse::<MarkKind>().unwrap_err();
/// assert!(err.to_string().contains("abuse, threat, demand"));
/// ```
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "unknown mark `{0}`; use one of: abuse, threat, demand, manager, repeat, sexual, violence, symptom"
)]
pub struct UnknownKind(pub String);

impl FromStr for MarkKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_KINDS
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// What a rule grants when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Ping the team lead; tell the agent the lead was called.
    Escalate,
    /// Grounds to end the call are met.
    End,
}

impl RuleAction {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Escalate => "escalate",
            RuleAction::End => "end",
        }
    }
}

/// One `[[marks.rule]]`: the `count`-th mark of `mark` in a call triggers `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which mark is counted.
    pub mark: MarkKind,
    /// At which count it fires (1 = the first mark).
    pub count: u32,
    /// What it grants.
    pub action: RuleAction,
}

impl Rule {
    /// A stable name for logs, pings and records, e.g. `abuse#3:end`.
    pub fn name(&self) -> String {
        format!("{}#{}:{}", self.mark, self.count, self.action.as_str())
    }
}

/// A rule's name (`manager#2:escalate`) in words: 「責任者を出せ」2 回目で上長に連絡 /
/// "2nd \"demands a manager\": team lead called". An unreadable name is returned as it is.
pub fn describe_rule(name: &str, lang: crate::config::Language) -> String {
    use crate::config::Language;
    let parsed = name.split_once('#').and_then(|(kind, rest)| {
        let (count, action) = rest.split_once(':')?;
        Some((
            kind.parse::<MarkKind>().ok()?,
            count.parse::<u32>().ok()?,
            action,
        ))
    });
    let Some((kind, count, action)) = parsed else {
        return name.to_string();
    };
    match (lang, action) {
        (Language::Ja, "end") => {
            format!("「{}」{count} 回目：通話を終了できる基準", kind.label_ja())
        }
        (Language::Ja, _) => format!("「{}」{count} 回目：上長に連絡", kind.label_ja()),
        (Language::En, "end") => {
            format!("\"{}\" ×{count}: grounds to end the call", kind.label_en())
        }
        (Language::En, _) => format!("\"{}\" ×{count}: team lead called", kind.label_en()),
    }
}

/// The default table, from the guidance contact centers follow.
pub fn default_rules() -> Vec<Rule> {
    use MarkKind::*;
    use RuleAction::*;
    let r = |mark, count, action| Rule {
        mark,
        count,
        action,
    };
    vec![
        r(Abuse, 1, Escalate),
        r(Demand, 1, Escalate),
        r(Manager, 2, Escalate),
        r(Threat, 1, Escalate),
        r(Symptom, 1, Escalate),
        r(Sexual, 1, Escalate),
        r(Violence, 1, Escalate),
        r(Abuse, 3, End),
        r(Threat, 1, End),
        r(Repeat, 3, End),
        r(Demand, 1, End),
        r(Symptom, 1, End),
        r(Violence, 1, End),
    ]
}

/// The call's harassment level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Level(pub u8);

impl Level {
    /// 1: normal.
    pub const NORMAL: Level = Level(1);
    /// 2: emotional (the call has not settled: a time warning or a manual escalation).
    pub const EMOTIONAL: Level = Level(2);
    /// 3: signs of harassment (abuse, demand, manager, repeat).
    pub const SIGNS: Level = Level(3);
    /// 4: clear harassment (threat, violence, sexual, or grounds to end met).
    pub const CLEAR: Level = Level(4);

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self.0 {
            1 => "通常",
            2 => "感情的",
            3 => "カスハラの兆候",
            _ => "明確なカスハラ",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self.0 {
            1 => "normal",
            2 => "emotional",
            3 => "signs of harassment",
            _ => "clear harassment",
        }
    }
}

/// The caller's words without one level of surrounding quotes: `--quote 「責任者を出せ」`
/// (as the README writes it) and `--quote "…"` keep only the words, since pings and records
/// put their own 「」 around a quote. Inner quotes and unbalanced ones are kept.
pub fn unquote(text: &str) -> &str {
    let t = text.trim();
    for (open, close) in [
        ('「', '」'),
        ('『', '』'),
        ('"', '"'),
        ('“', '”'),
        ('\'', '\''),
    ] {
        if let Some(inner) = t.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            // 「a」と「b」 is two quotes, not one quoted text: the outer pair must enclose all.
            let mut depth = 0i32;
            let encloses = open == close
                || inner.chars().all(|c| {
                    depth += i32::from(c == open) - i32::from(c == close);
                    depth >= 0
                });
            if encloses {
                return inner.trim();
            }
        }
    }
    t
}

/// One mark as the agent made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// What.
    pub kind: MarkKind,
    /// The caller's words, verbatim, if the agent gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// Wall time of the mark.
    pub at: DateTime<FixedOffset>,
    /// Offset into the call (and its recording), seconds.
    pub offset_secs: u64,
}

impl Mark {
    /// `mm:ss` into the recording.
    pub fn offset(&self) -> String {
        format!("{:02}:{:02}", self.offset_secs / 60, self.offset_secs % 60)
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiredRule {
    /// The rule.
    pub rule: Rule,
    /// Its name.
    pub name: String,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Offset into the call, seconds.
    pub offset_secs: u64,
}

/// What changed with one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// Rules that fired now (each at most once per call).
    pub fired: Vec<FiredRule>,
    /// The level, if it rose.
    pub level_raised: Option<(Level, Level)>,
}

impl Change {
    /// Whether grounds to end the call were met now.
    pub fn grounds_to_end(&self) -> bool {
        self.fired.iter().any(|f| f.rule.action == RuleAction::End)
    }
}

/// The rule state of one call.
#[derive(Debug, Clone)]
pub struct CallRules {
    counts: HashMap<MarkKind, u32>,
    fired: Vec<bool>,
    /// Marks in order.
    pub marks: Vec<Mark>,
    /// Rules fired in order.
    pub history: Vec<FiredRule>,
    level: Level,
    grounds_to_end: bool,
}

impl CallRules {
    /// A call with no marks, at level 1.
    pub fn new(rules: &[Rule]) -> CallRules {
        CallRules {
            counts: HashMap::new(),
            fired: vec![false; rules.len()],
            marks: Vec::new(),
            history: Vec::new(),
            level: Level::NORMAL,
            grounds_to_end: false,
        }
    }

    /// Current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Whether any rule granting an end has fired.
    pub fn grounds_to_end(&self) -> bool {
        self.grounds_to_end
    }

    /// Counts a mark and fires the rules it completes.
    pub fn mark(&mut self, rules: &[Rule], mark: Mark) -> Change {
        let n = {
            let c = self.counts.entry(mark.kind).or_insert(0);
            *c += 1;
            *c
        };
        let mut change = Change::default();
        for (i, rule) in rules.iter().enumerate() {
            if rule.mark == mark.kind
                && n >= rule.count
                && !self.fired.get(i).copied().unwrap_or(true)
            {
                self.fired[i] = true;
                let f = FiredRule {
                    name: rule.name(),
                    rule: rule.clone(),
                    at: mark.at,
                    offset_secs: mark.offset_secs,
                };
                if rule.action == RuleAction::End {
                    self.grounds_to_end = true;
                }
                self.history.push(f.clone());
                change.fired.push(f);
            }
        }
        let by_mark = match mark.kind {
            MarkKind::Threat | MarkKind::Violence | MarkKind::Sexual => Level::CLEAR,
            MarkKind::Abuse | MarkKind::Demand | MarkKind::Manager | MarkKind::Repeat => {
                Level::SIGNS
            }
            MarkKind::Symptom => Level::EMOTIONAL,
        };
        let target = if self.grounds_to_end {
            Level::CLEAR
        } else {
            by_mark
        };
        self.marks.push(mark);
        change.level_raised = self.raise(target);
        change
    }

    /// A time warning fired: an escalate step means the call has not settled (level 2); a
    /// terminate step is grounds to end (level 4).
    pub fn warning(&mut self, kind: WarningKind) -> Option<(Level, Level)> {
        match kind {
            WarningKind::Escalate => self.raise(Level::EMOTIONAL),
            WarningKind::Terminate => {
                self.grounds_to_end = true;
                self.raise(Level::CLEAR)
            }
        }
    }

    /// The agent called the lead by hand.
    pub fn manual_escalation(&mut self) -> Option<(Level, Level)> {
        self.raise(Level::EMOTIONAL)
    }

    fn raise(&mut self, to: Level) -> Option<(Level, Level)> {
        (to > self.level).then(|| {
            let from = self.level;
            self.level = to;
            (from, to)
        })
    }

    /// How many marks of a kind.
    pub fn count(&self, kind: MarkKind) -> u32 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }
}

/// Elapsed call time as a mark offset.
pub fn offset_secs(elapsed: Duration) -> u64 {
    elapsed.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_level_of_quotes_is_stripped() {
        assert_eq!(unquote("「責任者を出せ」"), "責任者を出せ");
        assert_eq!(unquote(" \"土下座しろ\" "), "土下座しろ");
        assert_eq!(unquote("「「二重」」"), "「二重」");
        assert_eq!(unquote("責任者を出せ"), "責任者を出せ");
        assert_eq!(unquote("「社長」と「部長」"), "「社長」と「部長」");
        assert_eq!(unquote("「開いたまま"), "「開いたまま");
        assert_eq!(unquote("「」"), "");
    }

    fn mark(kind: MarkKind, offset_secs: u64) -> Mark {
        Mark {
            kind,
            quote: None,
            at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap()
                + chrono::Duration::seconds(offset_secs as i64),
            offset_secs,
        }
    }

    /// For each default rule: the mark number at which it must fire, and nothing before.
    #[test]
    fn each_default_rule_fires_exactly_once_at_the_right_mark() {
        let table: &[(MarkKind, &[(u32, RuleAction)])] = &[
            (
                MarkKind::Abuse,
                &[(1, RuleAction::Escalate), (3, RuleAction::End)],
            ),
            (
                MarkKind::Threat,
                &[(1, RuleAction::Escalate), (1, RuleAction::End)],
            ),
            (
                MarkKind::Demand,
                &[(1, RuleAction::Escalate), (1, RuleAction::End)],
            ),
            (MarkKind::Manager, &[(2, RuleAction::Escalate)]),
            (MarkKind::Repeat, &[(3, RuleAction::End)]),
            (MarkKind::Sexual, &[(1, RuleAction::Escalate)]),
            (
                MarkKind::Violence,
                &[(1, RuleAction::Escalate), (1, RuleAction::End)],
            ),
            (
                MarkKind::Symptom,
                &[(1, RuleAction::Escalate), (1, RuleAction::End)],
            ),
        ];
        let rules = default_rules();
        for (kind, expected) in table {
            let mut call = CallRules::new(&rules);
            let mut seen: Vec<(u32, RuleAction)> = Vec::new();
            for n in 1..=6u32 {
                let change = call.mark(&rules, mark(*kind, n as u64 * 10));
                for f in &change.fired {
                    assert_eq!(f.rule.mark, *kind);
                    assert_eq!(
                        f.offset_secs,
                        n as u64 * 10,
                        "fired at the mark that completed it"
                    );
                    seen.push((n, f.rule.action));
                }
            }
            assert_eq!(&seen, expected, "rules for {kind}");
        }
    }

    #[test]
    fn levels_rise_as_the_guidance_says_and_never_fall() {
        let rules = default_rules();
        let mut call = CallRules::new(&rules);
        assert_eq!(call.level(), Level::NORMAL);
        assert_eq!(
            call.warning(WarningKind::Escalate),
            Some((Level::NORMAL, Level::EMOTIONAL))
        );
        let c = call.mark(&rules, mark(MarkKind::Manager, 1));
        assert_eq!(c.level_raised, Some((Level::EMOTIONAL, Level::SIGNS)));
        assert!(c.fired.is_empty(), "first manager mark does not escalate");
        let c = call.mark(&rules, mark(MarkKind::Manager, 2));
        assert_eq!(c.fired.len(), 1);
        assert_eq!(c.level_raised, None);
        let c = call.mark(&rules, mark(MarkKind::Sexual, 3));
        assert_eq!(c.level_raised, Some((Level::SIGNS, Level::CLEAR)));
        assert!(!call.grounds_to_end());
        let c = call.mark(&rules, mark(MarkKind::Symptom, 4));
        assert!(c.grounds_to_end() && call.grounds_to_end());
        assert_eq!(c.level_raised, None, "already at 4");
        assert_eq!(call.marks.len(), 4);

        // Grounds to end alone make level 4, e.g. a third repeat.
        let mut call = CallRules::new(&rules);
        call.mark(&rules, mark(MarkKind::Repeat, 1));
        assert_eq!(call.level(), Level::SIGNS);
        call.mark(&rules, mark(MarkKind::Repeat, 2));
        let c = call.mark(&rules, mark(MarkKind::Repeat, 3));
        assert!(c.grounds_to_end());
        assert_eq!(c.level_raised, Some((Level::SIGNS, Level::CLEAR)));
        // And the 30-minute warning too.
        let mut call = CallRules::new(&rules);
        assert_eq!(
            call.warning(WarningKind::Terminate),
            Some((Level::NORMAL, Level::CLEAR))
        );
        assert!(call.grounds_to_end());
    }

    #[test]
    fn kinds_parse_and_unknown_ones_list_the_valid() {
        assert_eq!("ABUSE".parse::<MarkKind>(), Ok(MarkKind::Abuse));
        let err = "yelling".parse::<MarkKind>().unwrap_err().to_string();
        assert!(err.contains("yelling") && err.contains("symptom"), "{err}");
        assert_eq!(default_rules()[0].name(), "abuse#1:escalate");
    }
}

/// What a warning step means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarningKind {
    /// Hand the call to a team lead.
    Escalate,
    /// The call meets a criterion for ending it.
    Terminate,
}

impl WarningKind {
    /// Contract spelling (`escalate` / `terminate`).
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Escalate => "escalate",
            WarningKind::Terminate => "terminate",
        }
    }
}
