# One entry point for every task; each target sets up what it needs on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.59.0
PROTO_SRC := $(shell find protos -name '*.proto')
GEN := gen/python

.PHONY: install browser redis run test lint proto proto-check buf-lint buf-breaking node-test deploy-lint fixtures bench bench-audio load ci clean lock

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

## Serve on TRANSCRIBE_PORT (default 50051) with the local bundled model.
run: install
	$(PY) -m service

## Debian's chromium and chromium-driver for the page's browser test, installed when absent (CI runs as root).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

## Debian's redis-server for the jobs tests (Celery on Redis), installed when absent (CI runs as root).
## The tests start their own redis-server processes on loopback, so the system service that the package
## starts on systemd hosts is stopped and disabled again: nothing is left running.
redis:
	@if ! command -v redis-server >/dev/null; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
	  && if [ -d /run/systemd/system ]; then $$sudo systemctl disable --now --quiet redis-server; fi; \
	fi

## The full test suite.
test: install $(BUF) browser redis
	$(PY) -m pytest $(PYTEST_ARGS)

## Regenerate the Python code from the proto (messages, gRPC stubs, typed stubs).
proto: install
	scripts/gen_proto.sh $(PY) $(GEN)

## Fail when the checked-in generated code differs from what the proto produces.
proto-check: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && scripts/gen_proto.sh $(PY) "$$tmp" \
	  && diff -r "$$tmp" $(GEN) && echo "generated code is up to date"

buf-lint: $(BUF)
	$(BUF) lint
	$(BUF) format --path protos/transcribe --diff --exit-code

lint: install buf-lint
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy service clients/python tests $(wildcard bench)

NODE_CLIENT := clients/node
NODE_STAMP := $(NODE_CLIENT)/node_modules/.installed

$(NODE_STAMP): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund
	touch $(NODE_STAMP)

## The Node.js client's tests against the real server.
node-test: install $(NODE_STAMP)
	cd $(NODE_CLIENT) && npm test

## Fail when the contract breaks its previous version (buf's FILE rules).
buf-breaking: $(BUF)
	scripts/buf_breaking.sh $(BUF)

## Regenerate the spoken test fixtures in tests/data (needs espeak-ng).
fixtures: install
	$(PY) tests/data/make_fixtures.py

## espeak-ng, which bench/data/make_long_audio.py speaks the long recording with (made on first use, cached).
bench-audio:
	command -v espeak-ng >/dev/null || apt-get install -y espeak-ng || (apt-get update && apt-get install -y espeak-ng)

## Benchmarks (not tests): results go to bench/results/.
bench: install bench-audio
	$(PY) -m bench $(BENCH_ARGS)

## Load test against a real server process (bounded time): results go to bench/results/.
load: install
	$(PY) -m bench.load $(LOAD_ARGS)

## Lint the Dockerfile and Kubernetes manifests (pinned linters in .tools/deploy-venv).
deploy-lint:
	bash scripts/lint_deploy.sh

ci: lint proto-check buf-breaking deploy-lint test node-test

## Re-pin requirements.lock from the current venv.
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -vE '^(triton|transcribe)' > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info
