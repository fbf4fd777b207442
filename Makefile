# `make serve` and `make test` are the two commands in README.md; both set themselves up from a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STORE ?= file://./.maas/store
DEMO := digits-cnn cancer-mlp diabetes-mlp text-lstm

NODE_STAMP := node_modules/.installed
# jsii (under aws-cdk-lib) prints a banner on Node 20; the CDK CLI would otherwise phone home.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: venv serve demo-models test lint typecheck unit bench bench-gpu synth wrk clean lock chromium

## TORCH_INDEX=cpu takes PyTorch's CPU-only wheels from its own index (Linux machines whose default torch wheel is
## the CUDA build); left empty (the default, and in CI) only PyPI and the pip configuration are used.
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--extra-index-url https://download.pytorch.org/whl/$(TORCH_INDEX))

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[dev]" $(TORCH_PIP_ARGS)
	touch $(STAMP)

venv: $(STAMP)

## The CDK CLI pinned in package.json/package-lock.json (aws-cdk@2; the 3.x CLI refuses aws-cdk-lib 2).
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js >= 20"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## Synthesize the stage in cdk.json (STAGE=prod for another) with the pinned CLI, cdk-nag included.
STAGE ?= dev
synth: $(STAMP) $(NODE_STAMP)
	npx --no-install cdk synth --no-notices --quiet -c stage=$(STAGE)

## Build the demo models into the local store (only those missing), then list them.
demo-models: $(STAMP)
	@for recipe in $(DEMO); do \
	  if $(VENV)/bin/maas models --json --store $(STORE) | grep -q "\"name\":\"$$recipe\""; then \
	    echo "$$recipe: already in $(STORE)"; \
	  else \
	    $(VENV)/bin/maas build $$recipe --store $(STORE) || exit $$?; \
	  fi; \
	done

HOST ?= 127.0.0.1
PORT ?= 8000

serve: demo-models
	@$(VENV)/bin/maas models --store $(STORE)
	@echo ""
	@echo "Try these while the server runs (Ctrl-C stops it):"
	@echo "  curl -s http://$(HOST):$(PORT)/v1/models"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/v1/models/text-lstm/predict -H 'content-type: application/json' -d '{\"instances\": [\"The striker scored twice in the final.\", \"Heavy rain will clear by the weekend.\"]}'"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/v1/models/diabetes-mlp/predict -H 'content-type: application/json' -d '{\"instances\": [{\"age\": 50, \"sex\": 1, \"bmi\": 27.5, \"bp\": 95, \"s1\": 190, \"s2\": 115, \"s3\": 45, \"s4\": 4, \"s5\": 4.6, \"s6\": 92}]}'"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/v2/models/diabetes-mlp/infer -H 'content-type: application/json' -d '{\"inputs\": [{\"name\": \"features\", \"shape\": [1, 10], \"datatype\": \"FP32\", \"data\": [50, 1, 27.5, 95, 190, 115, 45, 4, 4.6, 92]}]}'"
	@echo "  $(VENV)/bin/maas predict digits-cnn --data '[[[0,0,5,13,9,1,0,0],[0,0,13,15,10,15,5,0],[0,3,15,2,0,11,8,0],[0,4,12,0,0,8,8,0],[0,5,8,0,0,9,8,0],[0,4,11,0,1,12,7,0],[0,2,14,5,10,12,0,0],[0,0,6,13,10,0,0,0]]]'"
	@echo "  open http://$(HOST):$(PORT)/console/ for the web console, http://$(HOST):$(PORT)/docs for the OpenAPI page"
	@echo ""
	$(VENV)/bin/maas serve --store $(STORE) --host $(HOST) --port $(PORT)

## Refresh the hashed runtime locks under locks/ (Lambda per CPU and Python, GPU worker) from pyproject.toml.
lock: $(STAMP)
	$(PY) -m infra.locking

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check functions model_build tests bench || true

typecheck: $(STAMP)
	$(VENV)/bin/mypy functions model_build maas infra

## Debian's chromium for the console's browser tests (Playwright drives it; no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; } \
	  || { sudo apt-get update -qq && sudo apt-get install -y -qq chromium; } \
	  || echo "chromium could not be installed (apt-get install chromium): the console's browser tests will be skipped"

test: $(STAMP) $(NODE_STAMP) chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy functions model_build maas infra
	$(PY) -m pytest -p no:cacheprovider tests; rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 1; }; exit $$rc

## Benchmark peers live in their own virtualenv (never in the project's); wrk is the HTTP load tool.
PEERS_STAMP := bench/.venv/.installed
$(PEERS_STAMP): bench/requirements-peers.txt
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
	bench/.venv/bin/python -m pip install --quiet -r bench/requirements-peers.txt
	touch $(PEERS_STAMP)

wrk:
	@command -v wrk >/dev/null || apt-get install -y wrk || sudo apt-get install -y wrk \
	  || { echo "install wrk (Debian/Ubuntu: apt-get install wrk) for the HTTP benchmark"; exit 1; }

bench: $(STAMP) $(PEERS_STAMP) wrk
	$(PY) -m bench.run $(BENCH_ARGS)

# The GPU worker's fp16 variant against the CPU variant and PyTorch fp16 on MiniLM; says so and exits 0 without CUDA.
bench-gpu: $(STAMP)
	$(PY) -m bench.gpu

clean:
	rm -rf $(VENV) .maas .mypy_cache .ruff_cache
