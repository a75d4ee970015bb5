//! The board's words in Japanese (default) and English.

use crate::config::Language;

/// Every fixed text of the board.
#[derive(Debug)]
pub struct Texts {
    /// `lang` attribute.
    pub html_lang: &'static str,
    pub title: &'static str,
    pub login: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    pub login_failed: &'static str,
    pub login_throttled: &'static str,
    pub logout: &'static str,
    pub open_calls: &'static str,
    pub ended_calls: &'static str,
    pub fleet: &'static str,
    pub level: &'static str,
    pub agent: &'static str,
    pub caller: &'static str,
    pub elapsed: &'static str,
    pub duration: &'static str,
    pub marks: &'static str,
    pub rules: &'static str,
    pub escalation: &'static str,
    pub take: &'static str,
    pub taken_by: &'static str,
    pub after_ping: &'static str,
    pub none: &'static str,
    pub workstation: &'static str,
    pub last_heartbeat: &'static str,
    pub pbx: &'static str,
    pub protection_off_since: &'static str,
    pub ok: &'static str,
    pub pbx_down: &'static str,
    pub no_heartbeat: &'static str,
    pub caller_page: &'static str,
    pub started: &'static str,
    pub record: &'static str,
    pub conclusion: &'static str,
    pub phrase: &'static str,
    pub by: &'static str,
    pub version: &'static str,
    pub save_conclusion: &'static str,
    pub no_conclusion: &'static str,
    pub audit: &'static str,
    pub when: &'static str,
    pub action: &'static str,
    pub target: &'static str,
    /// The audit page's link to the lines before those shown.
    pub older: &'static str,
    pub board: &'static str,
    pub call: &'static str,
    pub forbidden: &'static str,
    pub not_found: &'static str,
    pub bad_request: &'static str,
    pub live: &'static str,
    pub reconnecting: &'static str,
}

/// Japanese.
pub const JA: Texts = Texts {
    html_lang: "ja",
    title: "callguard フロア",
    login: "ログイン",
    user: "ユーザー名",
    password: "パスワード",
    login_failed: "ユーザー名またはパスワードが違います。",
    login_throttled: "ログインの試行が多すぎます。しばらくしてからお試しください。",
    logout: "ログアウト",
    open_calls: "通話中",
    ended_calls: "直近1時間に終了した通話",
    fleet: "端末の状態",
    level: "レベル",
    agent: "担当者",
    caller: "発信者",
    elapsed: "経過",
    duration: "通話時間",
    marks: "記録（発言そのまま）",
    rules: "該当ルール",
    escalation: "エスカレーション",
    take: "対応します",
    taken_by: "対応中",
    after_ping: "通知から",
    none: "なし",
    workstation: "端末",
    last_heartbeat: "最終応答",
    pbx: "PBX",
    protection_off_since: "保護停止",
    ok: "正常",
    pbx_down: "PBX切断",
    no_heartbeat: "応答なし",
    caller_page: "発信者の履歴",
    started: "開始",
    record: "記録",
    conclusion: "組織としての結論",
    phrase: "繰り返す言葉",
    by: "記録者",
    version: "版",
    save_conclusion: "結論を記録する",
    no_conclusion: "まだ結論はありません。",
    audit: "監査ログ",
    when: "日時",
    action: "操作",
    target: "対象",
    older: "さらに古い記録",
    board: "ボード",
    call: "通話",
    forbidden: "この操作の権限がありません。",
    not_found: "見つかりません。",
    bad_request: "リクエストが正しくありません（ページを再読み込みしてください）。",
    live: "ライブ",
    reconnecting: "再接続中…",
};

/// English.
pub const EN: Texts = Texts {
    html_lang: "en",
    title: "callguard floor",
    login: "Log in",
    user: "User name",
    password: "Password",
    login_failed: "Wrong user name or password.",
    login_throttled: "Too many login attempts. Try again later.",
    logout: "Log out",
    open_calls: "Calls in progress",
    ended_calls: "Calls ended in the last hour",
    fleet: "Workstations",
    level: "Level",
    agent: "Agent",
    caller: "Caller",
    elapsed: "Elapsed",
    duration: "Duration",
    marks: "Marks (verbatim)",
    rules: "Rules fired",
    escalation: "Escalation",
    take: "I'll take it",
    taken_by: "Taken by",
    after_ping: "after the ping",
    none: "none",
    workstation: "Workstation",
    last_heartbeat: "Last heartbeat",
    pbx: "PBX",
    protection_off_since: "protection off since",
    ok: "OK",
    pbx_down: "PBX link down",
    no_heartbeat: "no heartbeat",
    caller_page: "Caller history",
    started: "Started",
    record: "Record",
    conclusion: "The organisation's conclusion",
    phrase: "Phrase to repeat",
    by: "By",
    version: "Version",
    save_conclusion: "Record the conclusion",
    no_conclusion: "No conclusion yet.",
    audit: "Audit log",
    when: "When",
    action: "Action",
    target: "Target",
    older: "Older lines",
    board: "Board",
    call: "Call",
    forbidden: "You are not allowed to do this.",
    not_found: "Not found.",
    bad_request: "Bad request (reload the page).",
    live: "live",
    reconnecting: "reconnecting…",
};

/// The texts of `lang`.
pub fn texts(lang: Language) -> &'static Texts {
    match lang {
        Language::Ja => &JA,
        Language::En => &EN,
    }
}

/// The language for a request: the first of `ja`/`en` in `Accept-Language` by preference,
/// else `default` (the configuration's).
pub fn negotiate(accept_language: Option<&str>, default: Language) -> Language {
    let Some(header) = accept_language else {
        return default;
    };
    let mut best: Option<(f32, Language)> = None;
    for part in header.split(',') {
        let mut pieces = part.trim().split(';');
        let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|v| v.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let lang = if tag == "ja" || tag.starts_with("ja-") {
            Language::Ja
        } else if tag == "en" || tag.starts_with("en-") {
            Language::En
        } else {
            continue;
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        assert_eq!(negotiate(None, Language::Ja), Language::Ja);
        assert_eq!(
            negotiate(Some("en-US,en;q=0.9"), Language::Ja),
            Language::En
        );
        assert_eq!(
            negotiate(Some("fr, ja;q=0.5, en;q=0.4"), Language::En),
            Language::Ja
        );
        assert_eq!(negotiate(Some("de"), Language::En), Language::En);
        assert_eq!(negotiate(Some("ja-JP"), Language::En), Language::Ja);
    }
}
