# The two Quick start commands. Both work on a fresh Debian / Raspberry Pi OS machine, whose
# system Python refuses pip installs (PEP 668): everything goes into a virtual environment, .venv.
#   make run    install Genie into .venv (and jackd2 where no MIDI backend exists), play the default processor
#   make test   install what the tests need (jackd2, torch's CPU build, the dev extra) and run them,
#               then the torch-free install's test (make test-onnx)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PYTHON ?= python3
VENV ?= .venv
VENV_ONNX ?= .venv-onnx
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
# PyTorch's CPU-only wheels (a few hundred MB); a plain pin from PyPI is the multi-GB CUDA build.
# Where that index cannot be reached (a machine with PyPI only) the pin comes from PyPI as before.
TORCH := torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: run test test-onnx install jackd venv

jackd:
	@command -v jackd >/dev/null 2>&1 || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jackd2 >/dev/null; }

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3-venv is missing: installing it (Debian / Raspberry Pi OS)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	  $(PYTHON) -m venv $(VENV); }

venv: $(PY)

install: venv
	@if $(PY) -c 'import torch' 2>/dev/null; then :; \
	elif $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  echo "torch: the CPU build from $(TORCH_INDEX)"; \
	  $(PIP) --index-url $(TORCH_INDEX) $(TORCH); \
	else \
	  echo "torch: $(TORCH_INDEX) cannot be reached; the pin from the package index"; \
	  $(PIP) $(TORCH); \
	fi
	$(PIP) -e '.[dev]'
	@mkdir -p $(HOME)/.local/bin && ln -sf $(abspath $(VENV))/bin/genie $(HOME)/.local/bin/genie
	@echo "installed into $(VENV); ~/.local/bin/genie runs it (genie service install sets up a service)"

run: install
	@[ -e /dev/snd/seq ] || [ "$$(uname)" = Darwin ] || $(MAKE) --no-print-directory jackd
	$(PY) -m daemon run --headless

test: jackd install
	$(PY) -m pytest -q
	@$(MAKE) --no-print-directory test-onnx

# The torch-free install (README "Without torch"): a fresh venv with the onnx extra and no torch
# plays all three models through real JACK ports from their shipped ONNX files.
test-onnx: jackd
	@rm -rf $(VENV_ONNX) && $(PYTHON) -m venv $(VENV_ONNX)
	$(VENV_ONNX)/bin/python -m pip install -q -e '.[onnx]' pytest
	@if $(VENV_ONNX)/bin/python -c 'import torch' 2>/dev/null; then echo "torch is in $(VENV_ONNX): not a torch-free install"; exit 1; fi
	$(VENV_ONNX)/bin/python -m pytest -q -p no:cacheprovider tests/test_onnx_e2e.py
