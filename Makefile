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

.PHONY: run test test-pgbouncer setup migrate demo db-stop bench chaos load clean

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

# The whole suite with DATABASE_URL through a real PgBouncer in transaction pooling mode (started by
# tests/ops/pgbouncer.py; server connections taken in turn, so a client's transactions change connection) and
# DATABASE_POOLER=pgbouncer; not part of `make test`. A pool of 20: the race tests hold several transactions open at
# once. Not tests/ops and tests/replicas: they start a PgBouncer or a streaming replica of their own in front of
# the server itself (run by `make test`). --reuse-db: the test database is dropped at the next run, not at the end
# (PgBouncer still holds its server connections then).
test-pgbouncer: setup
	scripts/ensure-pgbouncer
	$(PY) -m tests.ops.pgbouncer --pool-size 20 -- $(PY) -m pytest --create-db --reuse-db \
		--ignore=tests/ops --ignore=tests/replicas $(PYTEST_ARGS)

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

# The load test (README, "Load test"): a server started as `make run` starts it (on LOAD_PORT, its access log and
# output in var/load/, no control socket, a webhook secret of its own), load members ready in the demo platform
# (bench/load/prepare.py), then locust headless for LOAD_SECONDS with LOAD_USERS users (bench/load/locustfile.py:
# usage 70, holds 10, listings 10, account reads 5, webhooks 5); the server stopped, then `verify_ledger`, which
# must be clean, and the run's top-up orders each credited at most once. Fails on any request error too (locust's
# exit code), after those checks.
LOAD_PORT ?= 8765
LOAD_USERS ?= 20
LOAD_RATE ?= 10
LOAD_SECONDS ?= 60
LOAD_WEBHOOK_SECRET ?= whsec_load_test_secret

load: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) bench/load/prepare.py free $(LOAD_PORT)
	rm -rf var/load && mkdir -p var/load/prometheus
	@set -uo pipefail; \
	export STRIPE_WEBHOOK_SECRET=$(LOAD_WEBHOOK_SECRET); \
	PROMETHEUS_MULTIPROC_DIR=var/load/prometheus LOG_FORMAT=text setsid $(VENV)/bin/gunicorn \
		billing_service.wsgi:application --bind 127.0.0.1:$(LOAD_PORT) --workers $(WEB_CONCURRENCY) \
		--worker-class gthread --threads $(WEB_THREADS) --access-logfile var/load/access.log --preload \
		--no-control-socket >var/load/server.log 2>&1 & \
	server=$$!; \
	trap 'kill -TERM -- -'$$server' 2>/dev/null; wait '$$server' 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	echo "server pid $$server on 127.0.0.1:$(LOAD_PORT) (log: var/load/server.log); load average: $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	$(PY) bench/load/prepare.py wait http://127.0.0.1:$(LOAD_PORT)/readyz --pid $$server || exit 1; \
	$(PY) bench/load/prepare.py users var/load/users.json --users $(LOAD_USERS) \
		--orders $$(( $(LOAD_SECONDS) / 2 + 5 )) || exit 1; \
	LOAD_USERS_FILE=var/load/users.json $(VENV)/bin/locust -f bench/load/locustfile.py --headless --only-summary \
		--host http://127.0.0.1:$(LOAD_PORT) -u $(LOAD_USERS) -r $(LOAD_RATE) -t $(LOAD_SECONDS)s \
		--stop-timeout 10 --csv var/load/stats; \
	locust_status=$$?; \
	kill -TERM -- -$$server 2>/dev/null; wait $$server 2>/dev/null; trap - EXIT; \
	echo "server stopped; verify_ledger:"; \
	$(PY) manage.py verify_ledger --progress off || exit 1; \
	$(PY) bench/load/prepare.py check var/load/users.json || exit 1; \
	if [ $$locust_status -ne 0 ]; then echo "locust reported errors (exit $$locust_status)"; exit $$locust_status; fi

# Stops the embedded PostgreSQL (it keeps running between commands so they can share it).
db-stop: setup
	$(PY) manage.py embedded_db stop

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
