//! `callguard config check` as an administrator uses it: the real binary, real files, real env.

use std::process::Command;

fn callguard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_callguard"));
    c.env_remove("CALLGUARD_CONFIG");
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLGUARD__") {
            c.env_remove(k);
        }
    }
    c
}

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/callguard.toml")
}

#[test]
fn the_documented_example_is_valid_and_printed() {
    let out = callguard()
        .args(["config", "check", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "[pbx]",
        "kind = \"generic\"",
        "[[warning]]",
        "after = \"15m\"",
        "after = \"30m\"",
        "[evidence]",
        "min_free_mb = 500",
    ] {
        assert!(text.contains(key), "missing {key} in\n{text}");
    }
}

#[test]
fn env_overrides_any_key_and_secrets_are_masked() {
    let out = callguard()
        .args(["config", "check", "--config"])
        .arg(example())
        .env("CALLGUARD__AGENT__EXTENSION", "0101")
        .env("CALLGUARD__PBX__PASSWORD", "s3cret-pw")
        .env("CALLGUARD__LANGUAGE", "en")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("extension = \"0101\""),
        "leading zeros kept: {text}"
    );
    assert!(text.contains("language = \"en\""), "{text}");
    assert!(!text.contains("s3cret-pw"), "password shown:\n{text}");
    assert!(text.contains("password = \"********\""), "{text}");
}

#[test]
fn invalid_values_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[pbx]\nurl = \"http://pbx:8765/\"\n", "pbx.url"),
        (
            "[evidence]\nmin_free_mb = \"lots\"\n",
            "evidence.min_free_mb",
        ),
        (
            "[[warning]]\nafter = \"30m\"\nkind = \"terminate\"\n[[warning]]\nafter = \"15m\"\nkind = \"escalate\"\n",
            "warning[1].after",
        ),
        (
            "[[warning]]\nafter = \"soon\"\nkind = \"escalate\"\n",
            "after",
        ),
        ("[[warning]]\nafter = \"15m\"\nkind = \"shout\"\n", "shout"),
        ("[pbx]\nurll = \"ws://x\"\n", "urll"),
        ("language = \"fr\"\n", "fr"),
        ("[pbx\nurl=", "callguard.toml"),
    ];
    for (text, key) in cases {
        let path = dir.path().join("callguard.toml");
        std::fs::write(&path, text).unwrap();
        let out = callguard()
            .args(["config", "check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?} → {err}");
        assert!(
            err.contains(key),
            "{text:?}: message does not name `{key}`: {err}"
        );
    }
    let out = callguard()
        .args(["config", "check", "--config", "/nonexistent/callguard.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/callguard.toml"));
}

#[test]
fn bad_command_line_is_a_usage_error() {
    let out = callguard()
        .args(["run", "--time-scale", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = callguard().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
