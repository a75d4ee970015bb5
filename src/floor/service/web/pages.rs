//! Server-rendered HTML of the board: no build step, a few lines of inline script for the ticking
//! clocks and the live updates (Server-Sent Events).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{Local, TimeZone};

use super::i18n::Texts;
use crate::floor::service::store::{
    AckRow, AuditRow, BoardData, CallRow, CallerHistory, EscalationRow, MarkRow, WorkstationRow,
};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes a query-string value.
pub fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `14:02` in the server's time zone.
pub fn hm(ms: i64) -> String {
    Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// `2026-11-29 14:02` in the server's time zone.
pub fn ymd_hm(ms: i64) -> String {
    Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// `1:05` or `1:02:05`.
pub fn clock(secs: i64) -> String {
    let s = secs.max(0);
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK JP',sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#1d2330;color:#fff}\
header a{color:#cfe0ff}header form{margin-left:auto}main{padding:1em}\
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1.5em}\
th,td{border:1px solid #d5d9e0;padding:.35em .5em;text-align:left;vertical-align:top}\
th{background:#e9ecf1}tr.l1{background:#fff8d6}tr.l2{background:#ffe3b3}\
tr.l3{background:#ffc2a8}tr.l4{background:#ff9d9d}tr.off{background:#d93636;color:#fff}\
tr.off a{color:#fff}.quote{font-style:italic}.badge{display:inline-block;min-width:1.6em;\
text-align:center;border-radius:.3em;background:#1d2330;color:#fff}\
button{padding:.3em .8em;font-size:1em}.err{color:#b00020}#live{font-size:.85em;opacity:.8}\
textarea,input[type=text],input[type=password]{width:100%;max-width:40em;font-size:1em}";

const SCRIPT: &str = r#"(function(){
var off=0;
function fmt(s){s=Math.max(0,s);var h=Math.floor(s/3600),m=Math.floor(s/60)%60,x=s%60;
return (h>0?h+':'+(m<10?'0':'')+m:m)+':'+(x<10?'0':'')+x;}
function sync(){var b=document.getElementById('board');if(b&&b.dataset.now){off=Date.now()-Number(b.dataset.now);}}
function tick(){document.querySelectorAll('[data-start]').forEach(function(e){
e.textContent=fmt(Math.floor((Date.now()-off-Number(e.dataset.start))/1000));});}
sync();tick();setInterval(tick,1000);
var live=document.getElementById('live');
function connect(){var es=new EventSource('/events');
es.addEventListener('board',function(ev){var b=document.getElementById('board');
if(b){b.outerHTML=ev.data;sync();tick();}if(live){live.textContent=live.dataset.ok;}});
es.onerror=function(){es.close();if(live){live.textContent=live.dataset.wait;}setTimeout(connect,2000);};}
if(document.getElementById('board')){connect();}
})();"#;

/// A full page around `body`.
pub fn page(t: &Texts, title: &str, user: Option<(&str, &str, bool)>, body: &str) -> String {
    let mut nav = String::new();
    if let Some((name, csrf, admin)) = user {
        let _ = write!(
            nav,
            "<a href=\"/\">{board}</a>{audit}<span id=\"live\" data-ok=\"● {live}\" \
             data-wait=\"○ {wait}\"></span><form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><span>{name}</span> \
             <button type=\"submit\">{logout}</button></form>",
            board = esc(t.board),
            audit = if admin {
                format!("<a href=\"/audit\">{}</a>", esc(t.audit))
            } else {
                String::new()
            },
            live = esc(t.live),
            wait = esc(t.reconnecting),
            csrf = esc(csrf),
            name = esc(name),
            logout = esc(t.logout),
        );
    }
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><header><strong>{app}</strong>{nav}</header>\
         <main>{body}</main><script>{SCRIPT}</script></body></html>",
        lang = t.html_lang,
        title = esc(title),
        app = esc(t.title),
    )
}

/// The login form.
pub fn login(t: &Texts, csrf: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"err\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        t,
        t.login,
        None,
        &format!(
            "<h1>{login}</h1>{err}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>{user}<br><input type=\"text\" name=\"name\" id=\"name\" \
             autocomplete=\"username\" required></label></p>\
             <p><label>{password}<br><input type=\"password\" name=\"password\" id=\"password\" \
             autocomplete=\"current-password\" required></label></p>\
             <p><button type=\"submit\" id=\"login\">{login}</button></p></form>",
            login = esc(t.login),
            csrf = esc(csrf),
            user = esc(t.user),
            password = esc(t.password),
        ),
    )
}

fn caller_link(c: &CallRow) -> String {
    match &c.caller_key {
        Some(k) => format!(
            "<a href=\"/caller?key={}\">{}</a>",
            q(k),
            esc(c.caller.as_deref().unwrap_or(&short_hash(k)))
        ),
        None => "—".into(),
    }
}

fn short_hash(k: &str) -> String {
    if k.len() > 16 {
        format!("#{}", &k[..12])
    } else {
        k.to_string()
    }
}

fn agent_cell(c: &CallRow) -> String {
    if c.agent_name.is_empty() {
        esc(&c.agent)
    } else {
        format!("{} ({})", esc(&c.agent_name), esc(&c.agent))
    }
}

fn marks_cell(marks: &[&MarkRow]) -> String {
    let mut s = String::new();
    for m in marks {
        let _ = write!(
            s,
            "<div>{} <b>{}</b> <span class=\"quote\">「{}」</span></div>",
            hm(m.at_ms),
            esc(&m.mark),
            esc(&m.quote)
        );
    }
    s
}

fn rules_cell(marks: &[&MarkRow]) -> String {
    let mut rules: Vec<&str> = marks
        .iter()
        .flat_map(|m| m.rules.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    rules.dedup();
    rules.sort_unstable();
    rules.dedup();
    esc(&rules.join(", "))
}

fn escalation_cell(
    t: &Texts,
    c: &CallRow,
    escs: &[&EscalationRow],
    acks: &[&AckRow],
    csrf: &str,
    open: bool,
) -> String {
    if let Some(a) = acks.first() {
        let after = escs
            .first()
            .map(|e| {
                format!(
                    " ({} {})",
                    esc(t.after_ping),
                    clock((a.at_ms - e.at_ms) / 1000)
                )
            })
            .unwrap_or_default();
        return format!(
            "<span class=\"taken\">{} {} {}{after}</span>",
            esc(t.taken_by),
            esc(&a.lead),
            hm(a.at_ms)
        );
    }
    let Some(e) = escs.last() else {
        return String::new();
    };
    let mut s = format!(
        "<div>{} {} {}</div>",
        hm(e.at_ms),
        esc(&e.reason),
        esc(&e.delivery)
    );
    if open {
        let _ = write!(
            s,
            "<form method=\"post\" action=\"/ack\"><input type=\"hidden\" name=\"csrf\" \
             value=\"{}\"><input type=\"hidden\" name=\"call\" value=\"{}\">\
             <button type=\"submit\" class=\"take\">{}</button></form>",
            esc(csrf),
            esc(&c.key),
            esc(t.take)
        );
    }
    s
}

/// The board's live part (`#board`): fleet health, open calls, calls ended recently.
pub fn board(
    t: &Texts,
    data: &BoardData,
    now_ms: i64,
    stale_after_ms: Option<i64>,
    csrf: &str,
) -> String {
    let mut marks: HashMap<&str, Vec<&MarkRow>> = HashMap::new();
    for m in &data.marks {
        marks.entry(m.call_key.as_str()).or_default().push(m);
    }
    let mut escs: HashMap<&str, Vec<&EscalationRow>> = HashMap::new();
    for e in &data.escalations {
        escs.entry(e.call_key.as_str()).or_default().push(e);
    }
    let mut acks: HashMap<&str, Vec<&AckRow>> = HashMap::new();
    for a in &data.acks {
        acks.entry(a.call_key.as_str()).or_default().push(a);
    }
    let mut open: Vec<&CallRow> = data.calls.iter().filter(|c| c.ended_ms.is_none()).collect();
    // Highest level first, then the longest call.
    open.sort_by_key(|c| (std::cmp::Reverse(c.level), c.started_ms.unwrap_or(now_ms)));
    let mut ended: Vec<&CallRow> = data.calls.iter().filter(|c| c.ended_ms.is_some()).collect();
    ended.sort_by_key(|c| std::cmp::Reverse(c.ended_ms));

    let mut s = format!("<div id=\"board\" data-now=\"{now_ms}\">");
    fleet(&mut s, t, &data.workstations, now_ms, stale_after_ms);
    let _ = write!(
        s,
        "<h2>{} ({})</h2><table id=\"open\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(t.open_calls),
        open.len(),
        esc(t.level),
        esc(t.agent),
        esc(t.caller),
        esc(t.elapsed),
        esc(t.marks),
        esc(t.rules),
        esc(t.escalation)
    );
    let none = Vec::new();
    for c in &open {
        let m = marks.get(c.key.as_str()).unwrap_or(&none);
        let e = escs.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let a = acks.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let start = c.started_ms.unwrap_or(now_ms);
        let _ = write!(
            s,
            "<tr class=\"call l{lvl}\" data-call=\"{key}\"><td><span class=\"badge\">{lvl}</span>\
             </td><td>{agent}</td><td>{caller}</td><td class=\"elapsed\" data-start=\"{start}\">\
             {el}</td><td>{marks}</td><td>{rules}</td><td>{esc_cell}</td></tr>",
            lvl = c.level.clamp(0, 4),
            key = esc(&c.key),
            agent = agent_cell(c),
            caller = caller_link(c),
            el = clock((now_ms - start) / 1000),
            marks = marks_cell(m),
            rules = rules_cell(m),
            esc_cell = escalation_cell(t, c, e, a, csrf, true),
        );
    }
    s.push_str("</table>");
    let _ = write!(
        s,
        "<h2>{}</h2><table id=\"ended\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(t.ended_calls),
        esc(t.level),
        esc(t.agent),
        esc(t.caller),
        esc(t.duration),
        esc(t.marks),
        esc(t.escalation),
        esc(t.record)
    );
    for c in &ended {
        let m = marks.get(c.key.as_str()).unwrap_or(&none);
        let e = escs.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let a = acks.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let dur = match (c.started_ms, c.ended_ms) {
            (Some(st), Some(en)) => clock((en - st) / 1000),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<tr class=\"call l{lvl}\" data-call=\"{key}\"><td><span class=\"badge\">{lvl}</span>\
             </td><td>{agent}</td><td>{caller}</td><td>{dur}</td><td>{marks}</td><td>{e}</td>\
             <td><a href=\"/call?key={qk}\">{rec}</a> {ev}</td></tr>",
            lvl = c.level.clamp(0, 4),
            ev = super::evidence::link(t, &c.key),
            key = esc(&c.key),
            agent = agent_cell(c),
            caller = caller_link(c),
            marks = marks_cell(m),
            e = escalation_cell(t, c, e, a, csrf, false),
            qk = q(&c.key),
            rec = esc(t.record),
        );
    }
    s.push_str("</table></div>");
    s
}

fn fleet(
    s: &mut String,
    t: &Texts,
    ws: &[WorkstationRow],
    now_ms: i64,
    stale_after_ms: Option<i64>,
) {
    let _ = write!(
        s,
        "<h2>{}</h2><table id=\"fleet\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(t.fleet),
        esc(t.workstation),
        esc(t.agent),
        esc(t.last_heartbeat),
        esc(t.pbx)
    );
    // Workstations without protection first.
    let mut rows: Vec<(&WorkstationRow, Option<i64>)> = ws
        .iter()
        .map(|w| (w, w.off_since(now_ms, stale_after_ms)))
        .collect();
    rows.sort_by_key(|(w, off)| (off.is_none(), w.key.clone()));
    for (w, off) in rows {
        let state = match off {
            Some(since) => format!(
                "{} {} ({})",
                esc(t.protection_off_since),
                hm(since),
                esc(if w.pbx_up { t.no_heartbeat } else { t.pbx_down })
            ),
            None => esc(t.ok),
        };
        let _ = write!(
            s,
            "<tr class=\"ws{off}\" data-ws=\"{key}\"><td>{host}</td><td>{name} ({agent})</td>\
             <td>{seen}</td><td>{state}</td></tr>",
            off = if off.is_some() { " off" } else { "" },
            key = esc(&w.key),
            host = esc(&w.host),
            name = esc(&w.agent_name),
            agent = esc(&w.agent),
            seen = hm(w.last_seen_ms),
        );
    }
    s.push_str("</table>");
}

/// One call's record.
pub fn call(t: &Texts, c: &CallRow, data: &BoardData) -> String {
    let m: Vec<&MarkRow> = data.marks.iter().filter(|m| m.call_key == c.key).collect();
    let mut s = format!(
        "<h1>{} {}</h1><table><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr>\
         <tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr></table>",
        esc(t.call),
        esc(&c.call_id),
        esc(t.agent),
        agent_cell(c),
        esc(t.caller),
        caller_link(c),
        esc(t.started),
        c.started_ms.map(ymd_hm).unwrap_or_default(),
        esc(t.duration),
        match (c.started_ms, c.ended_ms) {
            (Some(a), Some(b)) => clock((b - a) / 1000),
            _ => String::new(),
        },
        esc(t.level),
        c.level,
        esc(t.marks),
        marks_cell(&m),
    );
    let _ = write!(
        s,
        "<p>{}: {}</p><p>{}</p>",
        esc(t.workstation),
        esc(&c.host),
        super::evidence::link(t, &c.key)
    );
    s
}

/// A caller's history and the organisation's conclusion, with the form for a new version.
pub fn caller(t: &Texts, key: &str, h: &CallerHistory, csrf: &str) -> String {
    let shown = h
        .calls
        .iter()
        .find_map(|c| c.caller.clone())
        .unwrap_or_else(|| short_hash(key));
    let mut s = format!(
        "<h1>{} {}</h1><h2>{}</h2>",
        esc(t.caller_page),
        esc(&shown),
        esc(t.conclusion)
    );
    match h.conclusions.first() {
        Some(c) => {
            let _ = write!(
                s,
                "<div id=\"conclusion\"><p class=\"text\">{}</p><p>{}: <b class=\"phrase\">「{}」\
                 </b></p><p>{} {} · {} · {} {}</p></div>",
                esc(&c.text),
                esc(t.phrase),
                esc(&c.phrase),
                esc(t.by),
                esc(&c.author),
                ymd_hm(c.at_ms),
                esc(t.version),
                c.version
            );
        }
        None => {
            let _ = write!(s, "<p id=\"conclusion\">{}</p>", esc(t.no_conclusion));
        }
    }
    let current = h.conclusions.first();
    let _ = write!(
        s,
        "<form method=\"post\" action=\"/caller/conclusion\" id=\"conclusion-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"key\" value=\"{key}\">\
         <p><label>{conclusion}<br><textarea name=\"text\" id=\"text\" rows=\"3\" required>{text}\
         </textarea></label></p><p><label>{phrase}<br><input type=\"text\" name=\"phrase\" \
         id=\"phrase\" value=\"{ph}\" required></label></p>\
         <p><button type=\"submit\" id=\"save\">{save}</button></p></form>",
        csrf = esc(csrf),
        key = esc(key),
        conclusion = esc(t.conclusion),
        text = current.map(|c| esc(&c.text)).unwrap_or_default(),
        phrase = esc(t.phrase),
        ph = current.map(|c| esc(&c.phrase)).unwrap_or_default(),
        save = esc(t.save_conclusion),
    );
    if h.conclusions.len() > 1 {
        let _ = write!(
            s,
            "<table id=\"versions\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             </tr>",
            esc(t.version),
            esc(t.conclusion),
            esc(t.phrase),
            esc(t.by),
            esc(t.when)
        );
        for c in &h.conclusions {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.version,
                esc(&c.text),
                esc(&c.phrase),
                esc(&c.author),
                ymd_hm(c.at_ms)
            );
        }
        s.push_str("</table>");
    }
    let _ = write!(
        s,
        "<h2>{}</h2><table id=\"calls\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th></tr>",
        esc(t.call),
        esc(t.started),
        esc(t.agent),
        esc(t.duration),
        esc(t.level),
        esc(t.marks),
        esc(t.record)
    );
    for c in &h.calls {
        let m: Vec<&MarkRow> = h.marks.iter().filter(|m| m.call_key == c.key).collect();
        let dur = match (c.started_ms, c.ended_ms) {
            (Some(a), Some(b)) => clock((b - a) / 1000),
            _ => "…".into(),
        };
        let _ = write!(
            s,
            "<tr class=\"l{lvl}\"><td>{start}</td><td>{agent}</td><td>{dur}</td><td>{lvl}</td>\
             <td>{marks}</td><td><a href=\"/call?key={qk}\">{rec}</a> {ev}</td></tr>",
            lvl = c.level.clamp(0, 4),
            ev = super::evidence::link(t, &c.key),
            start = c.started_ms.map(ymd_hm).unwrap_or_default(),
            agent = agent_cell(c),
            marks = marks_cell(&m),
            qk = q(&c.key),
            rec = esc(t.record),
        );
    }
    s.push_str("</table>");
    s
}

/// The audit page.
pub fn audit(t: &Texts, lines: &[AuditRow]) -> String {
    let mut s = format!(
        "<h1>{}</h1><table id=\"audit\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th></th></tr>",
        esc(t.audit),
        esc(t.when),
        esc(t.user),
        esc(t.action),
        esc(t.target)
    );
    for a in lines {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.id,
            ymd_hm(a.at_ms),
            esc(&a.user_name),
            esc(&a.action),
            esc(&a.target),
            esc(&a.detail)
        );
    }
    s.push_str("</table>");
    s
}

/// A short message page.
pub fn message(t: &Texts, text: &str) -> String {
    page(
        t,
        t.title,
        None,
        &format!("<p class=\"err\">{}</p>", esc(text)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(q("+81 3/ä"), "%2B81+3%2F%C3%A4");
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(65), "1:05");
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(clock(-3), "0:00");
    }
}
