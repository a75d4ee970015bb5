//! The hotkey cheat sheet (`callguard keys`): the default bindings that
//! `scripts/setup-hotkeys.sh` installs on GNOME and KDE, and what each one does.

use crate::config::Language;
use crate::harassment::MarkKind;

/// One default binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// In GNOME's spelling, e.g. `<Super>1` (the script converts it for KDE).
    pub keys: &'static str,
    /// The command run.
    pub command: &'static str,
    /// What it is for, when the mark's label does not say it.
    pub mark: Option<MarkKind>,
}

/// The default bindings, in the order of the cheat sheet; `scripts/setup-hotkeys.sh` holds the
/// same table (a test keeps them equal).
pub const BINDINGS: [Binding; 9] = [
    Binding {
        keys: "<Super>0",
        command: "callguard escalate",
        mark: None,
    },
    Binding {
        keys: "<Super>1",
        command: "callguard mark abuse",
        mark: Some(MarkKind::Abuse),
    },
    Binding {
        keys: "<Super>2",
        command: "callguard mark threat",
        mark: Some(MarkKind::Threat),
    },
    Binding {
        keys: "<Super>3",
        command: "callguard mark demand",
        mark: Some(MarkKind::Demand),
    },
    Binding {
        keys: "<Super>4",
        command: "callguard mark manager",
        mark: Some(MarkKind::Manager),
    },
    Binding {
        keys: "<Super>5",
        command: "callguard mark repeat",
        mark: Some(MarkKind::Repeat),
    },
    Binding {
        keys: "<Super>6",
        command: "callguard mark sexual",
        mark: Some(MarkKind::Sexual),
    },
    Binding {
        keys: "<Super>7",
        command: "callguard mark violence",
        mark: Some(MarkKind::Violence),
    },
    Binding {
        keys: "<Super>8",
        command: "callguard mark symptom",
        mark: Some(MarkKind::Symptom),
    },
];

/// `<Super>1` → `Super+1`.
pub fn human_keys(keys: &str) -> String {
    keys.replace("<Super>", "Super+")
        .replace("<Ctrl>", "Ctrl+")
        .replace("<Alt>", "Alt+")
        .replace("<Shift>", "Shift+")
}

/// The cheat sheet, in `lang`.
pub fn cheat_sheet(lang: Language) -> String {
    use std::fmt::Write;
    let ja = lang == Language::Ja;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        if ja {
            "callguard のショートカット（通話中に押すと、画面に確認が表示されます）"
        } else {
            "callguard hotkeys (press during a call; a desktop confirmation shows each one)"
        }
    );
    for b in BINDINGS {
        let what = match (b.mark, ja) {
            (None, true) => "上長を呼ぶ".to_string(),
            (None, false) => "call the team lead".to_string(),
            (Some(k), true) => format!("記録：{}", k.label_ja()),
            (Some(k), false) => format!("mark: {}", k.label_en()),
        };
        let _ = writeln!(
            o,
            "  {:<9} {what:<w$}  {}",
            human_keys(b.keys),
            b.command,
            w = width_pad(&what, 24)
        );
    }
    let _ = writeln!(
        o,
        "{}",
        if ja {
            "発言を残すとき：callguard mark abuse --quote 「お前は無能だ」\n\
             設定：scripts/setup-hotkeys.sh（GNOME・KDE）、またはシステム設定 → キーボード → ショートカット"
        } else {
            "With the caller's words: callguard mark abuse --quote \"you are useless\"\n\
             Set up: scripts/setup-hotkeys.sh (GNOME, KDE), or Settings → Keyboard → Shortcuts"
        }
    );
    o
}

/// The `{:<N}` width that pads `text` to `cols` display columns (CJK characters take two).
fn width_pad(text: &str, cols: usize) -> usize {
    let wide = text
        .chars()
        .filter(|c| (*c as u32) >= 0x1100 && !matches!(*c as u32, 0x2000..=0x206f))
        .count();
    cols.saturating_sub(wide)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_script_binds_the_same_keys() {
        let script = include_str!("../../scripts/setup-hotkeys.sh");
        let table: Vec<(String, String)> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("\"<Super>"))
            .filter_map(|l| {
                let mut parts = l.trim_end_matches('"').split('|');
                Some((
                    format!("<Super>{}", parts.next()?),
                    parts.next()?.to_string(),
                ))
            })
            .collect();
        let ours: Vec<(String, String)> = BINDINGS
            .iter()
            .map(|b| (b.keys.to_string(), b.command.to_string()))
            .collect();
        assert_eq!(table, ours);
    }

    #[test]
    fn cheat_sheet_lists_every_binding_in_both_languages() {
        for lang in [Language::Ja, Language::En] {
            let sheet = cheat_sheet(lang);
            for b in BINDINGS {
                assert!(sheet.contains(b.command), "{sheet}");
                assert!(sheet.contains(&human_keys(b.keys)), "{sheet}");
            }
        }
        assert!(cheat_sheet(Language::Ja).contains("Super+0   上長を呼ぶ"));
        assert!(cheat_sheet(Language::En).contains("Super+1   mark: abuse / insults"));
    }
}
