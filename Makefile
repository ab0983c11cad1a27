# The two commands of the README: `make demo` and `make test`.
# Both create or refresh .venv and install what they need (system packages too, as root on Debian).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the dom0 core: everything but the CLI layer must run on Python 3.6
CORE_EXCLUDE := (/cli/|/cli\.py)

.PHONY: all venv demo test vermin sysdeps clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# [cli] brings isal where it has wheels: .venv is what `pip install 'vhdport[cli]'` gives
	$(BIN)/python -m pip install -q -e '.[cli,test]'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	bash scripts/sysdeps.sh

vermin: $(STAMP)
	$(BIN)/vermin -q -t=3.6- --no-tips --violations --exclude-regex '$(CORE_EXCLUDE)' src/vhdport

test: $(STAMP) sysdeps vermin
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider tests

demo: $(STAMP)
	$(BIN)/vhdport demo

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis

# Benchmarks (bench/): vhdport against the original tar+gzip+HTTP path and qemu-img.
# bench-quick is a smoke run for CI: it fails only when vhdport's output is wrong.
# BENCH_ARGS, e.g. "--virtual-mib 2048": a smaller input on a busy machine
.PHONY: bench bench-quick
BENCH_ARGS ?=
bench: $(STAMP)
	bash bench/setup.sh $(VENV)
	-bash scripts/glance-setup.sh
	$(BIN)/python -m bench.run --doc docs/benchmarks.md $(BENCH_ARGS)

bench-quick: $(STAMP)
	bash bench/setup.sh $(VENV)
	$(BIN)/python -m bench.run --quick

# Hostile input and faults (tests/hostile/, R1-R7): runs them alone and regenerates
# docs/reliability.md from the results.  fuzz: a long atheris run, not part of CI.
FUZZ_SECONDS ?= 300
.PHONY: test-hostile fuzz
test-hostile: $(STAMP) sysdeps
	VHDPORT_WRITE_RELIABILITY=1 $(BIN)/python -m pytest -q -rs -p no:cacheprovider tests/hostile

fuzz: $(STAMP)
	$(BIN)/python -m pip install -q atheris
	mkdir -p .fuzz/corpus .fuzz/findings
	$(BIN)/python fuzz/fuzz_vhd.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=.fuzz/findings/ .fuzz/corpus
