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

/// `config check --config FILE` run from `cwd`: (exit code, stderr, stdout).
fn check_in(cwd: &std::path::Path, file: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = callguard();
    cmd.current_dir(cwd)
        .args(["config", "check", "--config", file]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn errors_name_the_absolute_file_line_full_key_value_and_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let file = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("agent.toml");
    let file = file.display();
    let cases = [
        (
            "[pbx]\nkind = \"asterix\"\n",
            format!("{file}, line 2: pbx.kind = \"asterix\": expected one of: generic, asterisk"),
        ),
        (
            "[[marks.rule]]\nmark = \"shouting\"\ncount = 1\naction = \"escalate\"\n",
            format!(
                "{file}, line 2: marks.rule[0].mark = \"shouting\": expected one of: abuse, threat,"
            ),
        ),
        (
            "[pbx]\nurll = \"ws://x/\"\n",
            format!(
                "{file}, line 2: pbx.urll = \"ws://x/\": unknown key; expected one of: kind, url,"
            ),
        ),
        (
            "[escalation]\nretry_for = \"a day or so\"\n",
            format!(
                "{file}, line 2: escalation.retry_for = \"a day or so\": \
                 expected a duration like 15m, 90s, 1h30m"
            ),
        ),
        (
            "[[warning]]\nafter = \"15 minutes\"\nkind = \"escalate\"\n\
             [[warning]]\nafter = \"10x\"\nkind = \"terminate\"\n",
            format!(
                "{file}, line 5: warning[1].after = \"10x\": expected a duration like 15m, 90s, 1h30m"
            ),
        ),
        (
            "[evidence]\nmin_free_mb = \"lots\"\n",
            format!("{file}, line 2: evidence.min_free_mb = \"lots\": expected a whole number"),
        ),
        (
            "[pbx]\nurl = \"http://pbx:8765/\"\n",
            format!("{file}: pbx.url = \"http://pbx:8765/\": scheme `http` is not supported"),
        ),
    ];
    for (text, want) in cases {
        std::fs::write(dir.path().join("agent.toml"), text).unwrap();
        // A relative --config, from a sub folder: the message still gives the absolute path.
        let (code, err, _) = check_in(&sub, "../agent.toml", &[]);
        assert_eq!(code, 2, "{text:?} → {err}");
        assert!(
            err.contains(&format!("callguard: configuration error: {want}")),
            "{text:?}:\n want {want}\n got  {err}"
        );
        assert!(!err.contains(".."), "relative path in {err}");
        assert!(!err.contains("variant constructor"), "{err}");
    }
}

#[test]
fn a_bad_override_names_its_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "").unwrap();
    let (code, err, _) = check_in(dir.path(), "c.toml", &[("CALLGUARD__PBX__KIND", "asterix")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "environment variable CALLGUARD__PBX__KIND: pbx.kind = \"asterix\": \
             expected one of: generic, asterisk"
        ),
        "{err}"
    );
    let (code, err, _) = check_in(
        dir.path(),
        "c.toml",
        &[("CALLGUARD__ESCALATION__RETRY_FOR", "soon")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "environment variable CALLGUARD__ESCALATION__RETRY_FOR: escalation.retry_for = \"soon\": \
             expected a duration like 15m, 90s, 1h30m"
        ),
        "{err}"
    );
    let (code, err, _) = check_in(dir.path(), "c.toml", &[("CALLGUARD__PBX_URL", "ws://x/")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environment variable CALLGUARD__PBX_URL: pbx_url")
            && err.contains("did you mean CALLGUARD__PBX__URL?"),
        "{err}"
    );
}

#[test]
fn a_misspelt_override_is_warned_about_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "").unwrap();
    let (code, err, out) = check_in(
        dir.path(),
        "c.toml",
        &[
            ("CALLGUARD_PBX_URL", "ws://pbx-typo:8765/"),
            ("CALLGUARD_EVIDENCE_DIRR", "/srv"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "callguard: warning: CALLGUARD_PBX_URL is ignored: overrides use double underscores, \
             CALLGUARD__SECTION__KEY; did you mean CALLGUARD__PBX__URL?"
        ),
        "{err}"
    );
    assert!(
        err.contains("callguard: warning: CALLGUARD_EVIDENCE_DIRR is ignored"),
        "{err}"
    );
    assert!(!out.contains("pbx-typo"), "{out}");
    // The variables callguard does read with one underscore are not warned about.
    let (code, err, _) = check_in(
        dir.path(),
        "c.toml",
        &[("CALLGUARD_SYSTEM_DIR", "/nonexistent")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn durations_print_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[escalation]\nretry_for = \"24h\"\nretry_max = \"1h30m\"\n\
         [[warning]]\nafter = \"15m\"\nkind = \"escalate\"\n\
         [[warning]]\nafter = \"1h 5m\"\nkind = \"terminate\"\n",
    )
    .unwrap();
    let (code, err, out) = check_in(dir.path(), "c.toml", &[]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "retry_for = \"24h\"",
        "retry_max = \"1h30m\"",
        "after = \"15m\"",
        "after = \"1h5m\"",
    ] {
        assert!(out.contains(want), "no {want} in\n{out}");
    }
    // No duration printed in days ("1day"); keys such as `retention_days` are not durations.
    assert!(!out.contains("day\""), "{out}");
}
