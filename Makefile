# The two commands of the README: `make demo` and `make test`.
# Both create or refresh .venv and install what they need (system packages too, as root on Debian).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the dom0 core: everything but the CLI layer must run on Python 3.6
CORE_EXCLUDE := (/cli/|/cli\.py)

.PHONY: all venv demo test test-py36 lint vermin sysdeps clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# [cli] brings isal where it has wheels: .venv is what `pip install 'vhdport[cli]'` gives
	$(BIN)/python -m pip install -q -e '.[cli,test,openstack]'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	bash scripts/sysdeps.sh

vermin: $(STAMP)
	$(BIN)/vermin -q -t=3.6- --no-tips --violations --exclude-regex '$(CORE_EXCLUDE)' src/vhdport

# ruff (pyflakes and a few cheap rules, see pyproject.toml) and vulture: dead code in
# src/ (tests and bench count as users; scripts/vulture_whitelist.py names the rest)
lint: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz scripts
	@! $(BIN)/vulture src/vhdport tests bench scripts/vulture_whitelist.py --min-confidence 60 \
		| grep '^src/' || { echo "vulture: dead code above (remove it or whitelist it)"; false; }

test: $(STAMP) sysdeps vermin lint
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider tests
	$(MAKE) test-py36

# dom0's interpreter: the vendored CPython 3.6.15 (tests/runtimes/, sha256-checked, unpacked into
# .py36/), a 3.6 virtualenv with the last test tools for 3.6, and the core's tests and the plugin
# end to end under it.  Nothing may skip there (tests/runtimes/py36_run.py lists what is left out).
PY36_VENV  := .venv36
PY36_STAMP := $(PY36_VENV)/.installed
PY36_REQS  := tests/runtimes/requirements-py36.txt
PY36_TESTS := tests/format tests/vhd tests/disk $(wildcard tests/qcow2) tests/sr tests/bundle tests/stores tests/transfer tests/plugin

$(PY36_STAMP): $(PY36_REQS) tests/runtimes/python3.6.15-debian12-x86_64.tar.xz | sysdeps
	rm -rf $(PY36_VENV)
	py36="$$($(PYTHON) tests/runtimes/py36.py)" && "$$py36" -m venv $(PY36_VENV)
	$(PY36_VENV)/bin/python -m pip install -q 'pip==21.3.1'
	$(PY36_VENV)/bin/python -m pip install -q -r $(PY36_REQS)
	touch $(PY36_STAMP)

test-py36: sysdeps $(PY36_STAMP)
	PYTHONPATH=$(CURDIR)/src $(PY36_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		-p tests.runtimes.py36_run $(PY36_TESTS)

demo: $(STAMP)
	$(BIN)/vhdport demo

clean:
	rm -rf $(VENV) $(PY36_VENV) .py36 build dist src/*.egg-info .pytest_cache .hypothesis

# Benchmarks (bench/): vhdport against the original tar+gzip+HTTP path and qemu-img.
# bench-quick is a smoke run for CI: it fails only when vhdport's output is wrong.
# BENCH_ARGS, e.g. "--virtual-mib 2048": a smaller input on a busy machine
.PHONY: bench bench-quick bench-qcow2
BENCH_ARGS ?=
bench: $(STAMP)
	bash bench/setup.sh $(VENV)
	-bash scripts/glance-setup.sh
	$(BIN)/python -m bench.run --doc docs/benchmarks.md $(BENCH_ARGS)

bench-quick: $(STAMP)
	bash bench/setup.sh $(VENV)
	$(BIN)/python -m bench.run --quick

# the QCOW2 rows (Q1-Q3) alone: a minute, not the whole suite
QCOW2_BENCH_ARGS ?= --virtual-mib 1024 --repeat 5
bench-qcow2: $(STAMP)
	bash bench/setup.sh $(VENV)
	$(BIN)/python -m bench.qcow2_bench $(QCOW2_BENCH_ARGS)

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
