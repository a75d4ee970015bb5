# callguard — the two commands of the README are `make demo` and `make test`.
# Both check (and on Debian, as root, install) the system packages they need.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages: ALSA headers for rodio/cpal, a session D-Bus for the notification tests,
# pkg-config for the -sys crates; gsettings + GNOME's media-keys schema and kwriteconfig5 for the
# hotkey set-up test; nats-server for the floor-bus tests.
DEB_PACKAGES := libasound2-dev pkg-config dbus dbus-daemon libglib2.0-bin gnome-settings-daemon-common libkf5config-bin nats-server
# The floor board's tests: PostgreSQL (a temp cluster per test) and headless Chromium.
DEB_PACKAGES += postgresql chromium chromium-driver
# Floor reports: the Japanese font embedded in PDFs (IPA Gothic), pdftotext/pdftoppm for the
# report tests.
REPORT_PACKAGES := fonts-ipafont-gothic poppler-utils

.PHONY: demo demo-floor test deps check lint bench sounds clean deb s3-tools

demo: deps
	$(CARGO) run --quiet -- demo

# The floor board with simulated workstations (README "The floor board").
demo-floor: deps
	$(CARGO) run --quiet -- demo --floor

test: deps s3-tools
	$(CARGO) test --no-fail-fast

# Format and lint gate (CI runs it after the tests).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: deps
	$(CARGO) bench

sounds:
	sounds/make-sounds.sh

# The .deb for IT (README "Deploy", "Packaging"), checked by scripts/check-deb.sh (contents,
# lintian, then a dpkg install, reinstall, remove and purge in a scratch root).
# DEB_PROFILE=deb-ci builds faster. Man pages and completions are generated from the command
# line's definitions first (examples/gen-assets.rs). cargo-deb is installed once per machine
# under CARGO_TOOLS when it is not on PATH.
DEB_PROFILE ?= release
CARGO_TOOLS ?= $(HOME)/.cache/callguard-tools
deb: deps
	@scripts/ensure-deps.sh dpkg-dev lintian init-system-helpers
	@command -v cargo-deb >/dev/null || [ -x "$(CARGO_TOOLS)/bin/cargo-deb" ] || \
		$(CARGO) install cargo-deb --locked --root "$(CARGO_TOOLS)"
	@rm -f target/debian/callguard_*.deb
	$(CARGO) run --quiet --example gen-assets -- target/assets
	PATH="$(CARGO_TOOLS)/bin:$$PATH" $(CARGO) deb --profile $(DEB_PROFILE) --output target/debian/
	scripts/check-deb.sh target/debian/callguard_*.deb

deps:
	@scripts/ensure-deps.sh $(DEB_PACKAGES) $(REPORT_PACKAGES)

# The S3 server of the archive tests (s3s-fs), built once per machine into
# $(HOME)/.cache/callguard-tools/s3s-fs; skipped when it is already there.
s3-tools:
	@scripts/ensure-s3s-fs.sh

clean:
	$(CARGO) clean
