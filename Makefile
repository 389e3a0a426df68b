# Set-up is part of every target: a fresh Debian machine needs only `make run` or `make test`.
# Each step is idempotent: apt-get runs only for packages that are missing, and the
# virtual environment is rebuilt only when setup.cfg changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PortAudio headers and a compiler for PyAudio; PulseAudio for the virtual
# microphone in tests and the demo; espeak-ng for synthetic voices; sox to inspect audio.
APT_PACKAGES := gcc python3-dev python3-venv portaudio19-dev libsndfile1 \
                pulseaudio pulseaudio-utils espeak-ng sox
FIXTURES := ../shared/data/fixtures

.PHONY: run test lint bench sysdeps clean

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

$(STAMP): setup.cfg pyproject.toml | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Until the daemon lands, `make run` is the offline demo on the shared fixtures.
run: $(STAMP)
	@if [ ! -f $(FIXTURES)/manifest.csv ]; then \
	  echo "make run: no $(FIXTURES); see README for vggvox-client offline"; exit 1; fi
	@tmp=$$(mktemp -d); \
	tail -n +2 $(FIXTURES)/manifest.csv | awk -F, '!seen[$$2]++ {print $$1, $$2}' > $$tmp/enroll_list.csv; \
	tail -n +2 $(FIXTURES)/manifest.csv | awk -F, 'seen[$$2]++ {print $$1, $$2}' > $$tmp/test_list.csv; \
	$(BIN)/vggvox-client offline --enroll-list $$tmp/enroll_list.csv --test-list $$tmp/test_list.csv \
	  --root $(FIXTURES) --out $$tmp/results.csv && column -s, -t < $$tmp/results.csv | cut -c1-150; \
	rm -rf $$tmp

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_embed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
