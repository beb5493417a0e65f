# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt
	@echo "make: installing the Python packages into $(VENV) (first run: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The hub with demo data on the embedded PostgreSQL; tasks run in-process. PORT=8001 make demo serves on 8001
# (PUBLIC_BASE_URL follows). However it is stopped (Ctrl-C, SIGTERM to make or to the server), the embedded
# PostgreSQL stops with it (nexabilling/demo.py).
demo: $(VENV)/.installed
	@exec $(PY) -m nexabilling.demo

# Stop a demo running elsewhere (another terminal, the background) and its PostgreSQL.
demo-stop:
	@$(PY) -m nexabilling.demo stop

# The whole suite on PostgreSQL (DATABASE_URL, else the embedded server).
test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# Stop the demo, then delete what it and the tests leave behind: var/ (the embedded database, static files) and
# caches. The virtualenv stays (rm -rf .venv to reinstall).
clean:
	@if [ -x $(PY) ]; then $(PY) -m nexabilling.demo stop; fi
	rm -rf var .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

.PHONY: install demo demo-stop test clean
