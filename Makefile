# bertsearch: `make serve` (quick start: index the sample corpus, serve search) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned CPU wheel: an unpinned torch would pull a multi-GB CUDA build. Off this machine kind,
# add the CPU index: make serve TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
SAMPLE := var/sample/corpus.jsonl
INDEX_DIR ?= var/sample/index
HOST ?= 127.0.0.1
PORT ?= 8000
INSTALLED := $(VENV)/.installed

.PHONY: setup serve index test lint bench

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $@

$(SAMPLE): $(INSTALLED)
	$(BIN)/bertsearch sample-corpus $@

# Rebuilt only when the sample corpus changes; each build is a new index version.
$(INDEX_DIR)/CURRENT: $(SAMPLE)
	$(BIN)/bertsearch index $(SAMPLE) --index-dir $(INDEX_DIR)

index: $(INDEX_DIR)/CURRENT

serve: $(INDEX_DIR)/CURRENT
	$(BIN)/bertsearch serve --index-dir $(INDEX_DIR) --host $(HOST) --port $(PORT)

test: $(INSTALLED)
	$(BIN)/pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
