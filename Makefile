# seqdiff: `make demo` (set up, fetch the offline human genome, train, sample, evaluate) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU PyTorch first, so no dependency pulls a multi-GB CUDA build. Elsewhere, e.g.:
#   make setup TORCH_SPEC=torch TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
STAMP  := $(VENV)/.seqdiff-installed
DEMO_DIR ?= outputs/demo
GENOME ?= grch37_chr20

.PHONY: setup demo test test-all lint fetch clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

fetch: setup
	$(BIN)/python scripts/fetch_genome.py $(GENOME)

# Train the default model (~5 min on 2 cores), sample 1 kb sequences (longer than the 256-bp window, so
# semi-autoregressive), and score held-out test DNA. Re-running resumes / reuses the finished run.
demo: fetch
	$(BIN)/python scripts/train.py hydra.run.dir=$(DEMO_DIR)
	$(BIN)/python scripts/sample.py checkpoint=$(DEMO_DIR)/checkpoints/last.ckpt num_samples=8 length=1024 \
		out=$(DEMO_DIR)/samples.fasta progress=false
	$(BIN)/python scripts/evaluate.py checkpoint=$(DEMO_DIR)/checkpoints/last.ckpt split=test \
		out=$(DEMO_DIR)/eval_test.json
	@echo
	@echo "Results in $(DEMO_DIR)/:"
	@echo "  checkpoints/last.ckpt   trained model (load with seqdiff.load)"
	@echo "  metrics.json            training metrics (throughput, val/test bits per base)"
	@echo "  samples.fasta           8 sampled 1,024-bp sequences"
	@echo "  eval_test.json          held-out test bits per base (NELBO) with standard error"
	@echo "  logs/metrics.csv        training curves"

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check seqdiff scripts tests

clean-demo:
	rm -rf $(DEMO_DIR)
