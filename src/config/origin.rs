//! Where each effective key came from (`callguard config check --origin`): the last file of the
//! layers that sets it, an environment variable, or the built-in default.
//!
//! Arrays (`[[warning]]`, `[[escalation.webhook]]`) are replaced as a whole by a later layer, so
//! every field inside them is credited to the layer that set the array.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use unicode_width::UnicodeWidthStr;

use super::{Config, ConfigError, ENV_PREFIX, Sources};

/// The source of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Not set anywhere: `Config::default()`.
    Default,
    /// Set in this file.
    File(PathBuf),
    /// Set by this environment variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(name) => write!(f, "env {name}"),
        }
    }
}

/// One effective key, its value as TOML (secrets masked) and its origin.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Dotted key, with `[i]` inside arrays: `pbx.url`, `warning[1].after`.
    pub key: String,
    /// The value, rendered as inline TOML.
    pub value: String,
    /// Where it was set.
    pub origin: Origin,
}

/// Every effective key of `cfg` (loaded from `sources`) with its origin, in key order.
pub fn explain(cfg: &Config, sources: &Sources) -> Result<Vec<Entry>, ConfigError> {
    let setters = setters(sources, std::env::vars_os())?;
    let effective = toml::Value::try_from(cfg.masked())
        .map_err(|e| ConfigError::Load(format!("cannot render the configuration: {e}")))?;
    let mut leaves = Vec::new();
    flatten_effective("", &effective, &mut leaves);
    Ok(leaves
        .into_iter()
        .map(|(key, value)| {
            let origin = lookup(&setters, &key);
            Entry { key, value, origin }
        })
        .collect())
}

/// Renders [`explain`] as aligned `key = value  # origin` lines, after the list of layers read.
pub fn render(entries: &[Entry], sources: &Sources) -> String {
    let mut out = String::from("# layers, later wins:\n");
    for f in &sources.files {
        out.push_str(&format!("#   {}\n", f.display()));
    }
    if sources.env {
        out.push_str(&format!("#   environment {ENV_PREFIX}__SECTION__KEY\n"));
    }
    // Terminal columns, not chars: 「責任者を出せ」 takes two columns per character.
    let width = entries
        .iter()
        .map(|e| format!("{} = {}", e.key, e.value).width())
        .max()
        .unwrap_or(0)
        .min(72);
    for e in entries {
        let line = format!("{} = {}", e.key, e.value);
        let pad = width.saturating_sub(line.width());
        out.push_str(&format!("{line}{}  # {}\n", " ".repeat(pad), e.origin));
    }
    out
}

/// Key → the last layer that sets it. Arrays are recorded under their own key only.
fn setters(
    sources: &Sources,
    env: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<BTreeMap<String, Origin>, ConfigError> {
    let mut map = BTreeMap::new();
    for file in &sources.files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::Load(format!("cannot read {}: {e}", file.display())))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError::Load(format!("{}: {e}", file.display())))?;
        let mut keys = Vec::new();
        flatten_layer("", &table, &mut keys);
        for key in keys {
            map.insert(key, Origin::File(file.clone()));
        }
    }
    if sources.env {
        let prefix = format!("{ENV_PREFIX}__");
        for (name, _) in env {
            let Some(name) = name.to_str() else { continue };
            if let Some(rest) = name.strip_prefix(&prefix) {
                let key = rest
                    .to_lowercase()
                    .split("__")
                    .collect::<Vec<_>>()
                    .join(".");
                map.insert(key, Origin::Env(name.to_string()));
            }
        }
    }
    Ok(map)
}

/// A layer's keys: tables are walked, anything else (arrays included) is one key.
fn flatten_layer(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = join(prefix, k);
        match v {
            toml::Value::Table(t) => flatten_layer(&key, t, out),
            _ => out.push(key),
        }
    }
}

/// The effective configuration's leaves, arrays of tables expanded to `key[i].field`.
fn flatten_effective(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten_effective(&join(prefix, k), v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(|v| v.is_table()) => {
            for (i, v) in items.iter().enumerate() {
                flatten_effective(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The exact key, else the array holding it (`warning[1].after` → `warning`), else a parent
/// table set whole by an environment variable, else the default.
fn lookup(setters: &BTreeMap<String, Origin>, key: &str) -> Origin {
    if let Some(o) = setters.get(key) {
        return o.clone();
    }
    if let Some(root) = key.split_once('[').map(|(root, _)| root)
        && let Some(o) = setters.get(root)
    {
        return o.clone();
    }
    Origin::Default
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_credited_to_the_layer_that_set_them() {
        let mut map = BTreeMap::new();
        map.insert("warning".to_string(), Origin::Env("X".into()));
        map.insert("pbx.url".to_string(), Origin::File("/a.toml".into()));
        assert_eq!(lookup(&map, "warning[1].after"), Origin::Env("X".into()));
        assert_eq!(lookup(&map, "pbx.url"), Origin::File("/a.toml".into()));
        assert_eq!(lookup(&map, "pbx.app"), Origin::Default);
    }

    #[test]
    fn env_names_become_dotted_keys() {
        let sources = Sources {
            files: vec![],
            env: true,
        };
        let env = vec![
            ("CALLGUARD__PBX__URL".into(), "ws://x/".into()),
            ("CALLGUARD_CONFIG".into(), "/x".into()),
            ("HOME".into(), "/root".into()),
        ];
        let map = setters(&sources, env.into_iter()).unwrap();
        assert_eq!(
            map.get("pbx.url"),
            Some(&Origin::Env("CALLGUARD__PBX__URL".into()))
        );
        assert_eq!(map.len(), 1);
    }
}
