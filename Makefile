# Set-up is part of every target: a fresh Debian machine needs only `make run` or `make test`.
# Each step is idempotent: apt-get runs only for packages that are missing, and the
# virtual environment is rebuilt only when setup.cfg changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PortAudio headers and a compiler for PyAudio; PulseAudio for the virtual
# microphone in tests and the demo (libasound2-plugins: ALSA's pulse device); espeak-ng for
# synthetic voices; sox to inspect audio; for the bridges' tests, mosquitto (MQTT), tmux (watch)
# and chromium with chromium-driver (the web page).
APT_PACKAGES := gcc python3-dev python3-venv portaudio19-dev libsndfile1 libasound2-plugins \
                pulseaudio pulseaudio-utils espeak-ng sox mosquitto tmux chromium chromium-driver
UNIT := /etc/systemd/system/vggvoxd.service

.PHONY: help run demo test lint bench sysdeps install-service clean
.DEFAULT_GOAL := help

# `make` alone prints this: each target's "## " line.
help:
	@echo "vggvox: real-time speaker identification. Targets (each sets itself up):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24
	@echo "Then: .venv/bin/vggvox-client --help (or: . .venv/bin/activate)"

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

# The daemon on the default microphone, in the foreground (Ctrl-C stops it).
# With no input device it says so and keeps waiting for one.
run: $(STAMP)  ## the daemon on the default microphone (Ctrl-C stops it)
	$(BIN)/vggvoxd

# A newcomer's tour on a machine without a microphone: virtual microphone,
# two synthetic voices, a conversation, live events; cleans up after itself.
demo: $(STAMP)  ## a tour without a microphone: virtual mic, two voices, live events
	$(BIN)/python -m vggvox_client.demo

# Install the systemd unit for this checkout (clone it to /opt/vggvox: the
# unit's sandbox hides /home and /root).
install-service: $(STAMP)  ## install the systemd unit, its config and the vggvox group
	install -m 0644 systemd/vggvox.sysusers /etc/sysusers.d/vggvox.conf
	systemd-sysusers /etc/sysusers.d/vggvox.conf
	sed 's|/opt/vggvox|$(CURDIR)|g' systemd/vggvoxd.service > $(UNIT)
	sed 's|/opt/vggvox|$(CURDIR)|g' systemd/vggvox-mqtt.service > /etc/systemd/system/vggvox-mqtt.service
	sed 's|/opt/vggvox|$(CURDIR)|g' systemd/vggvox-web.service > /etc/systemd/system/vggvox-web.service
	install -d /etc/vggvox
	[ -f /etc/vggvox/vggvoxd.yaml ] || install -m 0644 config/vggvoxd.yaml /etc/vggvox/vggvoxd.yaml
	systemctl daemon-reload
	@echo "now: systemctl enable --now vggvoxd; journalctl -u vggvoxd -f"
	@echo "MQTT bridge (Home Assistant): write /etc/vggvox/mqtt.env (see systemd/vggvox-mqtt.service),"
	@echo "  then systemctl enable --now vggvox-mqtt; web page: /etc/vggvox/web.env, vggvox-web"
	@echo "let a user use vggvox-client: usermod -aG vggvox USER (then log in again)"

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy vggvox daemon clients

test: $(STAMP) lint  ## lint, then the test suite
	$(BIN)/pytest

bench: $(STAMP)  ## embedding speed benchmark
	$(BIN)/python bench/bench_embed.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
