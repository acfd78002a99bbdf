# Everyday commands. `make run` starts the product, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
# The browser tests drive Debian's Chromium at this path.
CHROMIUM ?= /usr/bin/chromium

.PHONY: install chromium run test lint format check bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (PYTHON=$(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# `make run` needs only the runtime requirements; tests and linters need the dev ones too.
$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(RUN_STAMP)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

# Migrates, seeds demo data on first start, creates the login, then runs the broker, the
# web server, one Celery worker and beat in the foreground until Ctrl-C.
run: $(RUN_STAMP)
	$(BIN)/python manage.py runstack

# The cold-cache case empties the page cache and restarts a local PostgreSQL (as root only).
BENCH_ARGS ?= --cold-cache
bench: install
	$(BIN)/python manage.py bench $(BENCH_ARGS)
	$(BIN)/python manage.py bench_api
	$(BIN)/python manage.py bench_send
	$(BIN)/python manage.py bench_import $(BENCH_IMPORT_ARGS)
	$(BIN)/python manage.py bench_customer_import

# Installs Chromium for the browser tests when it is missing: with apt-get as root,
# otherwise stops at once with the command to run.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Chromium is missing at $(CHROMIUM); installing it with apt-get."; \
			apt-get update && apt-get install -y chromium; \
		else \
			echo "The browser tests need Chromium at $(CHROMIUM). Install it with:" >&2; \
			echo "    sudo apt-get install -y chromium" >&2; \
			exit 1; \
		fi; \
	fi

test: install chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run
