# The one place that says how kdr is built and tested. `.ci/run` runs `make ci`.

CARGO ?= cargo

.PHONY: test lint ci rehearse test-brokers fuzz bench-scale bench-lookups bench-engine

# The README's test command: every test, unit, end-to-end on the embedded clusters, and the
# real-broker suite (scripts/test-brokers installs the pinned Nisshi broker first if missing:
# about 15 minutes, once per machine), scripts/test-browser installs Debian's chromium for the
# HTML report test, and scripts/test-tools the Python parser the metrics test reads
# `--metrics-file` back with, each only if missing.
test:
	scripts/test-brokers
	scripts/test-browser
	scripts/test-tools
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

# Fuzz the plan loader, then the MM2 codec, FUZZ_TIME seconds each (README "Fuzzing"). Needs a
# nightly toolchain and cargo-fuzz; not part of `test` or `ci`.
FUZZ_TIME ?= 600
fuzz:
	cd fuzz && mkdir -p corpus/plan_loader corpus/mm2_codec
	cd fuzz && $(CARGO) +nightly fuzz run -s none plan_loader corpus/plan_loader seeds/plan_loader -- \
		-max_total_time=$(FUZZ_TIME) -max_len=65536 -rss_limit_mb=2048 -dict=plan_loader.dict
	cd fuzz && $(CARGO) +nightly fuzz run -s none mm2_codec corpus/mm2_codec seeds/mm2_codec -- \
		-max_total_time=$(FUZZ_TIME) -max_len=65536 -rss_limit_mb=2048

# Offset translation at issue 10's size (5 000 groups x 100 partitions, 1 000 000 checkpoint
# records) on two Nisshi brokers: baseline read, translate, --apply, peak RSS, one line each.
# Takes minutes; not part of `test` or `ci`. KDR_BENCH_GROUPS/KDR_BENCH_PARTITIONS/KDR_BENCH_BIN
# change the size or the binary measured (benches/scale.rs).
bench-scale:
	scripts/test-brokers
	$(CARGO) bench --locked --bench scale

# The look-ups at scale (issue 10): `kdr lag`, `kdr status` and the batched watermarks against a
# bare librdkafka read, 20 topics x 1 000 partitions per side on two Nisshi brokers. Figures,
# printed, not asserted.
bench-lookups:
	scripts/test-brokers
	$(CARGO) bench --locked --bench scale_lookups

# Engine overhead (issue 10, target 4): a whole failover on the embedded world, the time beyond
# the plan's declared wait, and `kdr plan check`. Figures, printed, not asserted.
bench-engine:
	$(CARGO) bench --locked --bench engine_overhead
