//! Fleet configuration: the system file, its conf.d drop-ins in name order, the user's file and
//! the environment, layered with real files and read by the real binary.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_callguard");

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A fleet: /etc/callguard (moved into `root/etc`), drop-ins, and one agent's own file.
fn fleet(root: &Path) {
    write(
        &root.join("etc/callguard.toml"),
        "language = \"en\"\n[pbx]\nurl = \"ws://pbx-main:8765/\"\n[log]\nlevel = \"warn\"\n\
         [[warning]]\nafter = \"10m\"\nkind = \"escalate\"\n\
         [[warning]]\nafter = \"20m\"\nkind = \"escalate\"\n\
         [[warning]]\nafter = \"30m\"\nkind = \"terminate\"\n",
    );
    write(
        &root.join("etc/conf.d/10-site.toml"),
        "[pbx]\nurl = \"ws://pbx-site:8765/\"\n\
         [[escalation.webhook]]\nurl = \"https://leads.example.internal/hook\"\n",
    );
    // Name order, not creation order: 20 comes after 10 and overrides the ladder as a whole.
    write(
        &root.join("etc/conf.d/20-ladder.toml"),
        "[[warning]]\nafter = \"15m\"\nkind = \"terminate\"\n",
    );
    // Left behind by an upgrade: never read.
    write(
        &root.join("etc/conf.d/10-site.toml.dpkg-old"),
        "[pbx]\nurl = \"ws://stale:1/\"\n",
    );
    write(
        &root.join("config/callguard/callguard.toml"),
        "[agent]\nextension = \"1001\"\nname = \"Sato\"\n",
    );
}

fn callguard(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLGUARD") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", root)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_DATA_HOME", root.join("data"))
        .env("CALLGUARD_SYSTEM_DIR", root.join("etc"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `key = value  # origin` → (value, origin).
fn entry(text: &str, key: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.split(" = ").next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"));
    let (kv, origin) = line.rsplit_once("  # ").unwrap();
    let value = kv.split_once(" = ").unwrap().1.trim().to_string();
    (value, origin.trim().to_string())
}

#[test]
fn each_key_names_the_layer_that_set_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fleet(root);
    let out = callguard(
        root,
        &["config", "check", "--origin"],
        &[("CALLGUARD__LOG__LEVEL", "debug")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let etc = root.join("etc");
    let main = etc.join("callguard.toml").display().to_string();
    let site = etc.join("conf.d/10-site.toml").display().to_string();
    let ladder = etc.join("conf.d/20-ladder.toml").display().to_string();
    let user = root
        .join("config/callguard/callguard.toml")
        .display()
        .to_string();

    assert_eq!(entry(&text, "language"), ("\"en\"".into(), main.clone()));
    assert_eq!(
        entry(&text, "pbx.url"),
        ("\"ws://pbx-site:8765/\"".into(), site.clone())
    );
    assert_eq!(
        entry(&text, "agent.extension"),
        ("\"1001\"".into(), user.clone())
    );
    assert_eq!(
        entry(&text, "log.level"),
        ("\"debug\"".into(), "env CALLGUARD__LOG__LEVEL".into())
    );
    assert_eq!(entry(&text, "pbx.kind").1, "default");
    // The later layer's ladder replaced the three-step one as a whole.
    assert_eq!(
        entry(&text, "warning[0].after"),
        ("\"15m\"".into(), ladder.clone())
    );
    assert_eq!(entry(&text, "warning[0].notify_lead").1, ladder);
    assert!(!text.contains("warning[1]"), "{text}");
    // The webhook URL carries a path: masked, still credited.
    assert_eq!(entry(&text, "escalation.webhook[0].url").1, site);
    assert!(!text.contains("leads.example.internal/hook"), "{text}");
    // The header lists the layers in the order they were read.
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    let pos = |s: &str| header.iter().position(|l| l.ends_with(s)).unwrap();
    assert!(pos(&main) < pos(&site) && pos(&site) < pos(&ladder) && pos(&ladder) < pos(&user));
    assert!(!text.contains("dpkg-old"), "{text}");
}

#[test]
fn plain_check_sees_the_same_layers() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let out = callguard(dir.path(), &["config", "check"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("url = \"ws://pbx-site:8765/\""), "{text}");
    assert!(text.contains("extension = \"1001\""), "{text}");
}

#[test]
fn a_broken_drop_in_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    write(
        &dir.path().join("etc/conf.d/30-broken.toml"),
        "[pbx]\nurl = \"http://not-ws/\"\n",
    );
    let out = callguard(dir.path(), &["config", "check", "--origin"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pbx.url"), "{err}");
}

#[test]
fn explicit_config_skips_the_fleet_layers() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    let own = dir.path().join("own.toml");
    write(&own, "[pbx]\nurl = \"ws://own:1/\"\n");
    let out = callguard(
        dir.path(),
        &[
            "config",
            "check",
            "--origin",
            "--config",
            own.to_str().unwrap(),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(entry(&text, "pbx.url").1, own.display().to_string());
    assert_eq!(entry(&text, "language").1, "default");
}

#[test]
fn a_broken_drop_in_is_named_by_its_absolute_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    fleet(&root);
    write(
        &root.join("etc/conf.d/60-broken.toml"),
        "# fleet override\n[pbx]\nkind = \"asterix\"\n",
    );
    // The system folder given relatively, from deep inside another folder.
    let cwd = root.join("config/callguard");
    let out = Command::new(BIN)
        .current_dir(&cwd)
        .args(["config", "check"])
        .env_remove("CALLGUARD_CONFIG")
        .env("HOME", &root)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("CALLGUARD_SYSTEM_DIR", "../../etc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "callguard: configuration error: {}, line 3: pbx.kind = \"asterix\": \
         expected one of: generic, asterisk",
        root.join("etc/conf.d/60-broken.toml").display()
    );
    assert!(err.contains(&want), "want {want}\ngot  {err}");
    assert!(!err.contains(".."), "{err}");
}

#[test]
fn a_rule_broken_after_merging_names_the_layer_that_set_it() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    // Valid TOML, but the ladder of this drop-in goes backwards.
    write(
        &dir.path().join("etc/conf.d/30-ladder.toml"),
        "[[warning]]\nafter = \"20m\"\nkind = \"escalate\"\n\
         [[warning]]\nafter = \"10m\"\nkind = \"terminate\"\n",
    );
    let out = callguard(dir.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}: warning[1].after = \"10m\": steps must be in ascending order (10m is not after 20m)",
        dir.path().join("etc/conf.d/30-ladder.toml").display()
    );
    assert!(err.contains(&want), "want {want}\ngot  {err}");
}

#[test]
fn origin_columns_align_after_japanese_text() {
    use unicode_width::UnicodeWidthStr;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path());
    write(
        &dir.path().join("config/callguard/callguard.toml"),
        "[agent]\nextension = \"1001\"\nname = \"佐藤 花子（第二営業部）\"\n",
    );
    let out = callguard(dir.path(), &["config", "check", "--origin"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let columns: Vec<(usize, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let at = l.rfind("  # ").unwrap_or_else(|| panic!("no origin: {l}"));
            (l[..at].width(), l)
        })
        .collect();
    let name = columns
        .iter()
        .find(|(_, l)| l.starts_with("agent.name = \"佐藤"))
        .unwrap_or_else(|| panic!("no agent.name in\n{text}"));
    let pbx = columns
        .iter()
        .find(|(_, l)| l.starts_with("pbx.url"))
        .unwrap();
    assert_eq!(name.0, pbx.0, "misaligned:\n{}\n{}", name.1, pbx.1);
    // Lines shorter than the cap all end their value column at the same place.
    let widths: std::collections::BTreeSet<usize> = columns
        .iter()
        .filter(|(w, _)| *w <= 72)
        .map(|(w, _)| *w)
        .collect();
    assert_eq!(widths.len(), 1, "{text}");
}
