//! What the tray item shows, as plain data and texts (kept apart from D-Bus so the wording can
//! be tested on its own).

use std::collections::HashMap;

use crate::calls::{CallStatus, TrackerStatus};
use crate::config::Language;
use crate::harassment::{Level, MarkKind};

/// The tracker's state reduced to what the tray shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// `connected`, `disconnected`, `connecting`; empty when the tracker did not answer.
    pub pbx: String,
    /// The agent's current call (the one started last), if any.
    pub call: Option<CallView>,
    /// Calls in progress (floor mode may have several).
    pub calls: usize,
}

/// The current call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallView {
    /// PBX call id.
    pub call_id: String,
    /// Caller number.
    pub caller: String,
    /// Call time so far.
    pub elapsed_secs: u64,
    /// Level 1–4.
    pub level: u8,
    /// Next warning kind (`escalate` / `terminate`) and its threshold.
    pub next: Option<(String, u64)>,
    /// Marks so far, all kinds.
    pub marks: usize,
    /// Marks so far by kind (from the marks the tray saw).
    pub by_kind: HashMap<MarkKind, u32>,
}

impl CallView {
    /// Marks of `kind` so far.
    pub fn count(&self, kind: MarkKind) -> u32 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

impl View {
    /// From the tracker's status.
    pub fn from_status(s: &TrackerStatus) -> View {
        // The agent's current call is the one started last (as `callguard escalate` picks it).
        let current = s
            .calls
            .iter()
            .max_by(|a, b| a.started_at.cmp(&b.started_at))
            .map(CallView::from);
        View {
            pbx: s.pbx.clone(),
            call: current,
            calls: s.calls.len(),
        }
    }

    /// The call's level (1 without a call).
    pub fn level(&self) -> u8 {
        self.call.as_ref().map_or(1, |c| c.level)
    }

    /// Signs of harassment or worse, or a warning past: the item asks for attention.
    pub fn needs_attention(&self) -> bool {
        self.level() >= Level::SIGNS.0
    }

    /// The item's title (shown by panels that show text, e.g. as the label next to the icon).
    pub fn title(&self, lang: Language) -> String {
        match (&self.call, lang) {
            (Some(c), Language::Ja) => {
                format!("通話 {}・レベル {}", clock(c.elapsed_secs), c.level)
            }
            (Some(c), Language::En) => {
                format!("Call {} · level {}", clock(c.elapsed_secs), c.level)
            }
            (None, Language::Ja) => "callguard：通話なし".into(),
            (None, Language::En) => "callguard: no call".into(),
        }
    }

    /// The first, disabled line of the menu.
    pub fn headline(&self, lang: Language) -> String {
        match (&self.call, lang) {
            (Some(c), Language::Ja) => format!(
                "通話 {}・レベル {}（{}）",
                clock(c.elapsed_secs),
                c.level,
                Level(c.level).label_ja()
            ),
            (Some(c), Language::En) => format!(
                "Call {} · level {} ({})",
                clock(c.elapsed_secs),
                c.level,
                Level(c.level).label_en()
            ),
            (None, Language::Ja) => "通話なし".into(),
            (None, Language::En) => "No call".into(),
        }
    }

    /// Tooltip title and text.
    pub fn tooltip(&self, lang: Language) -> (String, String) {
        let Some(c) = &self.call else {
            return (self.title(lang), self.pbx_line(lang));
        };
        let level = match lang {
            Language::Ja => format!("レベル {}（{}）", c.level, Level(c.level).label_ja()),
            Language::En => format!("Level {} ({})", c.level, Level(c.level).label_en()),
        };
        (self.title(lang), format!("{level}\n{}", next_line(c, lang)))
    }

    /// The lines of the 状況 / Status submenu.
    pub fn state_lines(&self, lang: Language) -> Vec<String> {
        let mut lines = vec![self.pbx_line(lang)];
        if let Some(c) = &self.call {
            lines.push(match lang {
                Language::Ja => format!("お客様 {}（通話 {}）", c.caller, c.call_id),
                Language::En => format!("Customer {} (call {})", c.caller, c.call_id),
            });
            lines.push(self.headline(lang));
            lines.push(next_line(c, lang));
            lines.push(match lang {
                Language::Ja => format!("記録 {} 件", c.marks),
                Language::En => format!("{} mark(s)", c.marks),
            });
        }
        if self.calls > 1 {
            lines.push(match lang {
                Language::Ja => format!("通話中 {} 件（最新の通話を表示）", self.calls),
                Language::En => format!("{} calls in progress (showing the latest)", self.calls),
            });
        }
        lines
    }

    fn pbx_line(&self, lang: Language) -> String {
        match (self.pbx.as_str(), lang) {
            ("connected", Language::Ja) => "PBX：接続中".into(),
            ("connected", Language::En) => "PBX: connected".into(),
            ("", Language::Ja) => "PBX：不明".into(),
            ("", Language::En) => "PBX: unknown".into(),
            (_, Language::Ja) => "PBX：未接続（再接続中）".into(),
            (_, Language::En) => "PBX: not connected (retrying)".into(),
        }
    }
}

impl From<&CallStatus> for CallView {
    fn from(c: &CallStatus) -> CallView {
        CallView {
            call_id: c.call_id.clone(),
            caller: c.caller.clone(),
            elapsed_secs: c.elapsed_secs,
            level: c.level,
            next: c.next_warning.clone().zip(c.next_warning_after_secs),
            marks: c.marks,
            by_kind: HashMap::new(),
        }
    }
}

fn next_line(c: &CallView, lang: Language) -> String {
    match (&c.next, lang) {
        (Some((kind, after)), Language::Ja) => format!(
            "次の警告：{}（{}）まで あと {}",
            duration_ja(*after),
            if kind == "terminate" {
                "終了できる基準"
            } else {
                "上長へ引き継ぎ"
            },
            clock(after.saturating_sub(c.elapsed_secs))
        ),
        (Some((kind, after)), Language::En) => format!(
            "Next warning: {} ({}) in {}",
            duration_en(*after),
            if kind == "terminate" {
                "you may end the call"
            } else {
                "bring in your team lead"
            },
            clock(after.saturating_sub(c.elapsed_secs))
        ),
        (None, Language::Ja) => "次の警告：なし".into(),
        (None, Language::En) => "Next warning: none".into(),
    }
}

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn duration_ja(secs: u64) -> String {
    match (secs / 60, secs % 60) {
        (m, 0) => format!("{m}分"),
        (m, s) => format!("{m}分{s:02}秒"),
    }
}

fn duration_en(secs: u64) -> String {
    match (secs / 60, secs % 60) {
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// A 22×22 ARGB32 icon: a disc coloured by level (green, amber, orange, red), for hosts that
/// have no icon theme with `call-start`.
pub fn icon(level: u8) -> ksni::Icon {
    const SIZE: i32 = 22;
    let (r, g, b) = match level {
        0 | 1 => (0x2e, 0x7d, 0x32),
        2 => (0xf9, 0xa8, 0x25),
        3 => (0xef, 0x6c, 0x00),
        _ => (0xc6, 0x28, 0x28),
    };
    let mut data = Vec::with_capacity((SIZE * SIZE * 4) as usize);
    let c = (SIZE as f32 - 1.0) / 2.0;
    for y in 0..SIZE {
        for x in 0..SIZE {
            let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            let alpha = (c + 0.5 - d).clamp(0.0, 1.0);
            data.extend_from_slice(&[(alpha * 255.0) as u8, r, g, b]);
        }
    }
    ksni::Icon {
        width: SIZE,
        height: SIZE,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            pbx: "connected".into(),
            call: Some(CallView {
                call_id: "c-1".into(),
                caller: "0312345678".into(),
                elapsed_secs: 754,
                level: 3,
                next: Some(("escalate".into(), 900)),
                marks: 2,
                by_kind: HashMap::from([(MarkKind::Manager, 2)]),
            }),
            calls: 1,
        }
    }

    #[test]
    fn texts_show_elapsed_time_level_and_next_warning() {
        let v = view();
        assert_eq!(v.title(Language::Ja), "通話 12:34・レベル 3");
        let (_, tip) = v.tooltip(Language::Ja);
        assert_eq!(
            tip,
            "レベル 3（カスハラの兆候）\n次の警告：15分（上長へ引き継ぎ）まで あと 2:26"
        );
        let (_, tip) = v.tooltip(Language::En);
        assert_eq!(
            tip,
            "Level 3 (signs of harassment)\nNext warning: 15 min (bring in your team lead) in 2:26"
        );
        assert!(v.needs_attention());
        assert_eq!(clock(3723), "1:02:03");
        assert_eq!(View::default().title(Language::Ja), "callguard：通話なし");
    }
}
