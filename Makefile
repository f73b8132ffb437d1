# The one place that says how kdr is built and tested. `.ci/run` runs `make ci`.

CARGO ?= cargo

.PHONY: test lint ci rehearse test-brokers

# The README's test command: every test, unit and end-to-end.
test:
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Exactly what CI runs on a clean clone.
ci: lint test

# The real-broker suite: installs the pinned Nisshi broker if missing (about 14 minutes, once),
# then runs tests/brokers, which starts its own Nisshi processes on 127.0.0.1. Not part of `test`.
test-brokers:
	scripts/test-brokers
	$(CARGO) test --locked --test brokers
