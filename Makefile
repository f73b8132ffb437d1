# The one place that says how kdr is built and tested. `.ci/run` runs `make ci`.

CARGO ?= cargo

.PHONY: test lint ci rehearse

# The README's test command: every test, unit and end-to-end.
test:
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Exactly what CI runs on a clean clone.
ci: lint test
