//! The evidence page of a call (`/evidence?key=CALL`): the floor's verify state of each archived
//! folder, the manifest's facts, the incident record rendered from the archived `incident.md`
//! (checked against the signed manifest before it is shown), and the recording, streamed from
//! the archive through the floor (`/evidence/recording`) after the session check, with HTTP
//! Range passed through so the browser's player can seek. There is never a public or presigned
//! URL: the archive's credentials stay on the floor. Every view is an audit line.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::i18n::Texts;
use super::pages::{esc, q, ymd_hm};
use super::{Shared, Viewer, audit, forbidden, internal, not_found, now_ms};
use crate::evidence::manifest::Manifest;
use crate::floor::service::evidence::{Access, EvidenceRow, rows};

/// What the evidence routes read with: `None` when the floor has no `[archive]`.
#[derive(Clone)]
pub struct EvidenceAccess(pub Option<Arc<Access>>);

/// The evidence page's words.
struct Words {
    title: &'static str,
    link: &'static str,
    no_archive: &'static str,
    not_known: &'static str,
    folder: &'static str,
    state: &'static str,
    checked: &'static str,
    recheck: &'static str,
    recording: &'static str,
    record: &'static str,
    no_record: &'static str,
    record_changed: &'static str,
    facts: &'static str,
    sealed_at: &'static str,
    key_id: &'static str,
    audio: &'static str,
    bytes: &'static str,
    host: &'static str,
    seq: &'static str,
    key: &'static str,
    key_file: &'static str,
    key_pinned: fn(&str) -> String,
    states: [(&'static str, &'static str); 7],
}

const JA: Words = Words {
    title: "証拠",
    link: "証拠",
    no_archive: "この管理画面には保管先（[archive]）が設定されていません。",
    not_known: "この通話の保管済みフォルダはまだ届いていません（この機能より前に封印された通話は \
                `callguard verify s3://…` で確認してください）。",
    folder: "フォルダ",
    state: "検証",
    checked: "確認日時",
    recheck: "再検証",
    recording: "録音",
    record: "インシデント記録",
    no_record: "この通話にはインシデント記録がありません。",
    record_changed: "保管先の incident.md が封印時と一致しません。表示しません。",
    facts: "封印内容",
    sealed_at: "封印日時",
    key_id: "鍵ID",
    audio: "録音ファイル",
    bytes: "バイト",
    host: "端末",
    seq: "台帳番号",
    key: "公開鍵",
    key_file: "鍵ファイル",
    key_pinned: |when| format!("{when} に初めて受信した鍵（鍵ファイルなし）"),
    states: [
        ("verified", "検証済み（署名・ハッシュ一致）"),
        ("altered", "改ざんあり"),
        ("signature", "署名が一致しません"),
        ("missing", "保管先にファイルがありません"),
        ("no_key", "公開鍵がありません"),
        ("waiting", "保管待ち"),
        ("error", "確認できません（再試行します）"),
    ],
};

const EN: Words = Words {
    title: "Evidence",
    link: "Evidence",
    no_archive: "This floor has no archive ([archive]) configured.",
    not_known: "No archived folder of this call has arrived yet (calls sealed before the floor \
                checked evidence are checked with `callguard verify s3://…`).",
    folder: "Folder",
    state: "Verify state",
    checked: "Checked",
    recheck: "Verify again",
    recording: "Recording",
    record: "Incident record",
    no_record: "This call has no incident record.",
    record_changed: "The archived incident.md does not match the sealed one; not shown.",
    facts: "Sealed facts",
    sealed_at: "Sealed at",
    key_id: "Key id",
    audio: "Audio file",
    bytes: "bytes",
    host: "Workstation",
    seq: "Ledger seq",
    key: "Public key",
    key_file: "key file",
    key_pinned: |when| format!("the key first seen on {when} (no key file)"),
    states: [
        ("verified", "verified (signature and hashes hold)"),
        ("altered", "altered"),
        ("signature", "signature invalid"),
        ("missing", "missing objects"),
        ("no_key", "no public key"),
        ("waiting", "not archived yet"),
        ("error", "cannot check now (retrying)"),
    ],
};

fn words(t: &Texts) -> &'static Words {
    if t.html_lang == "ja" { &JA } else { &EN }
}

/// The label of the link from a call row to its evidence page.
pub fn link_label(t: &Texts) -> &'static str {
    words(t).link
}

/// The link from a call row to its evidence page.
pub fn link(t: &Texts, call_key: &str) -> String {
    format!(
        "<a class=\"evidence\" href=\"/evidence?key={}\">{}</a>",
        q(call_key),
        esc(link_label(t))
    )
}

const STYLE: &str = "<style>.ev-verified{background:#d8f3dc}.ev-bad{background:#d93636;color:#fff}\
.ev-wait{background:#eef0f4}.incident{background:#fff;padding:.5em 1em;border:1px solid #d5d9e0}\
audio{width:100%;max-width:40em}</style>";

#[derive(Deserialize)]
pub(super) struct KeyQuery {
    key: String,
}

/// The call (and the viewer may see it), else the response to send.
async fn visible_call(
    s: &Shared,
    t: &Texts,
    v: &Viewer,
    key: &str,
) -> Result<crate::floor::service::store::CallRow, Response> {
    match s.store.call(key).await {
        Ok(Some(c)) if v.sees(&c.agent) => Ok(c),
        Ok(Some(_)) => Err(forbidden(t)),
        Ok(None) => Err(not_found(t)),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /evidence?key=CALL`.
pub(super) async fn page(
    State(s): State<Shared>,
    super::Lang(t): super::Lang,
    Extension(access): Extension<EvidenceAccess>,
    v: Viewer,
    Query(k): Query<KeyQuery>,
) -> Response {
    let w = words(t);
    let call = match visible_call(&s, t, &v, &k.key).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let folders = match rows::for_call(&s.store, &call.key).await {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    audit(&s, &v, "view.evidence", &call.key, "").await;
    let mut body = format!(
        "{STYLE}<h1>{} {}</h1><p><a href=\"/call?key={}\">{}</a></p>",
        esc(w.title),
        esc(&call.call_id),
        q(&call.key),
        esc(t.record)
    );
    let Some(access) = access.0 else {
        body.push_str(&format!("<p id=\"no-archive\">{}</p>", esc(w.no_archive)));
        return Html(super::pages::page(t, w.title, v.nav(), &body)).into_response();
    };
    if folders.is_empty() {
        body.push_str(&format!("<p id=\"not-known\">{}</p>", esc(w.not_known)));
    }
    for (i, f) in folders.iter().enumerate() {
        body.push_str(&folder_html(t, w, &access, f, i, &v.session.csrf).await);
    }
    if !folders.is_empty() {
        audit(&s, &v, "view.record", &call.key, "").await;
    }
    Html(super::pages::page(t, w.title, v.nav(), &body)).into_response()
}

/// Which key the check used, for people.
fn key_source(w: &Words, source: &str) -> String {
    if let Some(path) = source.strip_prefix("file:") {
        format!("{} {}", esc(w.key_file), esc(path))
    } else if let Some(ms) = source
        .strip_prefix("pinned:")
        .and_then(|m| m.parse::<i64>().ok())
    {
        esc(&(w.key_pinned)(&ymd_hm(ms)))
    } else {
        String::new()
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "verified" => "ev-verified",
        "altered" | "signature" | "missing" => "ev-bad",
        _ => "ev-wait",
    }
}

async fn folder_html(
    t: &Texts,
    w: &Words,
    access: &Access,
    f: &EvidenceRow,
    i: usize,
    csrf: &str,
) -> String {
    let label = w
        .states
        .iter()
        .find(|(k, _)| *k == f.state)
        .map(|(_, l)| *l)
        .unwrap_or("?");
    let mut s = format!(
        "<section class=\"folder\" id=\"folder-{i}\"><h2>{folder}: {dir}</h2>\
         <table><tr><th>{state}</th><td class=\"{class}\" id=\"state-{i}\" data-state=\"{st}\">\
         {label}{detail}</td></tr><tr><th>{host}</th><td>{h}</td></tr>\
         <tr><th>{seq}</th><td>{n}</td></tr><tr><th>{key_h}</th><td id=\"key-{i}\">{key_v}</td></tr>\
         <tr><th>{checked}</th><td>{when}</td></tr></table>",
        folder = esc(w.folder),
        dir = esc(&f.dir),
        state = esc(w.state),
        class = state_class(&f.state),
        st = esc(&f.state),
        label = esc(label),
        detail = if f.detail.is_empty() {
            String::new()
        } else {
            format!("<br><small>{}</small>", esc(&f.detail))
        },
        host = esc(w.host),
        h = esc(&f.host),
        seq = esc(w.seq),
        n = f.seq,
        key_h = esc(w.key),
        key_v = key_source(w, &f.key_source),
        checked = esc(w.checked),
        when = if f.checked_ms > 0 {
            ymd_hm(f.checked_ms)
        } else {
            String::new()
        },
    );
    let form = format!(
        "<form method=\"post\" action=\"/evidence/recheck\"><input type=\"hidden\" \
         name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"key\" value=\"{key}\">\
         <button type=\"submit\">{recheck}</button></form>",
        csrf = esc(csrf),
        key = esc(&f.call_key),
        recheck = esc(w.recheck),
    );
    let Ok(m) = serde_json::from_str::<Manifest>(&f.manifest) else {
        s.push_str(&form);
        s.push_str("</section>");
        return s;
    };
    // The player and the record first (what a lead opens the page for), then the facts.
    let mut facts = String::new();
    facts.push_str(&format!(
        "<h3>{facts}</h3><table id=\"facts-{i}\"><tr><th>{call}</th><td>{cid}</td></tr>\
         <tr><th>{started}</th><td>{st}</td></tr><tr><th>{duration}</th><td>{dur}</td></tr>\
         <tr><th>{sealed}</th><td>{sa}</td></tr><tr><th>{kid}</th><td>{k}</td></tr>\
         <tr><th>manifest SHA-256</th><td><code>{msha}</code></td></tr>",
        facts = esc(w.facts),
        call = esc(t.call),
        cid = esc(&m.call_id),
        started = esc(t.started),
        st = esc(&m.started_at),
        duration = esc(t.duration),
        dur = super::pages::clock(m.duration_secs.min(i64::MAX as u64) as i64),
        sealed = esc(w.sealed_at),
        sa = esc(&m.sealed_at),
        kid = esc(w.key_id),
        k = esc(&m.key_id),
        msha = esc(&f.manifest_sha256),
    ));
    if let Some(a) = &m.audio {
        facts.push_str(&format!(
            "<tr><th>{audio}</th><td>{file} ({bytes} {b}), SHA-256 <code>{sha}</code></td></tr>",
            audio = esc(w.audio),
            file = esc(&a.file),
            bytes = a.bytes,
            b = esc(w.bytes),
            sha = esc(&a.sha256),
        ));
    }
    facts.push_str("</table>");
    if m.audio.is_some() {
        s.push_str(&format!(
            "<h3>{rec}</h3><audio controls preload=\"metadata\" id=\"audio-{i}\" \
             src=\"/evidence/recording?key={key}&amp;dir={dir}\"></audio>",
            rec = esc(w.recording),
            key = q(&f.call_key),
            dir = q(&f.dir),
        ));
    }
    s.push_str(&format!("<h3>{}</h3>", esc(w.record)));
    match m.records.iter().find(|r| r.file == "incident.md") {
        None => s.push_str(&format!("<p>{}</p>", esc(w.no_record))),
        Some(r) => {
            let key = access.object(&f.host, &f.dir, &r.file);
            match access.archive.get(&key).await {
                Ok(bytes) if hex::encode(Sha256::digest(&bytes)) == r.sha256 => {
                    s.push_str(&format!(
                        "<div class=\"incident\" id=\"incident-{i}\">{}</div>",
                        markdown(&String::from_utf8_lossy(&bytes))
                    ));
                }
                Ok(_) => s.push_str(&format!("<p class=\"err\">{}</p>", esc(w.record_changed))),
                Err(e) => s.push_str(&format!("<p class=\"err\">{}</p>", esc(&e.to_string()))),
            }
        }
    }
    s.push_str(&facts);
    s.push_str(&form);
    s.push_str("</section>");
    s
}

/// Markdown to HTML with every piece of raw HTML in the source shown as text, never passed
/// through (the record quotes what callers said, and agents' notes are free text). A link
/// stays a link only to `http`, `https` or `mailto` (a `javascript:` one is its text alone),
/// and an image is never loaded: its description and address are shown as text, so opening a
/// record calls nowhere.
pub fn markdown(text: &str) -> String {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
    let mut dropped_link = false;
    let events = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
        .filter_map(move |e| match e {
            Event::Html(h) | Event::InlineHtml(h) => Some(Event::Text(h)),
            Event::Start(Tag::Link { ref dest_url, .. }) if !safe_link(dest_url) => {
                dropped_link = true;
                None
            }
            Event::End(TagEnd::Link) if dropped_link => {
                dropped_link = false;
                None
            }
            Event::Start(Tag::Image { dest_url, .. }) => Some(Event::Text(CowStr::from(format!(
                "[{}: ",
                dest_url.into_string()
            )))),
            Event::End(TagEnd::Image) => Some(Event::Text(CowStr::Borrowed("]"))),
            other => Some(other),
        });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// Whether a link in a record may stay one: web and mail addresses, and addresses without a
/// scheme (within the board).
fn safe_link(dest: &str) -> bool {
    let d: String = dest
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let scheme_end = d.find(':');
    let path_start = d.find(['/', '?', '#']);
    match (scheme_end, path_start) {
        (None, _) => true,
        (Some(c), Some(p)) if p < c => true,
        _ => ["http://", "https://", "mailto:"]
            .iter()
            .any(|s| d.starts_with(s)),
    }
}

#[derive(Deserialize)]
pub(super) struct RecordingQuery {
    key: String,
    dir: String,
}

/// A single `bytes=A-B` / `bytes=A-` / `bytes=-N` range, passed on as given; anything else is
/// ignored (the whole object is sent).
fn single_range(h: Option<&HeaderValue>) -> Option<String> {
    let v = h?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
    (digits(a) && digits(b) && !(a.is_empty() && b.is_empty())).then(|| v.to_string())
}

/// `GET /evidence/recording?key=CALL&dir=FOLDER`: the archived recording, streamed.
pub(super) async fn recording(
    State(s): State<Shared>,
    super::Lang(t): super::Lang,
    Extension(access): Extension<EvidenceAccess>,
    v: Viewer,
    headers: HeaderMap,
    Query(k): Query<RecordingQuery>,
) -> Response {
    let call = match visible_call(&s, t, &v, &k.key).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(access) = access.0 else {
        return not_found(t);
    };
    let folder = match rows::for_call(&s.store, &call.key).await {
        Ok(f) => f.into_iter().find(|f| f.dir == k.dir),
        Err(e) => return internal(e),
    };
    let Some(m) = folder
        .as_ref()
        .and_then(|f| serde_json::from_str::<Manifest>(&f.manifest).ok())
    else {
        return not_found(t);
    };
    let (Some(f), Some(audio)) = (folder, m.audio) else {
        return not_found(t);
    };
    let range = single_range(headers.get(header::RANGE));
    // A player asks for many ranges while it plays; the audit line is written for the start
    // of a listening (no range, or a range from the first byte), not for every seek.
    if range.as_deref().is_none_or(|r| r.starts_with("bytes=0-")) {
        audit(&s, &v, "view.recording", &call.key, &f.dir).await;
    }
    let key = access.object(&f.host, &f.dir, &audio.file);
    let got = match access.archive.get_stream(&key, range.as_deref()).await {
        Ok(g) => g,
        Err(e) if e.status() == Some(416) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{}", audio.bytes))],
            )
                .into_response();
        }
        Err(e) if e.status() == Some(404) => return not_found(t),
        Err(e) => return internal(e),
    };
    let status = if range.is_some() && got.content_range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let stream = got.body.map(|c| c.map_err(std::io::Error::other));
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(got.len));
    if let Some(cr) = got
        .content_range
        .filter(|_| status == StatusCode::PARTIAL_CONTENT)
        .and_then(|cr| HeaderValue::from_str(&cr).ok())
    {
        h.insert(header::CONTENT_RANGE, cr);
    }
    res
}

#[derive(Deserialize)]
pub(super) struct RecheckForm {
    csrf: String,
    key: String,
}

/// `POST /evidence/recheck`: verify the call's archived folders again now.
pub(super) async fn recheck(
    State(s): State<Shared>,
    super::Lang(t): super::Lang,
    v: Viewer,
    Form(f): Form<RecheckForm>,
) -> Response {
    if let Some(r) = v.csrf_refusal(&f.csrf, "evidence recheck", t) {
        return r;
    }
    let call = match visible_call(&s, t, &v, &f.key).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match rows::recheck(&s.store, &call.key, now_ms()).await {
        Ok(_) => {}
        Err(e) => return internal(e),
    }
    audit(&s, &v, "evidence.recheck", &call.key, "").await;
    // The checker wakes on a change.
    s.changed(&call.key);
    Redirect::to(&format!("/evidence?key={}", q(&call.key))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_in_a_record_is_shown_as_text() {
        let html = markdown("# 記録\n\n<script>alert(1)</script>\n\n**強調** <b>x</b>\n");
        assert!(html.contains("<h1>記録</h1>"), "{html}");
        assert!(html.contains("<strong>強調</strong>"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn a_record_links_only_to_the_web_and_mail_and_loads_no_image() {
        let html = markdown(
            "[a](javascript:alert(1)) [b]( JavaScript:alert(1)) <javascript:alert(2)> \
             [c](data:text/html,x) [d](https://example.org/x) [e](mailto:lead@example.org) \
             [f](/evidence?key=k) ![photo](https://tracker.example/p.png)\n",
        );
        assert!(
            !html.to_ascii_lowercase().contains("javascript:alert(1)\""),
            "{html}"
        );
        assert!(
            !html.contains("href=\"javascript") && !html.contains("href=\"data:"),
            "{html}"
        );
        assert!(!html.contains("href=\" JavaScript"), "{html}");
        assert!(
            html.contains(">a<") || html.contains("a "),
            "the text stays: {html}"
        );
        assert!(
            html.contains("<a href=\"https://example.org/x\">d</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"mailto:lead@example.org\">e</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"/evidence?key=k\">f</a>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("[https://tracker.example/p.png: photo]"),
            "{html}"
        );
    }

    #[test]
    fn only_one_plain_byte_range_is_passed_on() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            single_range(Some(&h("bytes=100-199"))).as_deref(),
            Some("bytes=100-199")
        );
        assert_eq!(
            single_range(Some(&h("bytes=5-"))).as_deref(),
            Some("bytes=5-")
        );
        assert_eq!(
            single_range(Some(&h("bytes=-5"))).as_deref(),
            Some("bytes=-5")
        );
        assert_eq!(single_range(Some(&h("bytes=0-1,5-9"))), None);
        assert_eq!(single_range(Some(&h("bytes=-"))), None);
        assert_eq!(single_range(Some(&h("items=0-1"))), None);
        assert_eq!(single_range(None), None);
    }
}
