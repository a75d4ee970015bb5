#!/usr/bin/env bash
# Rebuilds the prompts in this folder from text, reproducibly, with Debian's espeak-ng and sox.
# Usage: sounds/make-sounds.sh   (apt-get install espeak-ng sox)
set -euo pipefail
cd "$(dirname "$0")"
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-sounds: $tool is missing: apt-get install espeak-ng sox" >&2; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Japanese is given in kana so the synthesizer reads it as the standard phrase is spoken:
# 「対応品質向上のため、通話を録音させていただいております」
espeak-ng -v ja -s 150 -w "$tmp/ja.wav" "たいおうひんしつこうじょうのため、つうわを、ろくおんさせていただいております。"
espeak-ng -v en-us -s 150 -w "$tmp/en.wav" "This call is recorded to improve the quality of our service."

# 16 kHz mono 16-bit PCM, normalized, with 0.2 s of silence each side; no dither, so the output is
# byte-for-byte the same on every run.
for lang in ja en; do
  sox "$tmp/$lang.wav" -D -r 16000 -c 1 -b 16 "recording-notice-$lang.wav" \
    norm -3 pad 0.2 0.2
done

# Chime: two short sine tones (880 Hz then 1320 Hz) with a soft fade, 0.6 s in all.
sox -D -n -r 16000 -c 1 -b 16 "$tmp/a.wav" synth 0.25 sine 880 fade q 0.01 0.25 0.08 vol 0.5
sox -D -n -r 16000 -c 1 -b 16 "$tmp/b.wav" synth 0.35 sine 1320 fade q 0.01 0.35 0.15 vol 0.5
sox -D "$tmp/a.wav" "$tmp/b.wav" chime.wav

for f in recording-notice-ja.wav recording-notice-en.wav chime.wav; do
  printf '%s  %s\n' "$(sha256sum "$f" | cut -c1-64)" "$f"
done
