# statim: the two commands are `make run` and `make test`. Everything runs inside the Debian
# forky environment (scripts/in-env), or natively on a host that has the packages.
PORT ?= 5000
DATA_DIR ?= data
MODELS_DIR ?= models
JOBS ?= $(shell nproc)
IN_ENV := scripts/in-env
# A throwaway PostgreSQL server for the unit tests' PostgreSQL store kind (STATIM_TEST_POSTGRES_URL)
WITH_PG := scripts/pg-test-server run
CMAKE_FLAGS ?=

.PHONY: all build run test test-sanitize build-sanitize test-tsan shell image test-image fuzz fuzz-build soak crash-loop fixtures bench clean ui ui-deps test-ui ui-screenshots js-deps

all: build

build:
	$(IN_ENV) cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	$(IN_ENV) cmake --build build -j $(JOBS)

run: build
	$(IN_ENV) env STATIM_AUTH_MODE=$${STATIM_AUTH_MODE:-off} build/statim serve --port $(PORT) --data-dir $(DATA_DIR) --models-dir $(MODELS_DIR)

# Unit + e2e tests on the normal build, then the same under ASan+UBSan.
test: build
	scripts/check-dockerfile
	tests/env/test_paths.sh
	$(IN_ENV) $(WITH_PG) ctest --test-dir build --output-on-failure -j $(JOBS)
	$(MAKE) js-deps
	$(IN_ENV) env STATIM_BIN=build/statim python3 -m pytest -q tests/e2e
	$(MAKE) test-ui
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS) FUZZ_NEW_FINDS=warn
	$(MAKE) test-sanitize

# The web dashboard (ui/): its npm packages (ui/package-lock.json, from the npm registry), and
# `make ui` to rebuild ui/dist after changing ui/src (the built files are committed: the binary
# embeds them, and neither `make build` nor the image needs Node.js).
ui-deps:
	$(IN_ENV) env -C ui npm ci --no-audit --no-fund --loglevel=error
ui: ui-deps
	$(IN_ENV) env -C ui npm run build
# The dashboard in a real browser (Debian's Chromium via playwright-core) against build/statim,
# after checking that the committed ui/dist is what ui/src builds to. Screenshots go to
# build/ui-test-artifacts.
test-ui: build ui-deps
	$(IN_ENV) ui/tests/check-dist.sh
	$(IN_ENV) env -C ui STATIM_BIN=$(CURDIR)/build/statim node --test --test-concurrency=1 'tests/*.test.mjs'
# Official JavaScript SDKs the e2e tests use as clients (tests/js/package-lock.json, npm registry).
js-deps:
	$(IN_ENV) env -C tests/js npm ci --no-audit --no-fund --loglevel=error
# The dashboard screenshots in docs/img, from a real statim with a mix of jobs.
ui-screenshots: build ui-deps
	$(IN_ENV) env -C ui STATIM_BIN=$(CURDIR)/build/statim node tests/screenshots.mjs
build-sanitize:
	$(IN_ENV) cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTATIM_SANITIZE=ON >/dev/null
	$(IN_ENV) cmake --build build-asan -j $(JOBS)

test-sanitize: build-sanitize
	$(IN_ENV) env ASAN_OPTIONS=detect_leaks=1 $(WITH_PG) ctest --test-dir build-asan --output-on-failure -j $(JOBS)
	$(IN_ENV) env STATIM_BIN=build-asan/statim STATIM_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0 python3 -m pytest -q tests/e2e
	$(MAKE) test-tsan

# ThreadSanitizer over the concurrent parts: the store's group commit, the scheduler, the compute budget and
# the model lifecycle. (Not the test that opens OpenMP regions: libgomp is not instrumented, so TSan
# cannot see its barriers and reports races on what the team shares.)
test-tsan:
	$(IN_ENV) cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSTATIM_TSAN=ON >/dev/null
	$(IN_ENV) cmake --build build-tsan -j $(JOBS) --target statim_unit_tests
	$(IN_ENV) env TSAN_OPTIONS=halt_on_error=1 $(WITH_PG) build-tsan/tests/unit/statim_unit_tests --gtest_filter='SqliteJobStoreTest.*:PostgresStoreTest.*:Stores/*:SchedulerTest.*:InProcessEventBus.*:PostgresEventBusTest.*:DispatcherTest.*:ComputeBudget.*:ModelLifecycleTest.*:ModelRegistry.*-ComputeBudget.OneOpenMpPool*'

# libFuzzer targets (tests/fuzz): built with clang, each run FUZZ_SECONDS over its seed corpus.
# make test runs them briefly (FUZZ_CI_SECONDS each); `make fuzz` for longer.
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 20
FUZZ_NEW_FINDS ?= fail
fuzz-build:
	$(IN_ENV) env CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTATIM_FUZZ=ON -DSTATIM_BUILD_TESTS=OFF >/dev/null
	$(IN_ENV) cmake --build build-fuzz -j $(JOBS) --target statim_fuzzers

fuzz: fuzz-build
	$(IN_ENV) env FUZZ_NEW_FINDS=$(FUZZ_NEW_FINDS) tests/fuzz/run.sh $(FUZZ_SECONDS)

# Long checks, not in make test (their short forms are in tests/e2e): a 30-minute soak of mixed
# load (plots bench/soak.png) and 50 kill -9 cycles under load.
SOAK_MINUTES ?= 30
soak: build
	$(IN_ENV) env STATIM_BIN=build/statim python3 bench/soak.py --minutes $(SOAK_MINUTES)

crash-loop: build
	$(IN_ENV) env STATIM_BIN=build/statim python3 bench/crash_loop.py --cycles 50

shell:
	$(IN_ENV) bash

fixtures:
	$(IN_ENV) python3 tests/fixtures/make_tiny_gguf.py build/fixtures/tiny.gguf

# The container image: docker build where a Docker engine runs, else buildah (scripts/build-image).
image:
	scripts/build-image

# Builds the image and runs it for real with podman (tests/image/test_image.py): the first key,
# one job per model kind, restart, read-only root, no network, healthcheck, compose.yaml.
test-image: image
	python3 tests/image/test_image.py statim:latest

clean:
	rm -rf build build-asan build-tsan build-fuzz
