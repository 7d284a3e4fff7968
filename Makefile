# bertsearch: `make serve` (quick start: index the sample corpus and serve search at once; a
# reranker trains in the background and is served once it passes the gate) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned CPU wheel: an unpinned torch would pull a multi-GB CUDA build. Off this machine kind,
# add the CPU index: make serve TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
SAMPLE := var/sample/corpus.jsonl
INDEX_DIR ?= var/sample/index
RERANKER ?= var/sample/reranker
REGISTRY ?= var/sample/rerankers
HOST ?= 127.0.0.1
PORT ?= 8000
INSTALLED := $(VENV)/.installed

.PHONY: setup serve index reranker promote-reranker test lint bench

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

# The gate compares the trained reranker with hybrid retrieval on the sample's 45 judged queries
# (its only judged split, named test: hence --allow-test-split, recorded in the decision).
promote-reranker: $(RERANKER)/metadata.json
	$(BIN)/bertsearch reranker promote $(RERANKER) --registry $(REGISTRY) --dataset $(dir $(SAMPLE)) \
		--split test --allow-test-split --index-dir $(INDEX_DIR)

# Serves hybrid retrieval at once. While the registry holds no reranker version, the reranker is
# trained and gated in the background (flock: one such job at a time); the service switches to it
# by itself when it is promoted (GET /readyz says which stage it is in).
serve: $(INDEX_DIR)/CURRENT
	@mkdir -p $(REGISTRY)
	@if [ -z "$$(ls $(REGISTRY)/versions 2>/dev/null)" ]; then \
		echo "serving hybrid retrieval now; the sample reranker trains in the background (about 17 min on 2 cores;"; \
		echo "log: $(dir $(SAMPLE))reranker.log) and reranking turns on by itself once it passes the gate"; \
		nohup flock -n $(dir $(SAMPLE)).reranker.lock $(MAKE) --no-print-directory promote-reranker \
			> $(dir $(SAMPLE))reranker.log 2>&1 & \
	fi
	$(BIN)/bertsearch serve --index-dir $(INDEX_DIR) --reranker $(REGISTRY) --host $(HOST) --port $(PORT)

# lint-imports checks the layer contracts of pyproject.toml ([tool.importlinter]) first.
test: $(INSTALLED)
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
