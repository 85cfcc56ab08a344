# Single entry point for local development, tests and CI.
#   make            list targets
#   make run        what is missing (apt packages, FerretDB, venv), local RabbitMQ/FerretDB, the demo
#   make test       the same plus chromium, then pytest (PYTEST_ARGS="-k foo -x")
#
# scripts/setup.sh installs what the machine lacks (as root, through sudo, or it prints the
# command to run as root); every step prints a progress line and its time (scripts/steps.sh).
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
# On Debian, `-m venv` needs the python3-venv package, which scripts/setup.sh installs.
# Evaluated when used, so that a python3 installed by the same run is found.
PYTHON ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
STEP := bash scripts/steps.sh
# What scripts/setup.sh installs for a target (python, services, browser, bench, validators); targets add to it.
SETUP ?= python services
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
# The image deploy/k8s runs (one image, three commands: python -m store|orchestrator|executor).
IMAGE ?= ghcr.io/sidebar-widgets/sidebar:$(VERSION)

# Steps run one after another: packages before the venv, the venv before the services.
.NOTPARALLEL:

.PHONY: help setup install services services-stop services-status ferretdb run test lint fmt typecheck check \
	bench bench-deps chaos soak wheel image image-smoke image-lint readme-image clean

help:
	@echo "Targets:"
	@echo "  setup            install what the machine lacks: apt packages, Go and FerretDB (scripts/setup.sh)"
	@echo "  install          create $(VENV) (from $(PYTHON)) and install the project with dev extras"
	@echo "  services         setup, then start RabbitMQ and FerretDB locally unless they already answer"
	@echo "                   (RABBITMQ_URL, MONGODB_URL)"
	@echo "  services-stop    stop the services that 'make services' started"
	@echo "  services-status  show what answers at RABBITMQ_URL / MONGODB_URL"
	@echo "  ferretdb         build .local/bin/ferretdb from the Go module proxy (needs Go 1.22+)"
	@echo "  run              setup + install + services, then scripts/run.sh (the demo)"
	@echo "  test             setup (with chromium) + install + services, then pytest (extra args: PYTEST_ARGS=...)"
	@echo "  lint             ruff format --check + ruff check"
	@echo "  fmt              ruff format + ruff check --fix"
	@echo "  typecheck        mypy"
	@echo "  check            lint + typecheck + test"
	@echo "  bench            the product (benchmarks/e2e.py), the libraries-only reference of its shape and its"
	@echo "                   Celery chord peer back to back, one table"
	@echo "                   (benchmarks/compare.py; extra args: BENCH_ARGS=\"--events 50 --open-duration 5\")"
	@echo "  bench-deps       the bench extra (celery[redis]) and Debian's redis-server"
	@echo "  chaos            install + services, then benchmarks/chaos.py (its own RabbitMQ and FerretDB)"
	@echo "  soak             install + services, then benchmarks/chaos.py --soak"
	@echo "  wheel            build dist/sidebar_widgets-$(VERSION)-py3-none-any.whl and install it into .local/wheel-venv"
	@echo "  image            build $(IMAGE) from Containerfile (podman, docker or buildah; IMAGE=...)"
	@echo "  image-smoke      run each service from $(IMAGE) as deploy/k8s does, against the local services"
	@echo "  image-lint       hadolint Containerfile"
	@echo "  readme-image     refresh docs/images/agent-console.png from the browser test"
	@echo "  clean            services-stop, then remove .local and $(VENV)"

setup:
	@bash scripts/setup.sh $(SETUP)

# The venv needs python3 and its venv module: installed here when missing, so that
# `make install` alone works on a fresh machine too.
$(VPY):
	@if ! { [ -n "$(PYTHON)" ] && $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; }; then bash scripts/setup.sh python; fi
	@py="$(PYTHON)"; py="$${py:-$$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)}"; \
	  $(STEP) "python venv ($(VENV) from $$py)" $$py -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$$py -m venv' failed; on Debian install python3-venv: apt-get install -y python3-venv" >&2; exit 1; }

$(STAMP): pyproject.toml | $(VPY)
	@home=$$(sed -n 's/^home *= *//p' $(VENV)/pyvenv.cfg); \
	  case "$$home" in /root/*) echo "warning: $(VENV) is based on $$home, which the sandbox uids cannot read; widget runs will fail. Recreate it: rm -rf $(VENV) && make install" >&2;; esac
	@$(STEP) "python packages (pip install -e '.[dev]')" $(VPY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

install: $(STAMP)

ferretdb:
	bash scripts/install-ferretdb.sh

services: setup
	@$(STEP) "services (RabbitMQ, FerretDB)" bash scripts/services.sh up

services-stop:
	bash scripts/services.sh down

services-status:
	bash scripts/services.sh status

run: setup install services
	@bash scripts/run.sh

test: SETUP += browser validators
test: setup install services
	@$(STEP) "pytest $(PYTEST_ARGS)" $(VPY) -m pytest $(PYTEST_ARGS)

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

# redis-server: the chord peer's result backend (the benchmark starts its own).
bench-deps: $(BENCH_STAMP)
	@bash scripts/setup.sh python bench

bench: SETUP += bench
bench: setup bench-deps services
	$(VPY) benchmarks/compare.py $(BENCH_ARGS)

chaos: install services
	$(VPY) benchmarks/chaos.py --private-infra

soak: install services
	$(VPY) benchmarks/chaos.py --private-infra --soak

# The same scripts/wheel.sh as the Containerfile's build stage and tests/packaging/test_wheel.py.
wheel:
	rm -rf .local/wheel-venv
	@$(STEP) "wheel" bash scripts/wheel.sh .local/wheel-venv dist

image:
	@$(STEP) "image $(IMAGE)" bash scripts/image.sh build $(IMAGE)

image-smoke: services
	@$(STEP) "image smoke test $(IMAGE)" bash scripts/image.sh smoke $(IMAGE)

image-lint: install
	$(VENV)/bin/hadolint Containerfile

readme-image: install services
	REFRESH_README_IMAGE=1 $(VPY) -m pytest -q tests/browser/test_chat_to_console.py

clean: services-stop
	rm -rf .local $(VENV)
