# mailroute: `make run` starts the service on SQLite, `make test` runs lint and the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format venv clean

run: $(STAMP)
	$(BIN)/mailroute serve

test: lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff format --check app tests migrations
	$(BIN)/ruff check app tests migrations
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format app tests migrations
	$(BIN)/ruff check --fix app tests migrations

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mailroute needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
