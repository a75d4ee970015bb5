//! `callguard demo` as a newcomer runs it: the real binary, its simulator and timeline.

use std::process::Command;

#[test]
fn the_demo_plays_a_call_through_every_step_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["demo", "--time-scale", "600"])
        .env_remove("CALLGUARD_CONFIG")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "PBX connected",
        "call demo-0001 started",
        "recording notice",
        "agent: callguard mark manager",
        "rule manager#2:escalate",
        "team lead's webhook received a `mark` ping (level 3",
        "15-minute warning (escalate)",
        "30-minute warning (terminate)",
        "30分以上お話しいただいておりますが",
        "call demo-0001 ended (normal) after 32分",
        "incident record",
        "\nOK ",
        "demo finished",
    ] {
        assert!(
            text.contains(needle),
            "`{needle}` missing from the demo's timeline:\n{text}"
        );
    }
    assert_eq!(text.matches("-minute warning (").count(), 2, "{text}");
}
