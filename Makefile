# The one place that says how kdr is built and tested. `.ci/run` runs `make ci`.

CARGO ?= cargo

.PHONY: test lint ci rehearse test-brokers

# The README's test command: every test, unit, end-to-end on the embedded clusters, and the
# real-broker suite (scripts/test-brokers installs the pinned Nisshi broker first if missing:
# about 15 minutes, once per machine).
test:
	scripts/test-brokers
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Exactly what CI runs on a clean clone.
ci: lint test

# Only the real-broker suite: tests/brokers starts its own Nisshi processes on 127.0.0.1.
test-brokers:
	scripts/test-brokers
	$(CARGO) test --locked --test brokers
