# `make run` starts everything on a fresh machine; `make test` runs the suite against Redis processes it starts
# itself. DATABASE_URL and REDIS_URL, when set in the environment, are passed through unchanged.

VENV := .venv
PY := $(VENV)/bin/python
# Inside the venv, so deleting .venv also forces a reinstall.
STAMP := $(VENV)/.installed.stamp
# Django 5.2 needs Python >= 3.10 and the project pins < 3.13: prefer 3.11, the version CI uses.
BOOTSTRAP_PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
PYTEST_ARGS ?=
# Test processes: most tests wait on sockets, servers and shortened timeouts, not on the CPU, so three workers
# on two cores finish the suite in about half the time of one (docs/configuration.md).
TEST_WORKERS ?= 3
BENCH_ARGS ?=
CHAOS_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint audit bench chaos migrations-check clean distclean

help:
	@echo "make run               start Redis (embedded unless REDIS_URL is set), web, worker and beat"
	@echo "make test              run the test suite (PYTEST_ARGS='-k name -x' to narrow it, TEST_WORKERS=1 for one process)"
	@echo "make lint              ruff check"
	@echo "make audit             pip-audit: known vulnerabilities of the installed dependencies (needs network)"
	@echo "make bench             scheduler vs Celery vs raw ASGI, daphne vs uvicorn, 5,000 nodes (BENCH_ARGS='--scale --profile')"
	@echo "make chaos             fault run with an invariant checker, ~3 min (CHAOS_ARGS='--scenario full', ~8 min)"
	@echo "make migrations-check  fail if a model change has no migration"
	@echo "make clean             remove caches and test leftovers (keeps .venv and var/db.sqlite3)"
	@echo "make distclean         also remove .venv and var/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
		if [ -z "$(BOOTSTRAP_PYTHON)" ]; then echo "No python3 found: install Python 3.11" >&2; exit 1; fi; \
		echo "Creating $(VENV) with $(BOOTSTRAP_PYTHON)"; \
		$(BOOTSTRAP_PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: venv
	$(PY) -m supervisor.runner

# promtool and Chromium for the alert-rule and browser tests; never fatal (those tests then skip and say why,
# except under REQUIRE_TEST_TOOLS=1, as .ci/run sets).
test: venv migrations-check
	@ops/tools/install-test-tools
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .

# Every installed package against the Python Packaging Advisory Database (PyPI's vulnerability API, so it
# needs network access); non-zero exit on a known vulnerability, and (--strict) on a package it could not
# look up, so an audit without network fails instead of reporting nothing found. The project itself is
# not on PyPI (--skip-editable). docs/security.md says when to run it.
audit: venv
	$(PY) -m pip_audit --progress-spinner off --strict --skip-editable

# Fresh Redis and servers of its own; prints the report and the path of the JSON with every number.
bench: venv
	@ops/tools/install-bench-tools
	$(PY) -m bench $(BENCH_ARGS)

# Its own Redis, web processes, workers and node processes; kills and freezes them on a schedule, then checks the
# invariants (docs/reliability.md). Exit 1 on a violation. Files of the run under var/chaos/.
chaos: venv
	@mkdir -p var
	$(PY) -m chaos $(CHAOS_ARGS)

# var/ holds the SQLite databases named in settings; without it Django warns it cannot open one.
migrations-check: venv
	@mkdir -p var
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf .pytest_cache .ruff_cache *.egg-info build dist
	rm -f var/test.sqlite3* var/celerybeat-schedule*
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var
