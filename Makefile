# One entry point per task; CI (.ci/run) calls `make test`, exactly as the README says.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Rust build output lives outside the clone so fresh clones reuse it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rivet-target
# Azurite, the Azure Blob emulator the Azure tests start (from npm), kept outside the clone too.
export RIVET_NPM_DIR ?= $(HOME)/.cache/rivet-npm
AZURITE_VERSION := 3.35.0

.PHONY: demo test install lint bench bench-gate clean wheel

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

## install: build the native module (release) and install rivet with its test tools into .venv
install: $(PY)
	$(PIP) install --quiet --editable ".[test]"
	@command -v npm >/dev/null || { echo "make install needs npm (Node.js) to install azurite, the Azure emulator the tests start"; exit 1; }
	@test -x "$(RIVET_NPM_DIR)/node_modules/.bin/azurite-blob" || \
		npm install --silent --no-audit --no-fund --prefix "$(RIVET_NPM_DIR)" azurite@$(AZURITE_VERSION)

## wheel: an abi3 wheel (release build, manylinux-compatible on Linux) in dist/; it installs without Rust
wheel: $(PY)
	$(PIP) install --quiet "maturin>=1.8,<2"
	$(VENV)/bin/maturin build --release --locked --strip --out dist

## demo: export the bundled SQLite sample to ./output (no database server needed)
demo: install
	$(VENV)/bin/rivet demo

## test: the whole suite (Rust unit tests, then pytest against a real PostgreSQL)
test: install
	scripts/ensure-services
	cargo test --locked -p rivet-engine --quiet
	$(PY) -m pytest -q -ra

## lint: formatting and static checks
lint: install
	$(PIP) install --quiet --editable ".[lint]"
	$(VENV)/bin/ruff check python tests bench
	$(VENV)/bin/ruff format --check python tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m mypy.stubtest rivet._native
	cargo fmt --all --check
	cargo clippy --locked --all-targets -- -D warnings

## bench: the side-by-side benchmark at full size (minutes; see "Benchmarks" in README.md)
bench: install
	$(PIP) install --quiet --editable ".[bench]"
	$(PY) bench/run.py

## bench-gate: rivet against connectorx, ADBC and DuckDB on the small and medium tables; fails when
## rivet is over 10% slower than a peer or any method writes the wrong rows (figures: bench-gate.json)
bench-gate: install
	scripts/ensure-services
	$(PIP) install --quiet --editable ".[bench]"
	$(PY) -m pytest bench/test_gate.py -q

clean:
	rm -rf $(VENV) output .pytest_cache
