# callguard — the two commands of the README are `make demo` and `make test`.
# Both check (and on Debian, as root, install) the system packages they need.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages: ALSA headers for rodio/cpal, a session D-Bus for the notification tests,
# pkg-config for the -sys crates.
DEB_PACKAGES := libasound2-dev pkg-config dbus dbus-daemon

.PHONY: demo test deps check lint bench sounds clean deb s3-tools

demo: deps
	$(CARGO) run --quiet -- demo

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
	@scripts/ensure-deps.sh $(DEB_PACKAGES)

# The S3 server of the archive tests (s3s-fs), built once per machine into
# $(HOME)/.cache/callguard-tools/s3s-fs; skipped when it is already there.
s3-tools:
	@scripts/ensure-s3s-fs.sh

clean:
	$(CARGO) clean
