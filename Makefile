# callguard — the two commands of the README are `make demo` and `make test`.
# Both check (and on Debian, as root, install) the system packages they need.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages. To build and run (`make demo`): ALSA headers for rodio/cpal, pkg-config for
# the -sys crates, a session D-Bus.
BUILD_PACKAGES := libasound2-dev pkg-config dbus dbus-daemon
# To test (`make test`): gsettings + GNOME's media-keys schema and kwriteconfig5 for the hotkey
# set-up test; nats-server for the floor bus; PostgreSQL (a temp cluster per test) and headless
# Chromium for the floor board; the Japanese font embedded in report PDFs (IPA Gothic) and
# pdftotext/pdftoppm for the report tests.
TEST_PACKAGES := libglib2.0-bin gnome-settings-daemon-common libkf5config-bin nats-server \
	postgresql chromium chromium-driver fonts-ipafont-gothic poppler-utils

.PHONY: demo demo-floor test deps test-deps check lint bench sounds clean deb s3-tools

demo: deps
	$(CARGO) run --quiet -- demo

# The floor board with simulated workstations (README "The floor board").
demo-floor: deps
	@scripts/ensure-deps.sh nats-server
	$(CARGO) run --quiet -- demo --floor

test: test-deps s3-tools
	$(CARGO) test --no-fail-fast

# Format and lint gate (CI runs it after the tests).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: test-deps
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
	@scripts/ensure-deps.sh $(BUILD_PACKAGES)

test-deps:
	@scripts/ensure-deps.sh $(BUILD_PACKAGES) $(TEST_PACKAGES)

# The S3 server of the archive tests (s3s-fs), built once per machine into
# $(HOME)/.cache/callguard-tools/s3s-fs; skipped when it is already there.
s3-tools:
	@scripts/ensure-s3s-fs.sh

clean:
	$(CARGO) clean
