# `make serve` and `make test` are the two commands in README.md; both set themselves up from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STORE ?= file://./.maas/store
DEMO := digits-cnn cancer-mlp diabetes-mlp text-lstm

.PHONY: venv serve demo-models test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## Build the demo models into the local store (only those missing), then list them.
demo-models: $(STAMP)
	@for recipe in $(DEMO); do \
	  if $(VENV)/bin/maas models --json --store $(STORE) | grep -q "\"name\":\"$$recipe\""; then \
	    echo "$$recipe: already in $(STORE)"; \
	  else \
	    $(VENV)/bin/maas build $$recipe --store $(STORE) || exit $$?; \
	  fi; \
	done

serve: demo-models
	$(VENV)/bin/maas models --store $(STORE)
	@echo "The prediction API is not part of this release yet; the models above are ready in $(STORE)."
	@echo "List them any time with: $(VENV)/bin/maas models --store $(STORE)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check functions model_build tests bench || true

typecheck: $(STAMP)
	$(VENV)/bin/mypy functions model_build

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy functions model_build
	$(PY) -m pytest -p no:cacheprovider tests; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 1; }; exit $$rc

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .maas .mypy_cache .ruff_cache
