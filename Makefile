# Set-up and entry points. `make demo` and `make test` each create (or reuse) .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-quick benchmarks leaderboard clean

install: $(STAMP)

$(STAMP): setup.cfg $(CONSTRAINTS) requirements/no-deps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev]'
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	touch $(STAMP)

# Train the flow-matching baseline on the bundled handwritten digits (CPU, a few minutes),
# sample grids with two samplers, score FID on the held-out digits and regenerate the
# leaderboard. Paths of the run folder, images and results are printed.
DEMO := --config flow_matching_digits_cfg.yaml --config demo/flow_matching_digits_cfg.yaml --run_name demo
demo: install
	$(PY) cli.py fit $(DEMO)
	$(PY) cli.py predict $(DEMO) --ckpt_path last --model.sampler euler
	$(PY) cli.py predict $(DEMO) --ckpt_path last --model.sampler heun --model.num_sampling_steps 25
	$(PY) cli.py test $(DEMO) --ckpt_path last
	$(PY) -m benchmarks.leaderboard

# The whole suite, SLURM cluster tests included (they install and start a one-node cluster).
# Two pytest-xdist workers, one torch thread each (tests/conftest.py): many tests wait on
# subprocess start-up and imports, so two workers keep both cores busy; the SLURM tests
# share one worker (one cluster). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)
test: install
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST)

# Everything except the SLURM cluster tests.
test-quick: install
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) -m "not slurm"

leaderboard: install
	$(PY) -m benchmarks.leaderboard

benchmarks: install
	$(PY) -m benchmarks.perf_training
	$(PY) -m benchmarks.perf_sampling

clean:
	rm -rf runs results lightning_logs .pytest_cache
