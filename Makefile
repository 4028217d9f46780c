# docflow: `make run` starts the local stack, `make test` runs every test.
# Both install what they need first (system packages via apt when run as root,
# everything else into .venv).

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYPROJECTS := shared/pyproject.toml $(wildcard services/*/pyproject.toml) cli/pyproject.toml devstack/pyproject.toml requirements-test.txt

.PHONY: install run test test-fast e2e lint clean

install: $(STAMP)

$(STAMP): scripts/bootstrap.sh $(PYPROJECTS)
	bash scripts/bootstrap.sh
	touch $@

## run: start redis-server (unless DOCFLOW_REDIS_URL is set), the three workers and the gateway
run: install
	$(PY) -m docflow.devstack

## test: the whole suite, unit tests and end-to-end tests on real processes
test: install
	$(PY) -m pytest

## test-fast: everything but the end-to-end tests
test-fast: install
	$(PY) -m pytest -m "not e2e"

## e2e: only the end-to-end tests
e2e: install
	$(PY) -m pytest tests/e2e

clean:
	rm -rf .data $(VENV)
