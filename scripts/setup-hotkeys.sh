#!/usr/bin/env bash
# Binds callguard's hotkeys for the logged-in user (run it as the agent, in their session):
#   Super+0 callguard escalate, Super+1 … Super+8 callguard mark abuse … symptom.
#   scripts/setup-hotkeys.sh [--dry-run] [--remove] [--desktop gnome|kde]
# GNOME: custom keybindings through gsettings, kept next to the user's own.
# KDE Plasma (5.25+ and 6): one .desktop file per command in ~/.local/share/applications and its
# shortcut in kglobalshortcutsrc (kwriteconfig6 or kwriteconfig5); Plasma reads them at the next
# login (or at once after `systemctl --user restart plasma-kglobalaccel` where that unit exists).
# `callguard keys` prints the same table; a test keeps the two equal.
set -euo pipefail

# keys|command|name — the table of `callguard keys` (src/tray/keys.rs).
BINDINGS=(
  "<Super>0|callguard escalate|上長を呼ぶ"
  "<Super>1|callguard mark abuse|記録：暴言・人格否定"
  "<Super>2|callguard mark threat|記録：脅迫"
  "<Super>3|callguard mark demand|記録：著しく不当な要求"
  "<Super>4|callguard mark manager|記録：責任者を出せ"
  "<Super>5|callguard mark repeat|記録：同じ要求の繰り返し"
  "<Super>6|callguard mark sexual|記録：性的言動"
  "<Super>7|callguard mark violence|記録：暴力"
  "<Super>8|callguard mark symptom|記録：担当者の身体症状"
)

dry=0 remove=0 desktop=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --remove) remove=1 ;;
    --desktop) desktop=${2:-}; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup-hotkeys: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$desktop" ]]; then
  case "${XDG_CURRENT_DESKTOP:-}" in
    *GNOME*|*Unity*|*ubuntu*) desktop=gnome ;;
    *KDE*) desktop=kde ;;
    *) echo "setup-hotkeys: cannot tell the desktop (XDG_CURRENT_DESKTOP='${XDG_CURRENT_DESKTOP:-}'); give --desktop gnome or --desktop kde" >&2
       exit 2 ;;
  esac
fi

run() {
  if [[ $dry -eq 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

slug() { # "callguard mark abuse" → callguard-mark-abuse
  echo "${1// /-}"
}

gnome() {
  local schema=org.gnome.settings-daemon.plugins.media-keys
  local base=/org/gnome/settings-daemon/plugins/media-keys/custom-keybindings
  local current ours=() kept=() path entry
  current=$(gsettings get "$schema" custom-keybindings 2>/dev/null || echo "@as []")
  # The user's own bindings stay; ours are replaced (or removed).
  while read -r path; do
    [[ -z "$path" || "$path" == "$base/callguard-"* ]] || kept+=("'$path'")
  done < <(echo "$current" | sed -e 's/^@as //' | tr -d "[]' " | tr ',' '\n')
  if [[ $remove -eq 0 ]]; then
    for entry in "${BINDINGS[@]}"; do
      IFS='|' read -r keys command name <<<"$entry"
      path="$base/$(slug "$command")/"
      ours+=("'$path'")
      run gsettings set "$schema.custom-keybinding:$path" name "callguard: $name"
      run gsettings set "$schema.custom-keybinding:$path" command "$command"
      run gsettings set "$schema.custom-keybinding:$path" binding "$keys"
    done
  fi
  local all=("${kept[@]}" "${ours[@]}")
  local list
  list=$(IFS=,; echo "[${all[*]}]")
  run gsettings set "$schema" custom-keybindings "$list"
}

kde() {
  local write
  write=$(command -v kwriteconfig6 || command -v kwriteconfig5 || true)
  if [[ -z "$write" && $dry -eq 0 ]]; then
    echo "setup-hotkeys: kwriteconfig6/kwriteconfig5 not found (Plasma's kconfig tools)" >&2
    exit 1
  fi
  write=${write:-kwriteconfig6}
  local apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
  for entry in "${BINDINGS[@]}"; do
    IFS='|' read -r keys command name <<<"$entry"
    local file
    file="net.local.$(slug "$command").desktop"
    local kde_keys=${keys/<Super>/Meta+}
    if [[ $remove -eq 1 ]]; then
      run rm -f "$apps/$file"
      run "$write" --file kglobalshortcutsrc --group services --group "$file" --key _launch --delete
      continue
    fi
    if [[ $dry -eq 1 ]]; then
      echo "write $apps/$file: Exec=$command"
    else
      mkdir -p "$apps"
      printf '[Desktop Entry]\nType=Application\nName=callguard: %s\nExec=%s\nNoDisplay=true\nX-KDE-GlobalAccel-CommandShortcut=true\n' \
        "$name" "$command" >"$apps/$file"
    fi
    run "$write" --file kglobalshortcutsrc --group services --group "$file" --key _launch "$kde_keys"
  done
  if [[ $dry -eq 0 ]] && systemctl --user cat plasma-kglobalaccel.service >/dev/null 2>&1; then
    systemctl --user restart plasma-kglobalaccel.service || true
  fi
}

case "$desktop" in
  gnome) gnome ;;
  kde) kde ;;
  *) echo "setup-hotkeys: --desktop must be gnome or kde" >&2; exit 2 ;;
esac
if [[ $dry -eq 0 ]]; then
  if [[ $remove -eq 1 ]]; then echo "callguard hotkeys removed"; else echo "callguard hotkeys set; \`callguard keys\` lists them"; fi
fi
