#!/usr/bin/env bash
# Makes sure the system packages callguard builds and tests with are present.
# Installs the missing ones with apt-get when it can (root, or sudo without a password);
# otherwise says exactly what to run.
set -euo pipefail

command -v cargo >/dev/null || {
  echo "callguard: the Rust toolchain (cargo) is missing: install it from rustup first." >&2
  exit 1
}

missing=()
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "callguard: missing system packages: ${missing[*]} (this is not a Debian system: install their equivalents)." >&2
  exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "callguard: missing system packages: ${missing[*]}" >&2
  echo "          install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "callguard: installing ${missing[*]} …" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2 || true
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  echo "callguard: could not install ${missing[*]}; install them by hand: apt-get install ${missing[*]}" >&2
  exit 1
fi
