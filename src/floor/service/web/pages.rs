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

// The call tables are laid out as one grid per row with fixed columns, and rows off screen
// are skipped by the browser (`content-visibility`): as a table, every patch and every
// ticking clock made the browser lay out and paint all 2,000 rows of a busy floor again
// (measured: about 80% of the page's main thread at 500 events/s, which delayed the next
// update), whatever the table layout mode. Grid cells do not share borders, so each draws
// only its right and bottom one and the table the outer top and left.
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
textarea,input[type=text],input[type=password]{width:100%;max-width:40em;font-size:1em}\
#open,#open tbody,#ended,#ended tbody{display:block}\
#open tr,#ended tr{display:grid;grid-template-columns:5em 12% 12% 6em 1fr 12% 16%}\
#open,#ended{border:solid #d5d9e0;border-width:1px 0 0 1px}\
#open th,#open td,#ended th,#ended td{border-width:0 1px 1px 0}\
#open tr[data-call],#ended tr[data-call]{content-visibility:auto;contain-intrinsic-size:auto 2.4em}";

// Live updates: `board` replaces the whole board (on connect), `patch` changes only the rows,
// headings and order that changed (see `live.rs`), so the browser's work follows the change,
// not the size of the floor.
const SCRIPT: &str = r#"(function(){
var off=0;
function fmt(s){s=Math.max(0,s);var h=Math.floor(s/3600),m=Math.floor(s/60)%60,x=s%60;
return (h>0?h+':'+(m<10?'0':'')+m:m)+':'+(x<10?'0':'')+x;}
function sync(){var b=document.getElementById('board');if(b&&b.dataset.now){off=Date.now()-Number(b.dataset.now);}}
function tick(root){(root||document).querySelectorAll('[data-start]').forEach(function(e){
var v=fmt(Math.floor((Date.now()-off-Number(e.dataset.start))/1000));if(e.textContent!==v){e.textContent=v;}});}
function patch(p){var b=document.getElementById('board');if(!b){return;}
b.dataset.now=p.now;sync();var tmp=document.createElement('tbody');
for(var id in p.s){var d=p.s[id],t=document.getElementById(id);if(!t||!t.tBodies[0]){continue;}
var body=t.tBodies[0],attr=id==='fleet'?'data-ws':'data-call',rows={},i,k,r;
for(i=0;i<body.children.length;i++){k=body.children[i].getAttribute(attr);if(k!==null){rows[k]=body.children[i];}}
if(d.head){var h=document.getElementById(id+'-h');if(h){h.outerHTML=d.head;}}
(d.gone||[]).forEach(function(k){if(rows[k]){rows[k].remove();delete rows[k];}});
(d.rows||[]).forEach(function(kr){tmp.innerHTML=kr[1];var n=tmp.firstElementChild;if(!n){return;}
if(rows[kr[0]]){rows[kr[0]].replaceWith(n);}else{body.appendChild(n);}rows[kr[0]]=n;tick(n);});
if(d.order){var cur=body.firstElementChild;while(cur&&cur.getAttribute(attr)===null){cur=cur.nextElementSibling;}
d.order.forEach(function(k){r=rows[k];if(!r){return;}if(r===cur){cur=cur.nextElementSibling;}else{body.insertBefore(r,cur);}});}}}
sync();tick();setInterval(tick,1000);
var live=document.getElementById('live');
function connect(){var es=new EventSource('/events');
es.addEventListener('board',function(ev){var b=document.getElementById('board');
if(b){b.outerHTML=ev.data;sync();tick();}if(live){live.textContent=live.dataset.ok;}});
es.addEventListener('patch',function(ev){patch(JSON.parse(ev.data));});
es.addEventListener('ended',function(){es.close();location.reload();});
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
    if k.chars().count() > 16 {
        format!("#{}", k.chars().take(12).collect::<String>())
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

/// One table of the board, keyed by row: what a live update compares and patches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardSection {
    /// The section's heading (`<h2 id="…-h">`), with its count where it has one.
    pub head: String,
    /// The header row of the table.
    pub columns: String,
    /// `(key, <tr>…</tr>)` in display order; the key is the row's `data-call` / `data-ws`.
    pub rows: Vec<(String, String)>,
}

/// The board's live part as keyed rows: fleet health, open calls, calls ended recently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardParts {
    /// The server's clock when rendered (the page's clocks tick from it).
    pub now_ms: i64,
    /// `#fleet`.
    pub fleet: BoardSection,
    /// `#open`.
    pub open: BoardSection,
    /// `#ended`.
    pub ended: BoardSection,
}

impl BoardParts {
    /// The three sections with their element ids, in page order.
    pub fn sections(&self) -> [(&'static str, &BoardSection); 3] {
        [
            ("fleet", &self.fleet),
            ("open", &self.open),
            ("ended", &self.ended),
        ]
    }

    /// The whole `#board` element.
    pub fn html(&self) -> String {
        let size: usize = self
            .sections()
            .iter()
            .map(|(_, s)| s.rows.iter().map(|(_, r)| r.len()).sum::<usize>() + 256)
            .sum();
        let mut s = String::with_capacity(size);
        let _ = write!(s, "<div id=\"board\" data-now=\"{}\">", self.now_ms);
        for (id, sec) in self.sections() {
            let _ = write!(s, "{}<table id=\"{id}\">{}", sec.head, sec.columns);
            for (_, row) in &sec.rows {
                s.push_str(row);
            }
            s.push_str("</table>");
        }
        s.push_str("</div>");
        s
    }
}

/// The board's live part (`#board`): fleet health, open calls, calls ended recently.
pub fn board(
    t: &Texts,
    data: &BoardData,
    now_ms: i64,
    stale_after_ms: Option<i64>,
    csrf: &str,
) -> String {
    board_parts(t, data, now_ms, stale_after_ms, csrf, true).html()
}

/// The board as keyed rows. With `clocks` false the elapsed-time cells are left empty (the
/// page's ticking script fills them), so a row only differs from its last rendering when the
/// call itself changed: live updates compare rows without every clock making every row new.
pub fn board_parts(
    t: &Texts,
    data: &BoardData,
    now_ms: i64,
    stale_after_ms: Option<i64>,
    csrf: &str,
    clocks: bool,
) -> BoardParts {
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
    // Highest level first, then the longest call; the key keeps ties in a stable order.
    open.sort_by(|a, b| {
        (
            std::cmp::Reverse(a.level),
            a.started_ms.unwrap_or(now_ms),
            &a.key,
        )
            .cmp(&(
                std::cmp::Reverse(b.level),
                b.started_ms.unwrap_or(now_ms),
                &b.key,
            ))
    });
    let mut ended: Vec<&CallRow> = data.calls.iter().filter(|c| c.ended_ms.is_some()).collect();
    ended.sort_by(|a, b| {
        (std::cmp::Reverse(a.ended_ms), &a.key).cmp(&(std::cmp::Reverse(b.ended_ms), &b.key))
    });

    let none = Vec::new();
    let mut open_rows = Vec::with_capacity(open.len());
    for c in &open {
        let m = marks.get(c.key.as_str()).unwrap_or(&none);
        let e = escs.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let a = acks.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let start = c.started_ms.unwrap_or(now_ms);
        let row = format!(
            "<tr class=\"call l{lvl}\" data-call=\"{key}\"><td><span class=\"badge\">{lvl}</span>\
             </td><td>{agent}</td><td>{caller}</td><td class=\"elapsed\" data-start=\"{start}\">\
             {el}</td><td>{marks}</td><td>{rules}</td><td>{esc_cell}</td></tr>",
            lvl = c.level.clamp(0, 4),
            key = esc(&c.key),
            agent = agent_cell(c),
            caller = caller_link(c),
            el = if clocks {
                clock((now_ms - start) / 1000)
            } else {
                String::new()
            },
            marks = marks_cell(m),
            rules = rules_cell(m),
            esc_cell = escalation_cell(t, c, e, a, csrf, true),
        );
        open_rows.push((c.key.clone(), row));
    }
    let open = BoardSection {
        head: format!(
            "<h2 id=\"open-h\">{} ({})</h2>",
            esc(t.open_calls),
            open_rows.len()
        ),
        columns: format!(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t.level),
            esc(t.agent),
            esc(t.caller),
            esc(t.elapsed),
            esc(t.marks),
            esc(t.rules),
            esc(t.escalation)
        ),
        rows: open_rows,
    };
    let mut ended_rows = Vec::with_capacity(ended.len());
    for c in &ended {
        let m = marks.get(c.key.as_str()).unwrap_or(&none);
        let e = escs.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let a = acks.get(c.key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let dur = match (c.started_ms, c.ended_ms) {
            (Some(st), Some(en)) => clock((en - st) / 1000),
            _ => String::new(),
        };
        let row = format!(
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
        ended_rows.push((c.key.clone(), row));
    }
    let ended = BoardSection {
        head: format!("<h2 id=\"ended-h\">{}</h2>", esc(t.ended_calls)),
        columns: format!(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t.level),
            esc(t.agent),
            esc(t.caller),
            esc(t.duration),
            esc(t.marks),
            esc(t.escalation),
            esc(t.record)
        ),
        rows: ended_rows,
    };
    BoardParts {
        now_ms,
        fleet: fleet(t, &data.workstations, now_ms, stale_after_ms),
        open,
        ended,
    }
}

fn fleet(
    t: &Texts,
    ws: &[WorkstationRow],
    now_ms: i64,
    stale_after_ms: Option<i64>,
) -> BoardSection {
    // Workstations without protection first.
    let mut rows: Vec<(&WorkstationRow, Option<i64>)> = ws
        .iter()
        .map(|w| (w, w.off_since(now_ms, stale_after_ms)))
        .collect();
    rows.sort_by(|(a, aoff), (b, boff)| (aoff.is_none(), &a.key).cmp(&(boff.is_none(), &b.key)));
    let rows = rows
        .into_iter()
        .map(|(w, off)| {
            let state = match off {
                Some(since) => format!(
                    "{} {} ({})",
                    esc(t.protection_off_since),
                    hm(since),
                    esc(if w.pbx_up { t.no_heartbeat } else { t.pbx_down })
                ),
                None => esc(t.ok),
            };
            let row = format!(
                "<tr class=\"ws{off}\" data-ws=\"{key}\"><td>{host}</td><td>{name} ({agent})</td>\
                 <td>{seen}</td><td>{state}</td></tr>",
                off = if off.is_some() { " off" } else { "" },
                key = esc(&w.key),
                host = esc(&w.host),
                name = esc(&w.agent_name),
                agent = esc(&w.agent),
                seen = hm(w.last_seen_ms),
            );
            (w.key.clone(), row)
        })
        .collect();
    BoardSection {
        head: format!("<h2 id=\"fleet-h\">{}</h2>", esc(t.fleet)),
        columns: format!(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t.workstation),
            esc(t.agent),
            esc(t.last_heartbeat),
            esc(t.pbx)
        ),
        rows,
    }
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
/// The audit page: `lines` (newest first), of `user` only when given, with a link to the
/// lines before `older` (an id) when there are more.
pub fn audit(t: &Texts, lines: &[AuditRow], user: Option<&str>, older: Option<i64>) -> String {
    let mut s = format!(
        "<h1>{}{}</h1><table id=\"audit\"><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th></th></tr>",
        esc(t.audit),
        user.map(|u| format!(" — {}", esc(u))).unwrap_or_default(),
        esc(t.when),
        esc(t.user),
        esc(t.action),
        esc(t.target)
    );
    for a in lines {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td><a href=\"/audit?user={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.id,
            ymd_hm(a.at_ms),
            q(&a.user_name),
            esc(&a.user_name),
            esc(&a.action),
            esc(&a.target),
            esc(&a.detail)
        );
    }
    s.push_str("</table>");
    if let Some(id) = older {
        let _ = write!(
            s,
            "<p><a id=\"older\" href=\"/audit?before={id}{}\">{}</a></p>",
            user.map(|u| format!("&user={}", q(u))).unwrap_or_default(),
            esc(t.older)
        );
    }
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
    fn the_audit_page_links_to_older_lines_and_to_each_users_own() {
        let t = super::super::i18n::texts(crate::config::Language::En);
        let line = AuditRow {
            id: 7,
            at_ms: 0,
            user_name: "sato k".into(),
            action: "ack".into(),
            target: "x".into(),
            detail: String::new(),
        };
        let page = audit(t, std::slice::from_ref(&line), Some("sato k"), Some(7));
        assert!(page.contains("href=\"/audit?user=sato+k\""), "{page}");
        assert!(
            page.contains("href=\"/audit?before=7&user=sato+k\">Older lines"),
            "{page}"
        );
        assert!(!audit(t, &[line], None, None).contains("id=\"older\""));
    }

    #[test]
    fn a_long_caller_key_is_cut_between_characters() {
        assert_eq!(short_hash("aaaaaaaaaaaébbbbbbbb"), "#aaaaaaaaaaaé");
        assert_eq!(short_hash("0123456789abcdef"), "0123456789abcdef");
    }

    #[test]
    fn clocks() {
        assert_eq!(clock(65), "1:05");
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(clock(-3), "0:00");
    }
}
