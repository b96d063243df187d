# Overseer developer commands. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

include tools/versions.env

# Caches live outside the work tree so later runs (and CI on this machine) reuse them.
export OVERSEER_CACHE ?= $(HOME)/.cache/overseer
PYTHON ?= python3
# One virtualenv per checkout: the package is installed editable, pointing at this tree.
CHECKOUT_ID := $(shell printf '%s' "$(CURDIR)" | sha256sum | cut -c1-10)
VENV ?= $(OVERSEER_CACHE)/venv-$(CHECKOUT_ID)
TOOLS_BIN := $(OVERSEER_CACHE)/tools/helm-$(HELM_VERSION)-kubeconform-$(KUBECONFORM_VERSION)/bin
# kubectl and the control plane's binaries (built by `make cluster-up`).
CLUSTER_BIN := $(shell bash tools/cluster-tools.sh --bin-dir 2>/dev/null)
export PATH := $(TOOLS_BIN):$(CLUSTER_BIN):$(VENV)/bin:$(PATH)
export OVERSEER_KUBERNETES_VERSION ?= $(KUBERNETES_SCHEMA_VERSION)
# kubeconform's schemas for the custom resources, for exactly this checkout's pins (`make crd-schemas`):
# set here even when the environment has one, which may be another checkout's (`make VAR=...` wins).
OVERSEER_CRD_SCHEMAS := $(shell bash tools/crd-schemas.sh --dir)
export OVERSEER_CRD_SCHEMAS
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-10)

-include mk/cluster.mk

.PHONY: path help venv tools crd-schemas test-deps demo test lint typecheck check schema bench bench-api bench-apply bench-git bench-review clean

path: ## Print the PATH (and CRD schema) export for this checkout's tools: eval "$$(make -s path)"
	@echo 'export PATH="$(PATH)"'
	@echo 'export OVERSEER_CRD_SCHEMAS="$(OVERSEER_CRD_SCHEMAS)"'

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(VENV)/bin/python -m pip install --quiet -e . --group dev
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create the Python environment and install Overseer with its dev tools

# The script builds only what is missing; the stamp names the pins and the script it was run for.
TOOLS_STAMP := $(TOOLS_BIN)/.installed-$(shell cat tools/versions.env tools/install-tools.sh | sha256sum | cut -c1-10)

$(TOOLS_STAMP):
	bash tools/install-tools.sh
	@rm -f $(TOOLS_BIN)/.installed-* && touch $@

crd-schemas: venv ## kubeconform schemas from the pinned Argo CD, Flux, SealedSecret and ExternalSecret CRDs (cached)
	PYTHON=$(VENV)/bin/python bash tools/crd-schemas.sh

tools: $(TOOLS_STAMP) crd-schemas ## Build the pinned helm, kubeconform, kube-score, actionlint, sops, kubeseal, age; the CRD schemas (cached)

test-deps: ## Install Debian's PostgreSQL server for the store tests, if missing
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql (the store tests run against it too)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

demo: venv tools ## Embedded Postgres, the example plugin, a deployment, a committed and validated chart
	bash scripts/demo.sh

test: venv tools test-deps cluster-up forge-up ## Set up what the tests need (Postgres, helm, the kwok cluster, Gitea) and run the whole suite
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: venv ## ruff (lint and format check), the layering contracts (import-linter), hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check generator tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

typecheck: venv ## mypy --strict on the package
	$(VENV)/bin/mypy

check: lint typecheck test ## Everything CI runs

schema: venv ## Regenerate environments/plugin-manifest.schema.json
	$(VENV)/bin/overseer plugin schema > environments/plugin-manifest.schema.json

bench: venv tools ## Run the render/validate benchmark (takes a few minutes)
	$(VENV)/bin/python bench/render_bench.py

bench-api: venv tools ## POST /deployments latency at 1 and 16 clients, and throughput (installs wrk)
	@command -v wrk >/dev/null || { echo "installing Debian's wrk (the load generator)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(VENV)/bin/python bench/api_bench.py

bench-apply: venv tools cluster-up ## Apply 50 deployments to the local cluster; p50/p95 create-to-READY
	$(VENV)/bin/python bench/apply_bench.py

bench-review: venv tools cluster-up forge-up ## Review mode: 100 pull requests on Gitea, merged; merge-to-READY p50/p95
	$(VENV)/bin/python bench/review_bench.py

bench-git: venv ## The git layer's object code side by side with pygit2 and dulwich (installs them)
	$(VENV)/bin/python -m pip install --quiet --group bench
	$(VENV)/bin/python bench/git_objects_bench.py

clean: ## Stop the demo's embedded PostgreSQL, then remove its state (.overseer/ and rendered/)
	@if [ -x $(VENV)/bin/overseer ] && [ -d .overseer/pgdata ]; then env -u DATABASE_URL $(VENV)/bin/overseer db stop; fi
	rm -rf .overseer rendered
