# tfmpq developer targets. Reuse an existing environment with `make test VENV=/path/to/venv`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH ?= bench.search_speed
BENCH_ARGS ?=
# 1: notebooks run with tiny settings (what CI checks); 0: the full runs the notebooks describe.
NOTEBOOK_SMALL ?= 1
# TensorFlow versions `make compat` checks: the oldest and the newest supported.
COMPAT_TF ?= 2.16.2 2.21.0

.PHONY: venv test test-slow demo bench notebooks wheel compat clean

# Creates $(VENV) and installs the pinned requirements and tfmpq (editable, with the dev extras:
# pytest, nbclient, ...), unless $(VENV) already has them.
venv:
	@if [ -x "$(PY)" ] && "$(PY)" -c "import tensorflow, tf_keras, tensorflow_model_optimization, deap, pytest, optuna, scipy.optimize" 2>/dev/null; then \
		echo "Using the environment in $(VENV)"; \
	else \
		set -e; \
		"$(PYTHON)" -m venv "$(VENV)"; \
		"$(PY)" -m pip install --upgrade pip; \
		"$(PY)" -m pip install -r requirements.txt; \
		"$(PY)" -m pip install -e ".[dev]"; \
	fi
	@# Ray is optional (pip install tfmpq[ray]); the Ray executor tests skip cleanly without it.
	@"$(PY)" -c "import ray" 2>/dev/null || "$(PY)" -m pip install "ray>=2.9" \
		|| echo "note: Ray could not be installed; the Ray executor tests will be skipped"

test: venv
	"$(PY)" -m pytest -m "not slow" -q tests

test-slow: venv
	"$(PY)" -m pytest -m slow -q tests

demo: venv
	"$(PY)" -m tfmpq.demo

bench: venv
	@if [ -f "$(subst .,/,$(BENCH)).py" ]; then "$(PY)" -m $(BENCH) $(BENCH_ARGS); \
	else echo "No benchmark module $(BENCH); nothing to run."; fi

# Executes every notebooks/*.ipynb with nbclient (TFMPQ_NOTEBOOK_SMALL=$(NOTEBOOK_SMALL)); the executed
# copies go to a temporary folder so the notebooks in the repo keep their outputs.
notebooks: venv
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		"$(PY)" -c "import nbclient, nbformat, ipykernel" 2>/dev/null || "$(PY)" -m pip install nbclient nbformat ipykernel; \
		TFMPQ_NOTEBOOK_SMALL=$(NOTEBOOK_SMALL) "$(PY)" .ci/run_notebooks.py notebooks/*.ipynb; \
	else \
		echo "No notebooks in notebooks/; nothing to run."; \
	fi

# dist/tfmpq-VERSION-py3-none-any.whl: what the notebooks install when it is uploaded next to them.
# build/lib is removed first: setuptools would otherwise pack files deleted since the last build.
wheel:
	rm -rf build/lib build/bdist.* dist/tfmpq-*.whl
	"$(PYTHON)" -m pip wheel --no-deps -q -w dist .
	@ls dist/tfmpq-*.whl

# For each TensorFlow in COMPAT_TF: a fresh venv (build/compat/tf-VERSION) with that TensorFlow and its
# default Keras 3 only; notebook 1 runs there with small settings and installs tfmpq from the wheel
# itself, as on Colab. Results: build/compat/table.md (the README's table) and results.json.
compat: wheel
	"$(PYTHON)" .ci/compat.py --wheel "$$(ls dist/tfmpq-*.whl | tail -n 1)" --tensorflow $(COMPAT_TF) \
		--python "$(PYTHON)" --out build/compat

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
