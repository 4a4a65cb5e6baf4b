# The two Quick start commands. Both work on a fresh Debian / Raspberry Pi OS machine.
#   make run    install the package (and jackd2 where no MIDI backend exists) and play the default processor
#   make test   install what the tests need (jackd2, torch CPU, the dev extra) and run them
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PYTHON ?= python3
PIP := $(PYTHON) -m pip install -q

.PHONY: run test install jackd

jackd:
	@command -v jackd >/dev/null 2>&1 || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jackd2 >/dev/null; }

install:
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'

run: install
	@[ -e /dev/snd/seq ] || [ "$$(uname)" = Darwin ] || $(MAKE) --no-print-directory jackd
	$(PYTHON) -m daemon run --headless

test: jackd install
	$(PYTHON) -m pytest -q
