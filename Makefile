# One command each, on a fresh clone (Python 3.10+ with venv):
#   make run       set up .venv (runtime lock) and train + evaluate the default VAE on embedded MNIST
#   make test      set up .venv (runtime + dev locks) and run the default test suite
#   make test-all  the same with the tests marked slow too (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: setup setup-dev run test test-all bench bench-gan bench-nade bench-ddpm bench-flow bench-sweep bench-xla bench-mcmc bench-pixelcnn bench-recommend clean
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# Runtime only: what genjax imports (no pytest, no PyTorch).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

# Tests and benchmarks: pytest, and PyTorch for the benchmarks' peers.
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock
	$(PIP) -r requirements-dev.lock
	touch $@

run: setup
	$(BIN)/python -m experiments.vae --config=configs/vae.py

test: setup-dev
	$(BIN)/python -m pytest -q

test-all: setup-dev
	$(BIN)/python -m pytest -q -m ''

bench: setup-dev
	$(BIN)/python -m benchmarks.vae_throughput

bench-gan: setup-dev
	$(BIN)/python -m benchmarks.gan_throughput

bench-nade: setup-dev
	$(BIN)/python -m benchmarks.nade_throughput

bench-ddpm: setup-dev
	$(BIN)/python -m benchmarks.ddpm_throughput

bench-flow: setup-dev
	$(BIN)/python -m benchmarks.flow_throughput

bench-xla: setup-dev
	$(BIN)/python -m benchmarks.xla_cpu_options

bench-sweep: setup-dev
	$(BIN)/python -m benchmarks.sweep_throughput

clean:
	rm -rf runs

bench-mcmc: setup-dev
	$(BIN)/python -m benchmarks.mcmc_throughput

bench-pixelcnn: setup-dev
	$(BIN)/python -m benchmarks.pixelcnn_throughput
bench-recommend: setup-dev
	$(BIN)/python -m benchmarks.recommend_throughput
