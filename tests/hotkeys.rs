//! `scripts/setup-hotkeys.sh` against the real desktop configuration tools, in a temporary
//! home: GNOME's `gsettings` (keyfile backend, with the real media-keys schema) and KDE's
//! `kwriteconfig5` / `kreadconfig5`; and `callguard keys` listing the same bindings.

use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup-hotkeys.sh");
const SCHEMA: &str = "org.gnome.settings-daemon.plugins.media-keys";
const BASE: &str = "/org/gnome/settings-daemon/plugins/media-keys/custom-keybindings";

fn tool(name: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is needed for this test (apt-get install {package}; `make test` installs it)"
    );
}

fn gsettings(config: &Path, args: &[&str]) -> String {
    let out = Command::new("gsettings")
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("GSETTINGS_BACKEND", "keyfile")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gsettings {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn script(home: &Path, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("GSETTINGS_BACKEND", "keyfile")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup-hotkeys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn gnome_gets_custom_keybindings_next_to_the_users_own() {
    tool("gsettings", "libglib2.0-bin gnome-settings-daemon-common");
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".config");
    // The agent already has a binding of their own.
    let own = "/org/gnome/settings-daemon/plugins/media-keys/custom-keybindings/custom0/";
    gsettings(
        &config,
        &["set", SCHEMA, "custom-keybindings", &format!("['{own}']")],
    );
    script(home.path(), &["--desktop", "gnome"]);
    // Twice: nothing doubles.
    script(home.path(), &["--desktop", "gnome"]);
    let list = gsettings(&config, &["get", SCHEMA, "custom-keybindings"]);
    assert!(
        list.starts_with(&format!("['{own}', '{BASE}/callguard-escalate/'")),
        "{list}"
    );
    assert_eq!(list.matches("callguard-").count(), 9, "{list}");
    let one = format!("{SCHEMA}.custom-keybinding:{BASE}/callguard-mark-abuse/");
    assert_eq!(gsettings(&config, &["get", &one, "binding"]), "'<Super>1'");
    assert_eq!(
        gsettings(&config, &["get", &one, "command"]),
        "'callguard mark abuse'"
    );
    script(home.path(), &["--desktop", "gnome", "--remove"]);
    assert_eq!(
        gsettings(&config, &["get", SCHEMA, "custom-keybindings"]),
        format!("['{own}']")
    );
}

#[test]
fn kde_gets_a_launcher_and_a_global_shortcut_per_command() {
    tool("kwriteconfig5", "libkf5config-bin");
    let home = tempfile::tempdir().unwrap();
    script(home.path(), &["--desktop", "kde"]);
    let apps = home.path().join(".local/share/applications");
    let desktop =
        std::fs::read_to_string(apps.join("net.local.callguard-escalate.desktop")).unwrap();
    assert!(desktop.contains("Exec=callguard escalate\n"), "{desktop}");
    let read = |file: &str| {
        let out = Command::new("kreadconfig5")
            .args([
                "--file",
                "kglobalshortcutsrc",
                "--group",
                "services",
                "--group",
            ])
            .arg(file)
            .args(["--key", "_launch"])
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read("net.local.callguard-escalate.desktop"), "Meta+0");
    assert_eq!(read("net.local.callguard-mark-symptom.desktop"), "Meta+8");
    script(home.path(), &["--desktop", "kde", "--remove"]);
    assert!(!apps.join("net.local.callguard-escalate.desktop").exists());
    assert_eq!(read("net.local.callguard-escalate.desktop"), "");
}

#[test]
fn callguard_keys_prints_the_cheat_sheet_in_the_configured_language() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callguard.toml");
    std::fs::write(&config, "[pbx]\nurl = \"ws://127.0.0.1:9/\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["keys", "--config"])
        .arg(&config)
        .env_remove("CALLGUARD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("callguard のショートカット"), "{text}");
    assert!(text.contains("Super+0   上長を呼ぶ"), "{text}");
    assert!(text.contains("callguard mark symptom"), "{text}");
}
