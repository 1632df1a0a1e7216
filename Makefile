# Two commands set up a fresh machine and do the work:
#   make serve   runs logd on its embedded engine (data in ./logd-data)
#   make test    installs what the tests need, starts dockerd, runs scripts/check
VENV ?= .venv
PYTHON ?= python3
LOGGEN_DIR ?= /opt/loggen

.PHONY: serve test check system venv bench

serve: venv
	$(VENV)/bin/logd serve

test: venv system
	PATH="$(CURDIR)/$(VENV)/bin:$(LOGGEN_DIR):$$PATH" scripts/check

check: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/check

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# System packages, loggen and a running dockerd: what the tests use (root).
system:
	scripts/install-system
	scripts/install-loggen $(LOGGEN_DIR)
	scripts/start-dockerd

bench: venv system
	PATH="$(CURDIR)/$(VENV)/bin:$(LOGGEN_DIR):$$PATH" $(VENV)/bin/python benchmarks/ingest.py
