# Two commands do all the set-up on a fresh machine:
#   make demo   - build the quick zoo, run every tool, score them, print the leaderboard
#   make test   - lint (ruff, mypy on src/) and run the tests (what .ci/run calls)
# The first install goes into .venv. PyTorch's CPU build is installed first, so that pip never
# pulls the CUDA wheels; elsewhere, choose the wheel with TORCH="torch --index-url ...".
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: demo test setup browser lint

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,lm]"
	touch $@

setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/deepaudit game run --suite quick --jobs 2

# Chromium renders the audit's HTML report in tests/test_audit_html.py (skipped without it).
# Installed with apt-get only when missing, and only where apt-get exists and we are root.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	echo "chromium not installed (apt-get install chromium): the browser test of the audit report will be skipped"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: $(VENV)/.installed browser lint
	$(PY) -m pytest
