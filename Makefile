# bastion developer commands. The README's quickstart uses exactly two of them:
#   make demo   install bastion into .venv and start it with a demo upstream (https://localhost:8443)
#   make test   install bastion + test tools into .venv and run the test suite
# and for the inner loop of development:
#   make test-fast   the suite without the tests marked `slow` (under 2 minutes)
#
# Everything is installed from the lock file (uv.lock) with uv, which is itself
# installed into .tools/ from PyPI on first use — nothing global is touched.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: demo serve test test-fast lint typecheck audit bench-server clean bytecode rust-toolchain native-lint native-test

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit("bastion needs Python 3.11 or newer, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# --compile-bytecode: every `bastion` command and server start then reads compiled
# modules instead of compiling ~1,000 of them (3.4 s a start where PYTHONDONTWRITEBYTECODE
# is set, as on our CI machines; 1.8 s instead of 5 s for a CLI command).
# bastion's data plane is a Rust crate (native/) that maturin builds into the
# package as bastion._native: `uv sync` compiles it (release profile) the first
# time and again whenever a Rust source changes (pyproject.toml [tool.uv]).
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs native/src/*/*.rs native/src/*/*/*.rs)

rust-toolchain:
	@command -v cargo >/dev/null 2>&1 || { echo "bastion needs a Rust toolchain (cargo, rustc 1.80+) to build its native data plane: install it from https://rustup.rs and run make again" >&2; exit 1; }

.venv/.synced: $(UV) pyproject.toml uv.lock $(NATIVE_SOURCES) | rust-toolchain
	$(UV) sync --locked --python $(PYTHON) --quiet --compile-bytecode
	@touch $@

# bastion's own modules (installed editable): only the changed ones are compiled again.
bytecode: .venv/.synced
	@.venv/bin/python -m compileall -q src >/dev/null

demo: bytecode
	.venv/bin/bastion serve --demo

serve: bytecode
	.venv/bin/bastion serve

# The suite runs in parallel (pytest-xdist): TEST_WORKERS processes, cores + 1 by default
# (most tests also wait on servers, sockets and databases; the README has the measurements).
# Each test file runs on one worker (--dist loadfile: a module's server fixture starts once),
# the files with the most slow tests first (tests/conftest.py orders them;
# --no-loadscope-reorder keeps that order instead of xdist's, by test count). Each worker has
# its own databases, Redis database number and ports (tests/_support/workers.py).
# `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: bytecode native-test
	.venv/bin/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The fast tier for the inner loop: the tests that run in-process, leaving out the slow tier
# (every test that starts bastion in another process, tests/conftest.py) and the Rust crate's
# tests. The whole suite (`make test`) is what CI runs.
test-fast: bytecode
	.venv/bin/pytest $(PYTEST_PARALLEL) -m "not slow" $(PYTEST_ARGS)

lint: .venv/.synced native-lint
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

# The Rust crate: formatting, clippy with warnings as errors, and its unit and
# property tests under cargo-nextest (the pure-Rust core, without Python).
native-lint: | rust-toolchain
	cd native && cargo fmt --check
	cd native && cargo clippy --locked --all-targets --quiet -- -D warnings
	cd native && cargo clippy --locked --all-targets --quiet --features python -- -D warnings

native-test: | rust-toolchain
	cd native && cargo nextest run --locked --no-fail-fast --status-level fail

audit: .venv/.synced
	.venv/bin/python .ci/audit.py

bench-server: .venv/.synced
	.venv/bin/python bench/server/run.py

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache native/target src/bastion/_native*.so
