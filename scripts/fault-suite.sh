#!/usr/bin/env bash
# The fault suite: PBX drops, kill -9 mid-call, mutated frames, against the real callguard binary
# on loopback only (a fake PBX on 127.0.0.1:0, temp dirs; nothing else is touched). Bounded in
# time: about 40 s of drops, 4 s per kill, FUZZ_SECS of frames, under an overall timeout.
#
#   scripts/fault-suite.sh                 # the README's figures (release build)
#   KILLS=5 FUZZ_SECS=10 scripts/fault-suite.sh   # a quick pass
#
# Environment: PROFILE (release), DROP_DAEMONS (20) × DROPS_EACH (5) drops, KILLS (20),
# FUZZ_SECS (60), FUZZ_RATE (1000 frames/s), SEED, JSON (a file for the figures as JSON),
# TIMEOUT (900 s), KEEP=1 (keep the logs and evidence). Prints a Markdown table; exits non-zero if a warning was missed or repeated,
# a call was not sealed, verify failed, or the daemon crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
case "$profile" in
  dev | debug) dir=debug; flag=() ;;
  *) dir=$profile; flag=(--profile "$profile") ;;
esac
cargo build "${flag[@]}" --bin callguard
# The driver's speed does not matter: a debug build spares compiling the dev-dependencies twice.
cargo build --example fault_suite

args=(--bin "target/$dir/callguard"
  --drop-daemons "${DROP_DAEMONS:-20}" --drops-each "${DROPS_EACH:-5}"
  --kills "${KILLS:-20}" --fuzz-secs "${FUZZ_SECS:-60}" --fuzz-rate "${FUZZ_RATE:-1000}")
[[ -n "${SEED:-}" ]] && args+=(--seed "$SEED")
[[ -n "${JSON:-}" ]] && args+=(--json "$JSON")
[[ -n "${KEEP:-}" ]] && args+=(--keep)
exec timeout --kill-after=10 "${TIMEOUT:-900}" target/debug/examples/fault_suite "${args[@]}"
