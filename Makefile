# Single entry point for local development, tests and CI.
#   make            list targets
#   make test       venv + local RabbitMQ/FerretDB + pytest (PYTEST_ARGS="-k foo -x")
#
# Service URLs come from the environment (defaults shown):
#   RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/  MONGODB_URL=mongodb://127.0.0.1:27017/
# `make services` starts whichever of them does not already answer (data and
# logs under .local/); `make services-stop` stops only what it started.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Use Debian's /usr/bin/python3 for the venv when it exists: the executor drops
# widget processes to unprivileged per-slot uids (60000+), which must be able to
# read (and execute) the interpreter the venv points at. pyenv's Python lives
# under /root (mode 0700), so a venv built from it breaks every widget run.
# On Debian, `-m venv` needs the python3-venv package (apt-get install python3-venv).
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install services services-stop services-status ferretdb run test lint fmt typecheck check bench bench-deps readme-image clean

help:
	@echo "Targets:"
	@echo "  install          create $(VENV) (from $(PYTHON)) and install the project with dev extras"
	@echo "  services         start RabbitMQ and FerretDB locally unless they already answer (RABBITMQ_URL, MONGODB_URL)"
	@echo "  services-stop    stop the services that 'make services' started"
	@echo "  services-status  show what answers at RABBITMQ_URL / MONGODB_URL"
	@echo "  ferretdb         build .local/bin/ferretdb from the Go module proxy (needs Go 1.22+)"
	@echo "  run              install + services, then scripts/run.sh"
	@echo "  test             install + services, then pytest (extra args: PYTEST_ARGS=...)"
	@echo "  lint             ruff format --check + ruff check"
	@echo "  fmt              ruff format + ruff check --fix"
	@echo "  typecheck        mypy"
	@echo "  check            lint + typecheck + test"
	@echo "  bench            the product (benchmarks/e2e.py) and its Celery chord peer back to back, one table"
	@echo "                   (benchmarks/compare.py; extra args: BENCH_ARGS=\"--events 50 --open-duration 5\")"
	@echo "  bench-deps       the bench extra (celery[redis]) and Debian's redis-server"
	@echo "  readme-image     refresh docs/images/agent-console.png from the browser test"
	@echo "  clean            services-stop, then remove .local and $(VENV)"

$(VPY):
	@if [ -z "$(PYTHON)" ]; then echo "python3 not found: apt-get install python3 python3-venv" >&2; exit 1; fi
	@echo "creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian install python3-venv: apt-get install -y python3-venv" >&2; exit 1; }

$(STAMP): pyproject.toml | $(VPY)
	@home=$$(sed -n 's/^home *= *//p' $(VENV)/pyvenv.cfg); \
	  case "$$home" in /root/*) echo "warning: $(VENV) is based on $$home, which the sandbox uids cannot read; widget runs will fail. Recreate it: rm -rf $(VENV) && make install" >&2;; esac
	$(VPY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

install: $(STAMP)

ferretdb:
	bash scripts/install-ferretdb.sh

services:
	@if [ -z "$${FERRETDB_BIN:-}" ] && [ ! -x .local/bin/ferretdb ] && ! command -v ferretdb >/dev/null 2>&1; then \
	  if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then \
	    echo "ferretdb not found: building it (scripts/install-ferretdb.sh)"; bash scripts/install-ferretdb.sh; \
	  fi; \
	fi
	bash scripts/services.sh up

services-stop:
	bash scripts/services.sh down

services-status:
	bash scripts/services.sh status

run: install services
	bash scripts/run.sh

test: install services
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(VPY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	@touch $@

bench-deps: $(BENCH_STAMP)
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
	  echo "installing redis-server (the chord peer's result backend; the benchmark starts its own)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server </dev/null \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server </dev/null; }; \
	fi

bench: bench-deps services
	$(VPY) benchmarks/compare.py $(BENCH_ARGS)

readme-image: install services
	REFRESH_README_IMAGE=1 $(VPY) -m pytest -q tests/browser/test_chat_to_console.py

clean: services-stop
	rm -rf .local $(VENV)
