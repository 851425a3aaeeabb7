# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist

.PHONY: setup system data browser services test demo lint format bench clean

setup: $(STAMP) system

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages, installed as root with one apt-get update: real Fashion-MNIST without
# internet (dataset-fashion-mnist), headless Chromium with its driver for the web view's
# browser tests (selenium drives the system browser; nothing is downloaded at test time), and
# Prometheus, which tests/test_metrics_prometheus.py runs against a live API.
system:
	@missing=""; \
	[ -d $(FASHION) ] || missing="$$missing dataset-fashion-mnist"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	[ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  else echo "note: install$$missing (apt) for the Fashion-MNIST tests, the demo, the browser and the metrics tests"; fi; \
	fi

data browser: system

# Redis and PostgreSQL for the service and worker tests (started if they are down).
services:
	@bash scripts/services.sh

test: setup services
	$(BIN)/lint-imports
	$(BIN)/pytest

demo: setup
	bash scripts/demo.sh $(if $(DEMO_PORT),--port $(DEMO_PORT))

lint:
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out
