# Two commands on a fresh machine:
#   make run    set everything up (virtualenv, dependencies, database, migrations, demo data) and serve
#   make test   set everything up and run the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WEB_CONCURRENCY ?= 3
WEB_THREADS ?= 4
STAMP := $(VENV)/.installed

.PHONY: run test test-pgbouncer setup migrate demo db-stop bench chaos clean

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py seed_demo_seats
	$(PY) manage.py seed_demo_billing

run: demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py billing_page_link demo alice --base http://127.0.0.1:$(PORT) --minutes 60
	rm -rf var/prometheus && mkdir -p var/prometheus  # the workers' metrics (README, "Metrics and logs")
	PROMETHEUS_MULTIPROC_DIR=var/prometheus LOG_FORMAT=$${LOG_FORMAT:-text} \
		$(VENV)/bin/gunicorn billing_service.wsgi:application \
		--bind 127.0.0.1:$(PORT) --workers $(WEB_CONCURRENCY) --worker-class gthread --threads $(WEB_THREADS) \
		--access-logfile - --preload

test: setup
	PYTHON=$(PY) scripts/fetch-redis
	scripts/ensure-chromium
	scripts/ensure-pgbouncer
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

# The whole suite with DATABASE_URL through a real PgBouncer in transaction pooling mode (pool of 2, started by
# tests/ops/pgbouncer.py) and DATABASE_POOLER=pgbouncer; not part of `make test`. --reuse-db: the test database is
# dropped at the next run, not at the end (PgBouncer still holds its server connections then).
test-pgbouncer: setup
	scripts/ensure-pgbouncer
	$(PY) -m tests.ops.pgbouncer -- $(PY) -m pytest --create-db --reuse-db $(PYTEST_ARGS)

# The crash rehearsal (README, "Rehearsing faults"): two gunicorn servers on a PostgreSQL cluster of its own (never
# var/pgdata's), workers and the postmaster killed during a storm of calls, then every call checked; prints a report.
chaos: setup
	$(PY) -m tests.faults.chaos $(CHAOS_ARGS)

bench: migrate
	$(PY) bench/debit_hot.py
	$(PY) bench/transactions_list.py
	$(PY) bench/usage_http.py
	$(PY) bench/usage_batch.py
	$(PY) bench/usage_stats.py
	$(PY) bench/webhooks.py

# Stops the embedded PostgreSQL (it keeps running between commands so they can share it).
db-stop: setup
	$(PY) manage.py embedded_db stop

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
