# bertsearch: `make serve` (quick start: index the sample corpus, train a reranker on it, serve
# search) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned CPU wheel: an unpinned torch would pull a multi-GB CUDA build. Off this machine kind,
# add the CPU index: make serve TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
SAMPLE := var/sample/corpus.jsonl
INDEX_DIR ?= var/sample/index
RERANKER ?= var/sample/reranker
HOST ?= 127.0.0.1
PORT ?= 8000
INSTALLED := $(VENV)/.installed

.PHONY: setup serve index reranker test lint bench

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

# The sample corpus has no training judgments: the reranker learns label-free from sentences cut
# out of its documents (crop pseudo-queries), and counts 0.1 against the fused score, the weight
# chosen for a label-free model on SciFact dev (docs/training.md). About 17 minutes on 2 cores,
# once; retrained only when the index is rebuilt.
$(RERANKER)/metadata.json: $(INDEX_DIR)/CURRENT
	$(BIN)/bertsearch train $(dir $(SAMPLE)) --pseudo-queries crop --pseudo-limit 1000 --index-dir $(INDEX_DIR) \
		--out $(RERANKER) --workers 2 --epochs 1 --max-length 256 --mine-depth 50 --negatives 7 \
		--groups-per-batch 2 --grad-accum 2 --lr 1e-4 --head-lr 1e-3 --warmup-ratio 0.1 --seed 13 \
		--rerank-weight 0.1

reranker: $(RERANKER)/metadata.json

serve: $(RERANKER)/metadata.json
	$(BIN)/bertsearch serve --index-dir $(INDEX_DIR) --reranker $(RERANKER) --host $(HOST) --port $(PORT)

# lint-imports checks the layer contracts of pyproject.toml ([tool.importlinter]) first.
test: $(INSTALLED)
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
