#!/usr/bin/env bash
# Runs the evidence benchmarks and prints the two figures of the README:
# sealing a 60-minute call as a ratio to sha256sum of the same file (target ≤ 1.3), and how many
# real-time streams one core records (target ≥ 200).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench evidence -- "$@"
est() { jq '.mean.point_estimate' "target/criterion/$1/new/estimates.json"; }
seal=$(est seal/callguard_60min)
sum=$(est seal/sha256sum_60min)
rec=$(est recorder/stream_60s)
full=$(est recorder/parse_and_stream_60s)
awk -v s="$seal" -v h="$sum" -v r="$rec" -v f="$full" 'BEGIN {
  printf "seal 60-min stereo 8 kHz WAV: %.1f ms; sha256sum: %.1f ms; ratio %.2f (target <= 1.3)\n", s/1e6, h/1e6, s/h
  printf "recorder, 60 s of one stream: %.2f ms CPU -> %.0f real-time streams per core (target >= 200)\n", r/1e6, 60e9/r
  printf "with protocol frame parsing: %.2f ms CPU -> %.0f streams per core\n", f/1e6, 60e9/f
}'
