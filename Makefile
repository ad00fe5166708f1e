# sitekit — the two set-up commands of the README:
#   make demo   # venv + install + the whole job on the embedded four-prefecture data -> out/
#   make test   # same venv + system components (Chromium, gdal-bin) + the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
OUT ?= out

.PHONY: install system-deps demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Chromium drives the browser test of the offline map; gdaldem is the slope/aspect reference.
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v gdaldem >/dev/null || missing="$$missing gdal-bin"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing — run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi; \
	command -v chromium >/dev/null && command -v gdaldem >/dev/null

# byte-compile sitekit once (PYTHONDONTWRITEBYTECODE=1 environments would recompile it on every run)
demo: install
	$(PY) -m compileall -q sitekit >/dev/null
	$(VENV)/bin/sitekit demo --out $(OUT) --force

test: install system-deps
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check sitekit tests benchmarks layers
	$(VENV)/bin/ruff format --check sitekit tests benchmarks layers

bench: install system-deps
	$(PY) -m compileall -q sitekit benchmarks >/dev/null
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
