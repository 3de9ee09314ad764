# regulator: the targets a newcomer needs. `make help` lists them.
.DEFAULT_GOAL := help
.PHONY: help deps demo test lint bench fuzz python

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

deps: ## Install redis-server, prometheus, cargo-nextest and the Python venv (limitlion) if missing
	@scripts/deps.sh

demo: deps ## The whole loop: private Redis and Prometheus, a simulated database, workers, the daemon
	cargo run --release --example demo

test: deps ## Run every test against real redis-server, prometheus and limitlion, then the Python package's
	cargo test --workspace --doc --quiet
	cargo nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory python
	cd python && ../.venv/bin/python -m pytest -q
	.venv/bin/python -m mypy --strict python/regulator python/tests/typed_usage.py

python: deps ## Build the Python package `regulator` (python/) into .venv, and the Rust worker its tests run
	cd python && VIRTUAL_ENV=$(CURDIR)/.venv ../.venv/bin/maturin develop --quiet
	cargo build --quiet -p regulator-daemon --example loadgen

lint: deps ## cargo fmt --check, clippy -D warnings, rustdoc -D warnings, the client-only dependency check, deploy/ checks
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
	scripts/check-client-deps.sh
	scripts/check-deploy.sh

bench: deps ## Criterion benches; see BENCHMARKS.md for the load-generator runs
	cargo bench

fuzz: ## Fuzz config parsing, stored knobs and Prometheus answers, 10 minutes each (nightly)
	scripts/fuzz.sh 600
