# Set-up is part of every target: a fresh Debian machine needs only `make run` or `make test`.
# Each step is idempotent: apt-get runs only for packages that are missing, and the
# virtual environment is rebuilt only when the package's metadata changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What each target installs, and no more: a server that only runs the daemon gets
# no browser, broker or test tools (`make deps` prints these lists).
# The daemon: a compiler and PortAudio's headers for PyAudio, libsndfile, ALSA's pulse plugin.
RUN_APT := gcc python3-dev python3-venv portaudio19-dev libsndfile1 libasound2-plugins
# make demo: PulseAudio for the virtual microphone, espeak-ng for the synthetic voices.
DEMO_APT := $(RUN_APT) pulseaudio pulseaudio-utils espeak-ng
# make test: the demo's, and for the bridges' tests mosquitto (MQTT), tmux (watch), chromium
# with chromium-driver (the web page); sox to inspect audio; systemd-nspawn and debootstrap
# to boot the units under a real systemd (tests/test_service.py); PostgreSQL 15 for the
# shared store's tests (each test starts its own server); iproute2 for the network
# namespaces that the fleet's tests build.
TEST_APT := $(DEMO_APT) sox mosquitto tmux chromium chromium-driver systemd-container debootstrap \
	postgresql iproute2
RUN_PIP := .
TEST_PIP := .[test]
# One stamp per set installed, rebuilt when the package's metadata changes (its version is
# in vggvox/__init__.py).
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
PIP_INPUTS := setup.cfg pyproject.toml constraints.txt vggvox/__init__.py

.PHONY: help deps run demo test lint bench install-service service-paths clean
.DEFAULT_GOAL := help

# `make` alone prints this: each target's "## " line.
help:
	@echo "vggvox: real-time speaker identification. Targets (each sets itself up):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24
	@echo "Then: .venv/bin/vggvox-client --help (or: . .venv/bin/activate)"

# apt-get only for what is missing; sudo only when not root.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

define venv_install
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '$(1)'
endef

$(STAMP_RUN): $(PIP_INPUTS)
	$(call apt_install,$(RUN_APT))
	$(call venv_install,$(RUN_PIP))
	touch $@

$(STAMP_TEST): $(PIP_INPUTS)
	$(call apt_install,$(TEST_APT))
	$(call venv_install,$(TEST_PIP))
	touch $@ $(STAMP_RUN)

deps:  ## what each target installs (apt packages, then pip)
	@echo "run, install-service: apt: $(RUN_APT)"
	@echo "run, install-service: pip: $(RUN_PIP)"
	@echo "demo: apt: $(DEMO_APT)"
	@echo "demo: pip: $(RUN_PIP)"
	@echo "test, lint, bench: apt: $(TEST_APT)"
	@echo "test, lint, bench: pip: $(TEST_PIP)"

# The daemon on the default microphone, in the foreground (Ctrl-C stops it).
# With no input device it says so and keeps waiting for one.
run: $(STAMP_RUN)  ## the daemon on the default microphone (Ctrl-C stops it)
	$(BIN)/vggvoxd

# A newcomer's tour on a machine without a microphone: virtual microphone,
# two synthetic voices, a conversation, live events; cleans up after itself.
demo: $(STAMP_RUN)  ## a tour without a microphone: virtual mic, two voices, live events
	$(call apt_install,$(DEMO_APT))
	$(BIN)/python -m vggvox_client.demo

# Install the systemd units for this checkout (clone it to /opt/vggvox: the units'
# sandbox hides /home and /root, so a checkout or a Python there is refused before
# anything is built or written: systemd/install-service.sh says why and what to do).
install-service: service-paths $(STAMP_RUN)  ## install the systemd units, their config and the vggvox group
	sh systemd/install-service.sh "$(CURDIR)"

service-paths:
	@sh systemd/install-service.sh --check "$(CURDIR)" "$(PYTHON)"

lint: $(STAMP_TEST)  ## ruff, mypy and the layers' import contracts (setup.cfg)
	$(BIN)/ruff check .
	$(BIN)/mypy vggvox daemon/vggvoxd clients/vggvox_client
	$(BIN)/lint-imports

test: $(STAMP_TEST) lint  ## lint, then the test suite
	$(BIN)/pytest

bench: $(STAMP_TEST)  ## embedding speed benchmark
	$(BIN)/python bench/bench_embed.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
