//! Masking secrets out of text shown to people: webhook URLs of Slack, Teams and most
//! receivers carry their token in the path or the query, and HTTP client errors repeat the
//! full URL. Every error string that can hold a URL goes through [`redact`] before it reaches
//! a terminal, a log, the status, a notification or the outbox.

/// What replaces the secret part of a URL.
const MASK: &str = "…(masked)";

/// A URL safe to show: scheme, host, port and — when more of the path follows — the first
/// path segment are kept (so a lead's receivers can be told apart); user info, the rest of
/// the path, the query and the fragment are masked. A URL with nothing after its authority is
/// shown unchanged; text that is not a URL is masked after its `scheme://host` part.
pub fn mask_url(raw: &str) -> String {
    let Ok(u) = url::Url::parse(raw) else {
        return mask_unparsed(raw);
    };
    let segments: Vec<&str> = u
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let secret_free = segments.is_empty()
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none();
    if secret_free {
        return raw.to_string();
    }
    let mut shown = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(port) = u.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push('/');
    // A single segment may itself be the token (`https://host/TOKEN`): only a first segment
    // with more path after it is a name (`/hooks/…`, `/services/…`).
    if segments.len() > 1 {
        shown.push_str(segments[0]);
        shown.push('/');
    }
    shown.push_str(MASK);
    shown
}

/// `scheme://authority` kept, everything after it masked (for text that does not parse).
fn mask_unparsed(raw: &str) -> String {
    let Some(i) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[i + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials in the authority go too.
    let authority = authority.rsplit('@').next().unwrap_or("");
    if rest.len() == authority.len() {
        return format!("{}{authority}", &raw[..i + 3]);
    }
    format!("{}{authority}/{MASK}", &raw[..i + 3])
}

/// `text` with every URL in it masked by [`mask_url`]. A URL ends at white space, a quote, or
/// a closing bracket (`reqwest` writes `… for url (http://…)`).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, `+`, `-`, `.` before `://`, starting with a letter.
        let before = &rest[..i];
        let scheme_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map(|(j, _)| j)
            .unwrap_or(i);
        let scheme_start = before[scheme_start..]
            .char_indices()
            .find(|(_, c)| c.is_ascii_alphabetic())
            .map(|(j, _)| scheme_start + j)
            .unwrap_or(i);
        if scheme_start == i {
            // Not a URL (`://` with no scheme): keep it and go on.
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            continue;
        }
        let end = rest[i + 3..]
            .find(|c: char| {
                // Full-width punctuation ends a URL too (Japanese text has no spaces); a real
                // URL carries such characters percent-encoded.
                c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '\''
                            | ')'
                            | ']'
                            | '>'
                            | '`'
                            | '：'
                            | '（'
                            | '）'
                            | '、'
                            | '。'
                            | '」'
                    )
            })
            .map(|j| i + 3 + j)
            .unwrap_or(rest.len());
        // Already masked (text built from a masked URL): kept as is, so masking twice
        // changes nothing.
        if let Some(k) = rest[scheme_start..].find(MASK)
            && scheme_start + k <= end
        {
            let stop = scheme_start + k + MASK.len();
            out.push_str(&rest[..stop]);
            rest = &rest[stop..];
            continue;
        }
        out.push_str(&rest[..scheme_start]);
        out.push_str(&mask_url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_urls_keep_scheme_host_port_and_first_segment() {
        assert_eq!(
            mask_url("http://127.0.0.1:8080/hooks/T0KEN/post"),
            "http://127.0.0.1:8080/hooks/…(masked)"
        );
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/services/…(masked)"
        );
        assert_eq!(
            mask_url("https://example.com/T0KEN"),
            "https://example.com/…(masked)"
        );
        assert_eq!(
            mask_url("https://example.com/?token=T0KEN"),
            "https://example.com/…(masked)"
        );
        assert_eq!(
            mask_url("https://user:pw@example.com"),
            "https://example.com/…(masked)"
        );
        assert_eq!(mask_url("ws://127.0.0.1:8088"), "ws://127.0.0.1:8088");
        assert_eq!(mask_url("ws://127.0.0.1:8088/"), "ws://127.0.0.1:8088/");
    }

    #[test]
    fn urls_inside_error_text_are_masked() {
        let e = "error sending request for url (http://127.0.0.1:41234/hooks/SECRET123/post): \
                 client error (Connect): tcp connect error: Connection refused (os error 111)";
        let r = redact(e);
        assert!(!r.contains("SECRET123"), "{r}");
        assert!(
            r.contains("(http://127.0.0.1:41234/hooks/…(masked)): client error"),
            "{r}"
        );
        assert_eq!(
            redact("a https://h/x/SECRET and b http://g:1/y/z?k=SECRET2 end"),
            "a https://h/x/…(masked) and b http://g:1/y/…(masked) end"
        );
        assert_eq!(redact("no urls here: a://"), "no urls here: a://");
        // Masking is idempotent: a text holding a masked URL stays as it is.
        let shown = format!(
            "{}: unreachable: {e}",
            mask_url("http://127.0.0.1:41234/hooks/SECRET123/post")
        );
        let once = redact(&shown);
        assert_eq!(redact(&once), once);
        assert!(
            once.starts_with("http://127.0.0.1:41234/hooks/…(masked): unreachable: error"),
            "{once}"
        );
        assert_eq!(redact("odd ://x"), "odd ://x");
        // Japanese text runs on without spaces: full-width punctuation ends the URL.
        assert_eq!(
            redact("ws://127.0.0.1:1/：接続できません：IO error"),
            "ws://127.0.0.1:1/：接続できません：IO error"
        );
        assert_eq!(
            redact("http://h:1/hooks/SECRET：到達できません"),
            "http://h:1/hooks/…(masked)：到達できません"
        );
    }
}
