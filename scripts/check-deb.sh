#!/usr/bin/env bash
# Checks a callguard .deb the way IT will meet it:
#   1. its files, modes, conffile, dependencies and maintainer scripts (dpkg-deb -c / -I), then
#      lintian (errors fail the check; every tag is printed);
#   2. a real `dpkg -i` into a scratch root (maintainer scripts included, through $DPKG_ROOT),
#      then the installed binary, its config, the enabled unit (systemd-analyze verify);
#   3. reinstall keeps the admin's edits; remove and purge leave evidence and fleet drop-ins.
# Never touches the host's /usr, /etc or any home. Usage: scripts/check-deb.sh PATH.deb
set -euo pipefail

deb=${1:?usage: scripts/check-deb.sh PATH.deb}
[[ -f "$deb" ]] || { echo "check-deb: no such file: $deb" >&2; exit 2; }
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok: $*"; }

# --- 1. contents ------------------------------------------------------------------------
contents=$(dpkg-deb -c "$deb")
has() { grep -qE "^$1 .* \./$2\$" <<<"$contents" || fail "$2 missing or not mode $1"; }
has '-rwxr-xr-x' 'usr/bin/callguard'
has '-rw-r--r--' 'usr/lib/systemd/user/callguard.service'
has '-rw-r--r--' 'etc/callguard/callguard.toml'
has '-rw-r--r--' 'usr/share/doc/callguard/examples/systemd/hardening.conf'
for s in recording-notice-ja.wav recording-notice-en.wav chime.wav; do
  has '-rw-r--r--' "usr/share/callguard/sounds/$s"
done
has '-rw-r--r--' 'usr/share/doc/callguard/copyright'
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/callguard/copyright | grep -q '^Copyright: 2026 ' ||
  fail "usr/share/doc/callguard/copyright is not deploy/debian/copyright"
has '-rw-r--r--' 'usr/share/doc/callguard/changelog.Debian.gz'
for page in callguard callguard-run callguard-config-check callguard-doctor callguard-verify; do
  has '-rw-r--r--' "usr/share/man/man1/$page.1.gz"
done
has '-rw-r--r--' 'usr/share/bash-completion/completions/callguard'
has '-rw-r--r--' 'usr/share/zsh/vendor-completions/_callguard'
has '-rw-r--r--' 'usr/share/fish/vendor_completions.d/callguard.fish'
if grep -qE ' \./(home|root|var|tmp)/' <<<"$contents"; then
  fail "the package ships files under /home, /root, /var or /tmp"
fi
ok "files and modes ($(grep -c '^-' <<<"$contents") files)"

[[ $(dpkg-deb -f "$deb" Package) == callguard ]] || fail "package name"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in 'libc6' 'libasound2' 'dbus'; do
  grep -qE "(^|[ ,|])$dep([ ,(|]|t64|\$)" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
ok "Depends: $depends"

ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl" "${root:-}" "${rundir:-}"' EXIT
dpkg-deb -e "$deb" "$ctrl"
[[ $(cat "$ctrl/conffiles") == "/etc/callguard/callguard.toml" ]] ||
  fail "conffiles is not exactly /etc/callguard/callguard.toml: $(cat "$ctrl/conffiles")"
for s in postinst postrm; do
  [[ -x "$ctrl/$s" ]] || fail "maintainer script $s missing or not executable"
  sh -n "$ctrl/$s" || fail "$s does not parse"
done
if grep -nE '\.local/share|/home' "$ctrl/postrm" | grep -v '^[^:]*:[0-9]*:[[:space:]]*#'; then
  fail "a removal script refers to users' data"
fi
if grep -nE '^[[:space:]]*([^#]*;[[:space:]]*)?systemctl[[:space:]]' "$ctrl/postinst" "$ctrl/postrm"; then
  fail "a maintainer script calls systemctl itself (Debian policy: deb-systemd-helper)"
fi
ok "conffile and maintainer scripts"

# lintian: errors fail the package; warnings and the rest are shown for the record.
command -v lintian >/dev/null || fail "lintian is missing (make deb installs it: apt-get install lintian)"
lint_rc=0
lint_out=$(lintian --display-info --fail-on error "$deb" 2>&1) || lint_rc=$?
lint_out=$(grep -v 'running with root privileges' <<<"$lint_out" || true)
if [[ $lint_rc -ne 0 ]]; then
  echo "$lint_out" >&2
  fail "lintian reports errors (exit $lint_rc)"
fi
if [[ -n "$lint_out" ]]; then
  echo "$lint_out" | sed 's/^/check-deb: lintian: /'
fi
ok "lintian: no errors ($(grep -c '^[WIP]:' <<<"$lint_out" || true) warnings/notes shown above)"

# --- 2. install into a scratch root -----------------------------------------------------
root=$(mktemp -d)
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root() {
  # The scratch database knows no libc6: dependencies are checked above instead.
  dpkg --root="$root" --force-script-chrootless --force-depends --force-not-root \
    --log=/dev/null "$@" >"$root/dpkg.out" 2>&1 || { cat "$root/dpkg.out" >&2; fail "dpkg $*"; }
}
dpkg_root -i "$deb"
[[ $(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' callguard) == "install ok installed" ]] ||
  fail "dpkg does not list callguard as installed"
bin="$root/usr/bin/callguard"
version=$("$bin" --version) || fail "the installed binary does not run"
ok "installed: $version"
"$bin" config check --config "$root/etc/callguard/callguard.toml" >/dev/null ||
  fail "the shipped configuration does not pass config check"
origin=$(env -u CALLGUARD_CONFIG CALLGUARD_SYSTEM_DIR="$root/etc/callguard" \
  HOME="$root/home/agent" XDG_CONFIG_HOME="$root/home/agent/.config" "$bin" config check --origin)
grep -q "^pbx.url = .*# $root/etc/callguard/callguard.toml\$" <<<"$origin" ||
  fail "config check --origin does not credit the system file: $origin"
ok "shipped configuration is valid and layered"

wants="$root/etc/systemd/user/graphical-session.target.wants/callguard.service"
mask="$root/etc/systemd/user/callguard.service"
[[ -L "$wants" ]] || fail "postinst did not enable the user unit ($wants)"
ok "user unit enabled for graphical sessions (deb-systemd-helper --user)"
if command -v man >/dev/null; then
  man -l "$root/usr/share/man/man1/callguard-config-check.1.gz" 2>/dev/null | grep -q -- '--origin' ||
    fail "man cannot render callguard-config-check.1, or it lacks --origin"
fi
bash -c "source '$root/usr/share/bash-completion/completions/callguard'; complete -p callguard" >/dev/null ||
  fail "the bash completion does not register for callguard"
[[ -d "$root/etc/callguard/conf.d" ]] || fail "postinst did not create /etc/callguard/conf.d"

if command -v systemd-analyze >/dev/null; then
  # verify wants the real ExecStart path: point it at the scratch root's binary.
  rundir=$(mktemp -d)
  mkdir -p "$rundir/unit"
  sed "s#/usr/bin/callguard#$bin#" "$root/usr/lib/systemd/user/callguard.service" \
    >"$rundir/unit/callguard.service"
  out=$(XDG_RUNTIME_DIR="$rundir" systemd-analyze verify --user "$rundir/unit/callguard.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify warns: $out"
  # The opt-in sandbox drop-in, applied the way systemd would merge it.
  mkdir -p "$rundir/unit/callguard.service.d"
  cp "$root/usr/share/doc/callguard/examples/systemd/hardening.conf" "$rundir/unit/callguard.service.d/"
  out=$(XDG_RUNTIME_DIR="$rundir" SYSTEMD_UNIT_PATH="$rundir/unit:" \
    systemd-analyze verify --user callguard.service 2>&1) || fail "systemd-analyze verify (hardening.conf): $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify warns with hardening.conf: $out"
  ok "systemd-analyze verify --user (unit, and with hardening.conf)"
fi

# --- 3. reinstall, remove, purge --------------------------------------------------------
echo '# edited by IT' >>"$root/etc/callguard/callguard.toml"
echo '[agent]' >"$root/etc/callguard/conf.d/90-agent.toml"
evidence="$root/home/agent/.local/share/callguard/evidence/2026/11/22/100000_c-1"
mkdir -p "$evidence"
echo 'RIFF' >"$evidence/call.wav"
dpkg_root -i "$deb"
grep -q '^# edited by IT$' "$root/etc/callguard/callguard.toml" || fail "reinstall lost the admin's edit"
ok "reinstall keeps the edited conffile"
dpkg_root -r callguard
[[ ! -e "$bin" ]] || fail "remove left /usr/bin/callguard"
# As debhelper does for user units: removal masks the unit and keeps its enablement (like a
# conffile), so a reinstall comes back enabled; purge removes both.
[[ $(readlink "$mask") == /dev/null ]] || fail "remove did not mask the user unit ($mask)"
dpkg_root -i "$deb"
[[ ! -e "$mask" && -L "$wants" ]] || fail "reinstall after remove: unit still masked or not enabled"
ok "remove masks the unit; a reinstall unmasks and enables it"
dpkg_root -r callguard
dpkg_root -P callguard
[[ ! -e "$wants" && ! -L "$wants" ]] || fail "purge left the unit enabled ($wants)"
[[ ! -e "$mask" && ! -L "$mask" ]] || fail "purge left the unit masked ($mask)"
[[ -z "$(ls -A "$root/var/lib/systemd/deb-systemd-user-helper-enabled" 2>/dev/null)" ]] ||
  fail "purge left deb-systemd-helper state: $(ls -A "$root/var/lib/systemd/deb-systemd-user-helper-enabled")"
[[ ! -e "$root/etc/callguard/callguard.toml" ]] || fail "purge left the conffile"
[[ -f "$root/etc/callguard/conf.d/90-agent.toml" ]] || fail "purge removed a fleet drop-in"
[[ -f "$evidence/call.wav" ]] || fail "remove/purge touched evidence"
ok "remove and purge: binary, unit links and mask gone, evidence and drop-ins kept"
echo "check-deb: all checks passed for $deb"
