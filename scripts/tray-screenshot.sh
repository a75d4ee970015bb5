#!/usr/bin/env bash
# Takes docs/tray.png: the call timer's menu in a real StatusNotifierItem host (xfce4-panel's
# status tray) on a virtual X display, with a call in progress from examples/tray_demo.rs.
#   scripts/tray-screenshot.sh [OUT.png]
# Needs: xvfb xfce4-panel xdotool imagemagick fonts-noto-cjk dbus-x11 x11-utils (installed here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/tray.png}
scripts/ensure-deps.sh xvfb xfce4-panel xdotool imagemagick fonts-noto-cjk dbus-x11 x11-utils
cargo build --quiet --example tray_demo
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

export HOME=$work XDG_CONFIG_HOME=$work/config XDG_CACHE_HOME=$work/cache XDG_RUNTIME_DIR=$work/run
mkdir -p "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml"
chmod 700 "$XDG_RUNTIME_DIR"
# One panel across the top with the status tray (it hosts StatusNotifierItems) and a clock.
cat > "$XDG_CONFIG_HOME/xfce4/xfconf/xfce-perchannel-xml/xfce4-panel.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="30"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
        <value type="int" value="2"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
    <property name="plugin-2" type="string" value="clock"/>
  </property>
</channel>
XML

display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 900x420x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=$display
for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
eval "$(dbus-launch --sh-syntax)"
pids+=("$DBUS_SESSION_BUS_PID")
# Japanese labels in the menu.
export LANG=C.UTF-8 GTK_THEME=Adwaita
xfce4-panel >"$work/panel.log" 2>&1 &
pids+=($!)
# The panel's tray registers org.kde.StatusNotifierWatcher when it is ready.
for _ in $(seq 100); do
    dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner \
        string:org.kde.StatusNotifierWatcher 2>/dev/null | grep -q true && break
    sleep 0.1
done
target/debug/examples/tray_demo >"$work/demo.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q ready "$work/demo.log" && break; sleep 0.1; done
sleep 2   # the panel draws the new item
# The tray item sits at the panel's left end: click it to open its menu, then point at
# 記録する (third row) to open the marks.
xdotool mousemove 15 15 click 1
sleep 2
xdotool mousemove 120 104
sleep 2
mkdir -p "$(dirname "$out")"
import -window root -crop 620x300+0+0 "$out"
echo "wrote $out"
