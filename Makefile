# One command each, on a fresh clone (Python 3.10+ with venv):
#   make run    set up .venv and train + evaluate the default VAE on embedded MNIST
#   make test   set up .venv and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-all bench bench-gan bench-nade bench-ddpm clean
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

run: setup
	$(BIN)/python -m experiments.vae --config=configs/vae.py

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

bench: setup
	$(BIN)/python -m benchmarks.vae_throughput

bench-gan: setup
	$(BIN)/python -m benchmarks.gan_throughput

bench-nade: setup
	$(BIN)/python -m benchmarks.nade_throughput

bench-ddpm: setup
	$(BIN)/python -m benchmarks.ddpm_throughput

clean:
	rm -rf runs
