#!/usr/bin/env bash
# Installs the S3 server the archive tests run against (s3s-fs, a small S3 implementation on a
# local folder) once per machine into a cache; later runs find it there and skip the build.
set -euo pipefail

version="${S3S_FS_VERSION:-0.14.1}"
root="${CALLGUARD_TOOLS:-$HOME/.cache/callguard-tools}/s3s-fs"
bin="$root/bin/s3s-fs"

if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "$version"; then
  exit 0
fi
echo "callguard: building s3s-fs $version for the archive tests (once per machine, ~4 minutes) into $root ..." >&2
cargo install --locked --quiet s3s-fs --version "=$version" --features binary --root "$root"
echo "callguard: s3s-fs installed: $bin" >&2
