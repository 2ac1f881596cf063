PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test typecheck install bench clean

# Reinstalled whenever either project's metadata changes (the client is a
# separate distribution in client/, installed editable beside the server).
$(STAMP): pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./client -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/stagewire serve

# Types first (server, handlers and models; the client SDK strictly), then the tests.
test: $(STAMP) typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy
	cd client && ../$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.fanout $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache
