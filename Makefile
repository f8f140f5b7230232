# axhw: two commands matter. `make demo` runs the main job, `make test` runs the tests; both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.axhw-installed
# Debian packages: simulators, synthesis, static timing/power, the osu018 standard-cell library.
APT_PACKAGES := iverilog yosys opensta qflow-tech-osu018
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test test-all lint bench rtl-verify power-report clean help

help:
	@echo "make demo      set up and run the main job on the embedded default data"
	@echo "make test      set up and run the default test suite"
	@echo "make test-all  run every test, slow ones included"
	@echo "make lint      ruff"
	@echo "make bench     benchmarks, JSON written under bench/results/"
	@echo "make rtl-verify  generate and simulate every multiplier, the PE and the array on trained networks"
	@echo "make power-report  synthesis, activity-based power and minimum-power configurations per dataset"

setup: $(STAMP)

# Installs the Debian packages when run as root (CI, fresh machines); otherwise says what is missing.
system-deps:
	@missing=""; \
	for tool in iverilog yosys sta; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	[ -f /usr/share/qflow/tech/osu018/osu018_stdcells.lib ] || missing="$$missing osu018"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $(APT_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "warning: missing$$missing; install with: sudo apt-get install $(APT_PACKAGES)" >&2; \
	  fi; \
	fi

# torch goes first and pinned: the CPU wheel 2.13.0 lies on disk, any looser request pulls CUDA builds.
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m axhw.lutkernel  # compiles the LUT matmul kernel (cc); without one: torch path
	touch $(STAMP)

# BP vs AxTrain at breast cancer's aggressive NTV voltage (400 mV): 5 seeds x 50 chips, SRAM voltage search,
# gate-level multiplier power, RTL check; ends with the measured gain. ~35 s on 2 busy cores; networks and
# synthesis are cached under ~/.cache/axhw ($$AXHW_CACHE).
demo: $(STAMP)
	$(BIN)/axhw demo

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check axhw tests bench sim

bench: $(STAMP)
	@mkdir -p bench/results
	$(BIN)/python bench/bench_matmul.py --out bench/results/matmul.json
	$(BIN)/python bench/bench_sram.py --out bench/results/sram.json
	$(BIN)/python bench/bench_train.py --out bench/results/train.json

rtl-verify: $(STAMP)
	$(BIN)/axhw rtl verify-all

# MNIST networks train for 10 epochs (5 act + 5 pas for AxTrain), the UCI sets for the default 30.
# LeNet-5 averages 10 NTV chips instead of 50: one integer run over its 10k test images takes ~2 s here.
power-report: $(STAMP)
	@for d in breast_cancer image_seg ionosphere satimage; do \
	  $(BIN)/axhw power report --dataset $$d --out build/power/report/$$d || exit 1; \
	done
	$(BIN)/axhw power report --dataset mnist_mlp --epochs 10 --out build/power/report/mnist_mlp
	$(BIN)/axhw power report --dataset mnist_cnn --epochs 10 --runs 10 --out build/power/report/mnist_cnn
	$(BIN)/axhw power summary --reports build/power/report

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
