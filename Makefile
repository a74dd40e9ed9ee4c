# aios — two commands: `make run` (everything, embedded profile, no servers) and `make test`.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat uv.lock pyproject.toml | sha1sum | cut -c1-12)
UV_VERSION := 0.13.9

export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export DAGSTER_HOME ?= $(CURDIR)/.aios/dagster

.PHONY: install run demo test dev dev-prod cluster lock bench backtest clean dagster-home debian-deps

install: $(STAMP) debian-deps

# Debian packages for reading documents (Tesseract and its English model) and drawing them (DejaVu fonts).
# Installed only when a file is missing and we are root; otherwise say what to install.
TESSDATA_ENG := /usr/share/tesseract-ocr/5/tessdata/eng.traineddata
DEJAVU := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
debian-deps:
	@if [ ! -f $(TESSDATA_ENG) ] || [ ! -f $(DEJAVU) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr tesseract-ocr-eng fonts-dejavu-core; \
	  else echo "missing Debian packages: sudo apt-get install tesseract-ocr tesseract-ocr-eng fonts-dejavu-core" >&2; exit 1; fi; \
	fi

# uv is bootstrapped into the venv with pip once; `uv sync --locked` then installs exactly uv.lock
# (the project editable, the dev group included) and refuses a lock that is out of date.
$(STAMP): uv.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --python $(BIN)/python -q
	@rm -f $(VENV)/.installed-*; touch $@

# dagster.yaml of the embedded profile: the run queue's one-run-per-partition limit, no telemetry.
dagster-home: install
	@$(BIN)/python -c 'import sys; from pathlib import Path; from aios.usecases.production import write_embedded_dagster_yaml as w; w(Path(sys.argv[1]))' $(DAGSTER_HOME)

run: install dagster-home
	$(BIN)/aios demo

demo: run

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

dev: install dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The production profile: PostgreSQL for the stores (Alembic), the Dagster instance and MLflow;
# `aios land --all` lands every configured bus subscription (one supervised consumer each, restarted
# if it dies); `dagster dev` runs the webserver and the daemon (sensors, schedules). Ctrl-C stops all.
# Step by step, environment and recovery: docs/operations.md.
PROD_ENV := AIOS_PROFILE=production DAGSTER_HOME=$(CURDIR)/.aios/dagster-prod
dev-prod: install
	$(PROD_ENV) $(BIN)/aios db prepare
	@trap 'kill -TERM $$land 2>/dev/null; wait $$land' EXIT; \
	$(PROD_ENV) $(BIN)/aios land --all & land=$$!; \
	$(PROD_ENV) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The distributed profile on one machine: production profile, steps as Celery tasks over RabbitMQ;
# Dagster webserver + daemon + WORKERS Celery workers (the first also serves the `heavy` queue), stopped
# together on Ctrl-C/SIGTERM. `aios cluster status` lists the workers and their queues.
WORKERS ?= 2
CLUSTER_ENV := $(PROD_ENV) AIOS_EXECUTOR=celery
cluster: install
	$(CLUSTER_ENV) $(BIN)/aios db prepare
	$(CLUSTER_ENV) exec $(BIN)/aios cluster up --workers $(WORKERS)

bench: install
	$(BIN)/python -m bench

# Replay history days through the backtest (champion vs challenger) and write a report under .aios/reports/.
backtest: install dagster-home
	$(BIN)/aios backtest $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(BACKTEST_ARGS)

lock:
	$(BIN)/uv lock

clean:
	rm -rf .aios
