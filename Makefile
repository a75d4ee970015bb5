# callguard — the two commands of the README are `make demo` and `make test`.
# Both check (and on Debian, as root, install) the system packages they need.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages: ALSA headers for rodio/cpal, a session D-Bus for the notification tests,
# pkg-config for the -sys crates, nats-server for the floor-bus tests.
DEB_PACKAGES := libasound2-dev pkg-config dbus dbus-daemon nats-server
# The floor board's tests: PostgreSQL (a temp cluster per test) and headless Chromium.
DEB_PACKAGES += postgresql chromium chromium-driver
# Floor reports: the Japanese font embedded in PDFs (IPA Gothic), pdftotext/pdftoppm for the
# report tests.
REPORT_PACKAGES := fonts-ipafont-gothic poppler-utils

.PHONY: demo demo-floor test deps check lint bench sounds clean deb

demo: deps
	$(CARGO) run --quiet -- demo

# The floor board with simulated workstations (README "The floor board").
demo-floor: deps
	$(CARGO) run --quiet -- demo --floor

test: deps
	$(CARGO) test --no-fail-fast

# Format and lint gate (CI runs it after the tests).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: deps
	$(CARGO) bench

sounds:
	sounds/make-sounds.sh

# The .deb for IT (README "Deploy"), checked by scripts/check-deb.sh (contents, then a dpkg
# install, reinstall, remove and purge in a scratch root). DEB_PROFILE=deb-ci builds faster.
DEB_PROFILE ?= release
deb: deps
	@scripts/ensure-deps.sh dpkg-dev
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	@rm -f target/debian/callguard_*.deb
	$(CARGO) deb --profile $(DEB_PROFILE) --output target/debian/
	scripts/check-deb.sh target/debian/callguard_*.deb

deps:
	@scripts/ensure-deps.sh $(DEB_PACKAGES) $(REPORT_PACKAGES)

clean:
	$(CARGO) clean
