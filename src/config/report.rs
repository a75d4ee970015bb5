//! Configuration errors an administrator can act on. Each layer (file, then the environment) is
//! checked on its own so that a mistake names where it was made: the absolute file and line, or
//! the environment variable; the full dotted key (`marks.rule[0].mark`); the value as written;
//! and what is accepted ("expected one of: generic, asterisk"). Also spots `CALLGUARD_…`
//! variables that look like misspelt overrides.

use std::ffi::OsString;
use std::path::Path;

use serde_path_to_error::Segment;

use super::{Config, ConfigError, ENV_PREFIX, SYSTEM_DIR_ENV, Sources};

/// Variables with one underscore that callguard reads; every other `CALLGUARD_X` is a typo.
const PLAIN_VARS: [&str; 2] = ["CALLGUARD_CONFIG", SYSTEM_DIR_ENV];

/// Checks one TOML layer against the schema. `file` is named in the error (absolute); without
/// one (`from_toml`) the error says "configuration text".
pub(super) fn check_toml(text: &str, file: Option<&Path>) -> Result<(), ConfigError> {
    let place = |line: Option<usize>| {
        let mut at = file.map_or_else(
            || "configuration text".to_string(),
            |f| f.display().to_string(),
        );
        if let Some(line) = line {
            at.push_str(&format!(", line {line}"));
        }
        at
    };
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(ConfigError::At {
                at: place(line),
                key: String::new(),
                value: None,
                msg: format!("not valid TOML: {}", e.message().trim()),
            });
        }
    };
    let Err(err) = serde_path_to_error::deserialize::<_, Config>(de) else {
        return Ok(());
    };
    let inner = err.inner();
    let line = inner.span().map(|s| line_of(text, s.start));
    let (key, msg) = key_and_message(err.path(), inner.message());
    let value = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| value_at(&toml::Value::Table(t), &key).map(ToString::to_string))
        .map(|v| masked(&key, v));
    Err(ConfigError::At {
        at: place(line),
        key,
        value,
        msg,
    })
}

/// `key = value: ` (or `key: `, or nothing) before the message of [`ConfigError::At`].
pub(super) fn key_value(key: &str, value: Option<&str>) -> String {
    match (key.is_empty(), value) {
        (true, _) => String::new(),
        (false, Some(v)) => format!("{key} = {v}: "),
        (false, None) => format!("{key}: "),
    }
}

/// Checks the `CALLGUARD__SECTION__KEY` overrides on their own, naming the variable at fault.
pub(super) fn check_env() -> Result<(), ConfigError> {
    let layer = config::Config::builder()
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .map_err(|e| ConfigError::Load(format!("environment {ENV_PREFIX}__…: {e}")))?;
    let Err(err) = serde_path_to_error::deserialize::<_, Config>(layer) else {
        return Ok(());
    };
    let (key, mut msg) = key_and_message(err.path(), &core_message(err.inner()));
    let var = env_var_for(&key, std::env::vars_os());
    let raw = var
        .as_deref()
        .and_then(std::env::var_os)
        .map(|v| v.to_string_lossy().into_owned());
    if msg.contains("does not have variant constructor")
        && let Some(raw) = &raw
        && let Some(better) = probe(&key, raw)
    {
        // The config crate's enum message lists no variants; serde's, through TOML, does.
        msg = better;
    }
    let value = raw.map(|v| masked(&key, toml::Value::String(v).to_string()));
    if let Some(better) = var.as_deref().and_then(suggest) {
        msg.push_str(&format!(" (did you mean {better}?)"));
    }
    Err(ConfigError::At {
        at: var.map_or_else(
            || format!("environment {ENV_PREFIX}__…"),
            |v| format!("environment variable {v}"),
        ),
        key,
        value,
        msg,
    })
}

/// A secret's value is never echoed, even when it is the wrong type.
fn masked(key: &str, value: String) -> String {
    if key.ends_with("password") {
        "\"********\"".into()
    } else {
        value
    }
}

/// What the schema says about `key = "raw"` as a one-line TOML layer.
fn probe(key: &str, raw: &str) -> Option<String> {
    let mut value = toml::Value::String(raw.to_string());
    for part in key.rsplit('.') {
        if part.contains('[') {
            return None;
        }
        let mut table = toml::Table::new();
        table.insert(part.to_string(), value);
        value = toml::Value::Table(table);
    }
    let text = toml::to_string(&value).ok()?;
    match check_toml(&text, None) {
        Err(ConfigError::At { msg, .. }) => Some(msg),
        _ => None,
    }
}

/// A rule violation found after merging (`Config::validate`), credited to the layer that set
/// the key and shown with its effective value.
pub(super) fn locate(err: ConfigError, cfg: &Config, sources: &Sources) -> ConfigError {
    let ConfigError::Invalid { key, msg } = err else {
        return err;
    };
    let origin = super::origin::explain(cfg, sources)
        .ok()
        .and_then(|entries| {
            let exact = entries.iter().find(|e| e.key == key).cloned();
            exact.map(|e| (e.origin, Some(e.value))).or_else(|| {
                // A whole array or table: credited like its first field.
                entries
                    .iter()
                    .find(|e| {
                        e.key.starts_with(&format!("{key}["))
                            || e.key.starts_with(&format!("{key}."))
                    })
                    .map(|e| (e.origin.clone(), None))
            })
        });
    match origin {
        Some((origin, value)) => ConfigError::At {
            at: match origin {
                super::origin::Origin::Default => "built-in default".to_string(),
                super::origin::Origin::File(p) => p.display().to_string(),
                super::origin::Origin::Env(v) => format!("environment variable {v}"),
            },
            key,
            value,
            msg,
        },
        None => ConfigError::Invalid { key, msg },
    }
}

/// `CALLGUARD_…` variables that callguard does not read but that look meant for it: single
/// underscores (`CALLGUARD_PBX_URL`), with the override they probably mean.
pub fn env_warnings(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<String> {
    let single = format!("{ENV_PREFIX}_");
    let double = format!("{ENV_PREFIX}__");
    let mut out: Vec<String> = vars
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.starts_with(&single)
                && !name.starts_with(&double)
                && !PLAIN_VARS.contains(&name.as_str())
        })
        .map(|name| match suggest(&name) {
            Some(better) => format!(
                "{name} is ignored: overrides use double underscores, \
                 {double}SECTION__KEY; did you mean {better}?"
            ),
            None => format!(
                "{name} is ignored: callguard reads {}, {} and {double}SECTION__KEY overrides",
                PLAIN_VARS[0], PLAIN_VARS[1]
            ),
        })
        .collect();
    out.sort();
    out
}

/// The override a misspelt variable probably means: its words regrouped into a known section
/// and key (`CALLGUARD_PBX_URL`, `CALLGUARD__PBX_URL` → `CALLGUARD__PBX__URL`).
fn suggest(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?.trim_start_matches('_');
    let words = rest.to_lowercase().replace("__", "_");
    let defaults = toml::Value::try_from(Config::default()).ok()?;
    let top = defaults.as_table()?;
    let candidate = if top.contains_key(&words) {
        vec![words]
    } else {
        top.iter().find_map(|(section, v)| {
            let key = words.strip_prefix(&format!("{section}_"))?;
            v.as_table()?
                .contains_key(key)
                .then(|| vec![section.clone(), key.to_string()])
        })?
    };
    let better = format!(
        "{ENV_PREFIX}__{}",
        candidate
            .iter()
            .map(|w| w.to_uppercase())
            .collect::<Vec<_>>()
            .join("__")
    );
    (better != name).then_some(better)
}

/// The variable that set `key` (or the table holding it).
fn env_var_for(key: &str, vars: impl Iterator<Item = (OsString, OsString)>) -> Option<String> {
    let double = format!("{ENV_PREFIX}__");
    let mut best: Option<(usize, String)> = None;
    for (name, _) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(&double) else {
            continue;
        };
        let dotted = rest.to_lowercase().replace("__", ".");
        if (key == dotted || key.starts_with(&format!("{dotted}.")) || dotted.starts_with(key))
            && best.as_ref().is_none_or(|(len, _)| dotted.len() > *len)
        {
            best = Some((dotted.len(), name));
        }
    }
    best.map(|(_, name)| name)
}

/// serde's path as the dotted key of the docs, and its message reworded: the bad value is shown
/// beside the key, so only what is accepted remains.
fn key_and_message(path: &serde_path_to_error::Path, raw: &str) -> (String, String) {
    let mut key = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    let push = |key: &mut String, name: &str| {
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(name);
    };
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        if !key.ends_with(name) {
            push(&mut key, name);
        }
        return (key, format!("unknown key; {}", expected_list(expected)));
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        push(&mut key, name);
        return (key, "missing; this key is required here".into());
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let expected = rest.split_once('`').map_or("", |(_, e)| e);
        return (key, expected_list(expected));
    }
    for kind in ["invalid type: ", "invalid value: ", "invalid length "] {
        if raw.starts_with(kind)
            && let Some((_, expected)) = raw.rsplit_once(", expected ")
        {
            return (key, format!("expected {}", plain_type(expected)));
        }
    }
    (key, raw.to_string())
}

/// serde's "expected one of `a`, `b`" / "expected `a` or `b`" as "expected one of: a, b".
fn expected_list(tail: &str) -> String {
    let names: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    match names.as_slice() {
        [] => "this section takes no keys".into(),
        [one] => format!("expected: {one}"),
        many => format!("expected one of: {}", many.join(", ")),
    }
}

/// Rust type names in serde's messages as words.
fn plain_type(expected: &str) -> String {
    match expected.trim() {
        "u8" | "u16" | "u32" | "u64" | "usize" | "an integer" | "i64" | "i32" => {
            "a whole number (no quotes), e.g. 500".into()
        }
        "a boolean" | "bool" => "true or false (no quotes)".into(),
        "a string" => "text in quotes".into(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
        t if t.starts_with("struct ") => "a table of keys ([section])".into(),
        other => other.to_string(),
    }
}

/// The message of a `config` crate error without its own "for key … in …" decoration.
fn core_message(err: &config::ConfigError) -> String {
    match err {
        config::ConfigError::At { error, .. } => core_message(error),
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        config::ConfigError::Message(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The value at a dotted key with `[i]` indexes, if the layer sets it.
fn value_at<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    let mut here = root;
    for part in key.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        here = here.as_table()?.get(name)?;
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .map(str::parse::<usize>)
        {
            here = here.as_array()?.get(index.ok()?)?;
        }
    }
    Some(here)
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        check_toml(text, Some(Path::new("/etc/callguard/callguard.toml")))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn enum_errors_list_the_accepted_values() {
        assert_eq!(
            err("[pbx]\nkind = \"asterix\"\n"),
            "/etc/callguard/callguard.toml, line 2: pbx.kind = \"asterix\": \
             expected one of: generic, asterisk"
        );
    }

    #[test]
    fn keys_inside_arrays_are_dotted() {
        let e = err("[[marks.rule]]\nmark = \"foo\"\ncount = 1\n");
        assert!(e.contains("marks.rule[0].mark = \"foo\""), "{e}");
        assert!(e.contains("expected one of:"), "{e}");
        let e = err("[[warning]]\nafter = \"15x\"\nkind = \"escalate\"\n");
        assert!(e.contains("line 2: warning[0].after = \"15x\""), "{e}");
        assert!(
            e.contains("expected a duration like 15m, 90s, 1h30m"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named_in_full() {
        let e = err("[pbx]\nurll = \"ws://x/\"\n");
        assert!(e.starts_with("/etc/callguard/callguard.toml, line 2: pbx.urll = \"ws://x/\": unknown key; expected one of: kind, url,"), "{e}");
        let e = err("[[warning]]\nafter = \"15m\"\n");
        assert!(e.contains("warning[0].kind: missing"), "{e}");
        let e = err("[pbx]\npassword = 12345\n");
        assert!(
            e.contains("pbx.password = \"********\": expected text"),
            "{e}"
        );
        let e = err("[evidence]\nmin_free_mb = \"lots\"\n");
        assert!(
            e.contains("evidence.min_free_mb = \"lots\": expected a whole number"),
            "{e}"
        );
    }

    #[test]
    fn misspelt_overrides_are_spotted() {
        let vars = [
            "CALLGUARD_PBX_URL",
            "CALLGUARD_PBX_PASSWORD_FILE",
            "CALLGUARD_LANGUAGE",
            "CALLGUARD_CONFIG",
            "CALLGUARD_SYSTEM_DIR",
            "CALLGUARD__PBX__URL",
            "CALLGUARD_FROBNICATE",
            "PATH",
        ]
        .map(|n| (OsString::from(n), OsString::from("x")));
        let w = env_warnings(vars.into_iter());
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(
            w.iter()
                .any(|m| m.starts_with("CALLGUARD_PBX_URL is ignored")
                    && m.ends_with("did you mean CALLGUARD__PBX__URL?"))
        );
        assert!(
            w.iter()
                .any(|m| m.ends_with("did you mean CALLGUARD__PBX__PASSWORD_FILE?"))
        );
        assert!(
            w.iter()
                .any(|m| m.ends_with("did you mean CALLGUARD__LANGUAGE?"))
        );
        assert!(
            w.iter()
                .any(|m| m.starts_with("CALLGUARD_FROBNICATE is ignored: callguard reads"))
        );
    }
}
