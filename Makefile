# sitekit — the two set-up commands of the README:
#   make demo   # venv + runtime install + the whole job on the embedded four-prefecture data -> out/
#   make test   # same venv + the dev extra + system components (Chromium, gdal-bin) + the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out
# one stamp per install flavour and pyproject.toml version: a second `make demo`/`make test`
# installs nothing; editing pyproject.toml reinstalls
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
RUNTIME := $(VENV)/.installed-runtime-$(CKSUM)
DEV := $(VENV)/.installed-dev-$(CKSUM)
BENCH := $(VENV)/.installed-bench-$(CKSUM)

.PHONY: install install-dev system-deps demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# runtime dependencies only (what `pip install sitekit` gets)
$(RUNTIME): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	rm -f $(VENV)/.installed-runtime-* $(VENV)/.installed-[0-9]*
	touch $@

# + the dev extra: pytest, hypothesis, ruff, playwright, build … (runtime comes with it)
$(DEV): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-runtime-* $(VENV)/.installed-[0-9]*
	touch $@ $(RUNTIME)

# + the bench extra (TileWriter in sitekit/outputs/tilewrite.py, used by the benchmark, needs tifffile)
$(BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	rm -f $(VENV)/.installed-bench-* $(VENV)/.installed-runtime-* $(VENV)/.installed-[0-9]*
	touch $@ $(RUNTIME)

install: $(RUNTIME)

install-dev: $(DEV)

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
demo: $(RUNTIME)
	$(PY) -m compileall -q sitekit >/dev/null
	$(VENV)/bin/sitekit demo --out $(OUT) --force

test: $(DEV) system-deps
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: $(DEV)
	$(VENV)/bin/ruff check sitekit tests benchmarks layers
	$(VENV)/bin/ruff format --check sitekit tests benchmarks layers

bench: $(BENCH) system-deps
	$(PY) -m compileall -q sitekit benchmarks >/dev/null
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
