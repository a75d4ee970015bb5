#!/usr/bin/env bash
# Runs the archive benchmark (benches/archive.rs) and prints the figures of the README:
# archiving a sealed 60-minute stereo call (≈115 MB) to a real S3 server (s3s-fs on loopback)
# as a ratio to boto3's upload_file of the same WAV to the same server in the same run
# (target ≤ 1.2), the archiver's CPU while uploading, and the drain rate of a backlog of
# one-minute calls (folders/s, MB/s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-s3s-fs.sh
python3 -c 'import boto3' 2>/dev/null || pip3 install --quiet boto3
# The bench profile is the release profile, so a release build's dependencies are reused.
# ARCHIVE_BENCH_PART_MB / ARCHIVE_BENCH_CONCURRENCY try other settings without a rebuild.
cargo bench --bench archive
