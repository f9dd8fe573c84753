# normd - build, test, benchmark.
#
#   make            build the engine library (build/libndcore.a) and the test runner
#   make test       install missing dependencies, build, run every Check suite
#   make bench      kernel throughput next to this machine's measured memory bandwidth
#   make asan       ASan + UBSan build in build-asan/, all tests    (make tsan: TSan)
#   make soak       a mixed workload for SOAK_SECONDS; fails on 5xx or growing RSS / fds
#   make fuzz       each libFuzzer harness for FUZZ_SECONDS (tests/fuzz/, needs clang)
#   make deps       apt-get the Debian packages pkg-config cannot find (deps-browser: chromium)
#   make test-scale redis-server, 3 replicas (--store redis://) and nginx: the scale-out checks
#   make bench-scale train-steps/s and forwards/s: dir store, Redis, 1-3 replicas behind nginx
#   make format     clang-format every C file of core/, api/, server/ and tests/ (format-check:
#                   fail on any file it would change; CI runs it)
#
# Knobs: WERROR=1 (CI), SANITIZER=address|undefined|thread, OPT=..., NATIVE=1, V=1,
# CK_RUN_SUITE=pool (one suite), CFLAGS/LDFLAGS (appended, never replacing ours),
# NAIVE=1 (nd_norm_* run core/norm_naive.c's plain loops, one thread, 30-160x slower: to check
# a result of the fast kernels end to end; give it its own BUILD=build-naive-on).

PKGS_CHECK := check
# Everything the project builds against, and the tools its tests call.
DEB_PKGS   := gcc libc6-dev make pkg-config check libmicrohttpd-dev libjansson-dev libuv1-dev \
              zlib1g-dev python3 python3-yaml curl libhiredis-dev redis-server

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings \
        -Wpointer-arith -Wformat=2 -Wvla -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN += -Werror
endif

OPT   ?= -O2 -g
# Kernels get -O3 so gcc vectorizes their loops (-O2's cheap cost model skips loops with
# remainders). Never -ffast-math: results must not depend on reassociation.
KOPT  ?= -O3 -fno-math-errno
ifeq ($(NATIVE),1)
OPT  += -march=native
endif

BUILD ?= build
ifdef SANITIZER
BUILD   := build-$(SANITIZER)
SANFLAGS := -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer
ifeq ($(SANITIZER),address)
SANFLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
endif
endif

BASE_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -I. $(WARN) $(OPT) $(SANFLAGS) -MMD -MP
# NAIVE=1: norm_kernels.c hands every pass to its plain twin in norm_naive.c.
ifeq ($(NAIVE),1)
BASE_CFLAGS += -DND_KERNELS_NAIVE
endif
LDLIBS_CORE := -lm -lpthread

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- sources ----------------------------------------------------------------------------------

CORE_SRC    := $(wildcard core/*.c)
KERNEL_SRC  := $(wildcard core/norm_*.c)
CORE_OBJ    := $(CORE_SRC:%.c=$(BUILD)/%.o)
API_SRC     := $(wildcard api/*.c)
API_OBJ     := $(API_SRC:%.c=$(BUILD)/%.o)
SRV_SRC     := $(wildcard server/*.c)
SRV_OBJ     := $(SRV_SRC:%.c=$(BUILD)/%.o)
TEST_SRC    := $(wildcard tests/check_*.c tests/ref_*.c)
TEST_OBJ    := $(TEST_SRC:%.c=$(BUILD)/%.o)
TEST_API_SRC := $(wildcard tests/api/check_*.c)
TEST_API_OBJ := $(TEST_API_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/check_main_api.o
TEST_SRV_SRC := $(wildcard tests/server/check_*.c)
TEST_SRV_OBJ := $(TEST_SRV_SRC:%.c=$(BUILD)/%.o) $(BUILD)/tests/check_main_server.o
BENCH_SRC   := tests/bench/bench_norm.c tests/bench/bench_json.c
BENCH_OBJ   := $(BENCH_SRC:%.c=$(BUILD)/%.o)

CHECK_CFLAGS = $(shell pkg-config --cflags $(PKGS_CHECK) 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs $(PKGS_CHECK) 2>/dev/null)
JSON_CFLAGS  = $(shell pkg-config --cflags jansson 2>/dev/null)
JSON_LIBS    = $(shell pkg-config --libs jansson 2>/dev/null)
# server/ also talks to Redis (--store redis://) with hiredis, its async API on our libuv loop.
HTTP_CFLAGS  = $(shell pkg-config --cflags libmicrohttpd libuv hiredis 2>/dev/null)
HTTP_LIBS    = $(shell pkg-config --libs libmicrohttpd libuv hiredis 2>/dev/null)
ZLIB_LIBS    = $(shell pkg-config --libs zlib 2>/dev/null || echo -lz)

.PHONY: all test fuzz-replay load soak bench bench-durability asan tsan ubsan valgrind deps format format-check lint check-layering clean run help
.PHONY: deps-browser lint-api
.PHONY: image image-test compose-test compose-scaled-test
.PHONY: test-scale bench-scale

all: $(BUILD)/normd $(BUILD)/tests/check_main $(BUILD)/tests/check_api $(BUILD)/tests/check_server

help:
	@sed -n '1,/^$$/p' Makefile

# ---- build rules ------------------------------------------------------------------------------

# core/ is compiled with no pkg-config flags at all: it must not see JSON, HTTP or libuv.
$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(if $(filter $<,$(KERNEL_SRC)),$(KOPT)) $(CFLAGS) -c $< -o $@

# api/ sees jansson and core, nothing of HTTP.
$(BUILD)/api/%.o: api/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(JSON_CFLAGS) $(CFLAGS) -c $< -o $@

# server/ sees libmicrohttpd, libuv and api.h; never jansson.
$(BUILD)/server/%.o: server/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(HTTP_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/normd: $(SRV_OBJ) $(BUILD)/libndapi.a $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $(SRV_OBJ) $(BUILD)/libndapi.a \
		$(BUILD)/libndcore.a $(HTTP_LIBS) $(JSON_LIBS) $(ZLIB_LIBS) $(LDLIBS_CORE)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CHECK_CFLAGS) $(JSON_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/tests/check_main_api.o: tests/check_main.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $< (api)")
	$(Q)$(CC) $(BASE_CFLAGS) $(CHECK_CFLAGS) '-DND_SUITES_FILE="tests/api/suites.def"' \
		$(CFLAGS) -c $< -o $@

$(BUILD)/tests/check_main_server.o: tests/check_main.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $< (server)")
	$(Q)$(CC) $(BASE_CFLAGS) $(CHECK_CFLAGS) '-DND_SUITES_FILE="tests/server/suites.def"' \
		$(CFLAGS) -c $< -o $@

$(BUILD)/libndcore.a: $(CORE_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

$(BUILD)/libndapi.a: $(API_OBJ) $(BUILD)/gen/ui_assets.o
	@$(if $(Q),echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

# The dashboard's files (api/ui/, GET /ui) become one C source by a host program built first:
# no xxd or python at build time. The folders are prerequisites so that a removed file counts.
UI_FILES := $(sort $(wildcard api/ui/*.* api/ui/vendor/*.js api/ui/vendor/*.css) \
              $(wildcard api/ui/vendor/LICENSE))
$(BUILD)/tools/embed_assets: tools/embed_assets.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -std=c11 -O2 $(WARN) -o $@ $<

$(BUILD)/gen/ui_assets.c: $(BUILD)/tools/embed_assets $(UI_FILES) api/ui api/ui/vendor
	@mkdir -p $(@D)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$(BUILD)/tools/embed_assets $@ api/ui $(UI_FILES)

$(BUILD)/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c api/ui_assets.h
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

# Core tests link only libndcore.a, libm, pthreads and Check: a stray dependency is a link error.
$(BUILD)/tests/check_main: $(TEST_OBJ) $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libndcore.a \
		$(CHECK_LIBS) $(LDLIBS_CORE)

$(BUILD)/tests/check_api: $(TEST_API_OBJ) $(BUILD)/libndapi.a $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $(TEST_API_OBJ) $(BUILD)/libndapi.a \
		$(BUILD)/libndcore.a $(CHECK_LIBS) $(JSON_LIBS) $(LDLIBS_CORE)

# server/ modules that stand alone (no daemon, no loop): encoding.c (with zlib), trace.c,
# change_msg.c and store_log.c (with zlib).
$(BUILD)/tests/check_server: $(TEST_SRV_OBJ) $(BUILD)/server/encoding.o $(BUILD)/server/trace.o \
		$(BUILD)/server/change_msg.o $(BUILD)/server/store_log.o $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $(TEST_SRV_OBJ) $(BUILD)/server/encoding.o \
		$(BUILD)/server/trace.o $(BUILD)/server/change_msg.o $(BUILD)/server/store_log.o \
		$(BUILD)/libndcore.a $(CHECK_LIBS) $(ZLIB_LIBS) $(LDLIBS_CORE)

$(BUILD)/bench_norm: $(BUILD)/tests/bench/bench_norm.o $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libndcore.a $(LDLIBS_CORE)

# JSON numbers of a medium forward: parse and print, ns per number and per byte.
$(BUILD)/bench_json: $(BUILD)/tests/bench/bench_json.o $(BUILD)/libndapi.a $(BUILD)/libndcore.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) $(SANFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libndapi.a $(BUILD)/libndcore.a \
		$(JSON_LIBS) $(LDLIBS_CORE)

$(BUILD)/tests/bench/%.o: tests/bench/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(KOPT) $(JSON_CFLAGS) $(CFLAGS) -c $< -o $@

# The libFuzzer harnesses, built with gcc and tests/fuzz/replay.c instead of libFuzzer: make test
# replays the committed corpus and every past finding (tests/fuzz/regressions/) through them.
FUZZ_HARNESSES := fuzz_api fuzz_json_fast fuzz_tensor fuzz_definition fuzz_persist fuzz_config \
                  fuzz_encoding fuzz_store_log
REPLAY_OBJ := $(BUILD)/server/config.o $(BUILD)/server/log.o $(BUILD)/server/encoding.o \
              $(BUILD)/server/trace.o $(BUILD)/server/change_msg.o $(BUILD)/server/store_log.o
$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz_util.h $(REPLAY_OBJ) \
		$(BUILD)/libndapi.a $(BUILD)/libndcore.a
	@mkdir -p $(@D)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(BASE_CFLAGS) $(JSON_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ tests/fuzz/$*.c \
		tests/fuzz/replay.c $(REPLAY_OBJ) $(BUILD)/libndapi.a $(BUILD)/libndcore.a $(JSON_LIBS) \
		$(ZLIB_LIBS) $(LDLIBS_CORE)

fuzz-replay: $(FUZZ_HARNESSES:%=$(BUILD)/fuzz-replay/%)
	$(Q)for h in $(FUZZ_HARNESSES); do \
	  $(BUILD)/fuzz-replay/$$h tests/fuzz/corpus/$$h tests/fuzz/regressions/$$h || exit 1; done

-include $(CORE_OBJ:.o=.d) $(API_OBJ:.o=.d) $(SRV_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(TEST_API_OBJ:.o=.d) \
	$(TEST_SRV_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)

# ---- dependencies -----------------------------------------------------------------------------

# Installs what pkg-config (or the compiler check) cannot find; a no-op on a ready machine.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
deps:
	@if command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 && \
	    command -v python3 >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 && \
	    python3 -c 'import yaml' 2>/dev/null && \
	    command -v redis-server >/dev/null 2>&1 && \
	    pkg-config --exists libmicrohttpd jansson libuv check zlib hiredis; then :; else \
	  echo "installing build dependencies: $(DEB_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(DEB_PKGS) >/dev/null; fi

# The headless browser of tests/server/test_browser.py (Debian's chromium), apart from deps: only
# that test needs it, and it is large.
BROWSER_PKGS := chromium
deps-browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing $(BROWSER_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    $(BROWSER_PKGS) >/dev/null; }

# ---- tests ------------------------------------------------------------------------------------

# Check's per-test timeouts are liveness bounds (a deadlock ends as a failure), never speed
# goals: ten times longer, so a busy machine or TSan never trips them.
CK_TIMEOUT_MULTIPLIER ?= 10

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory check-layering
	$(Q)CK_TIMEOUT_MULTIPLIER=$(CK_TIMEOUT_MULTIPLIER) $(BUILD)/tests/check_main
	$(Q)CK_TIMEOUT_MULTIPLIER=$(CK_TIMEOUT_MULTIPLIER) $(BUILD)/tests/check_api
	$(Q)CK_TIMEOUT_MULTIPLIER=$(CK_TIMEOUT_MULTIPLIER) $(BUILD)/tests/check_server
	$(Q)$(MAKE) --no-print-directory fuzz-replay
	$(Q)NORMD=$(BUILD)/normd tests/server/test_http.sh
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_hardening.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_export.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_oip.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_history.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_http_more.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_large_body.py
	$(Q)$(MAKE) --no-print-directory deps-browser && NORMD=$(BUILD)/normd python3 tests/server/test_browser.py
	$(Q)$(MAKE) --no-print-directory deps-browser && NORMD=$(BUILD)/normd python3 tests/server/test_ui.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/deploy/test_grafana.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_defaults.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_frameworks.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_options.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_encoding.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_trace.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_schema.py
	$(Q)NORMD=$(BUILD)/normd python3 tests/server/test_redis_store.py
	$(Q)NORMD=$(BUILD)/normd python3 -m unittest discover -s clients/python/tests -t clients/python
	$(Q)command -v node >/dev/null 2>&1 || { echo "installing nodejs"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs >/dev/null; } && \
	  NORMD=$(BUILD)/normd node --test clients/js/test/normd.test.mjs
	$(Q)python3 tests/server/test_docs.py
	$(Q)NORMD=$(BUILD)/normd tests/server/test_durability.sh
	$(Q)NORMD=$(BUILD)/normd tests/server/test_durability_log.sh
	$(Q)NORMD=$(BUILD)/normd tests/server/test_compat.sh
	$(Q)NORMD=$(BUILD)/normd tests/server/conformance.sh
	$(Q)NORMD=$(BUILD)/normd tests/deploy/test_probe.sh
	$(Q)tests/deploy/test_manifests.sh

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address test
ubsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=undefined test
tsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=thread test

valgrind: all
	CK_FORK=no valgrind --error-exitcode=1 --leak-check=full $(BUILD)/tests/check_main

# Builds (installing dependencies when missing) and serves on port 8080 in the foreground.
run: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(BUILD)/normd $(RUN_ARGS)

# Load test with wrk: normd beside nginx (the ceiling) in one run, tiny/medium JSON, binary and a
# 64 MiB body, as ratios (tests/load/load.sh; installs both when missing). LOAD_SECONDS per row
# (default 5), LOAD_PAIRS alternating runs (default 3).
load: deps
	$(Q)command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  (command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]) && command -v wrk >/dev/null || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    --no-install-recommends wrk nginx-light >/dev/null; }
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(Q)NORMD=$(BUILD)/normd tests/load/load.sh $(LOAD_SECONDS) $(LOAD_PAIRS)

# Soak: 32 keep-alive clients run a mixed workload for SOAK_SECONDS (default 60); fails on a 5xx,
# a dropped connection, or RSS/fd growth after warm-up (tests/soak/README.md). normd flags:
# SOAK_ARGS="--threads 2".
SOAK_SECONDS ?= 60
soak: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(Q)NORMD=$(BUILD)/normd SOAK_SECONDS=$(SOAK_SECONDS) python3 tests/soak/soak.py \
		$(if $(SOAK_ARGS),-- $(SOAK_ARGS))

# Scaled out on this machine: redis-server (AOF) + three normd replicas with --store redis:// +
# nginx rendered from docker/nginx.conf (tests/scale/test_scale.py; not in `make test`: .ci/run
# calls it). Skips when redis-server or nginx is missing, unless CI is set.
test-scale: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(Q)NORMD=$(BUILD)/normd python3 tests/scale/test_scale.py

# Train-steps/s and forwards/s: dir store, Redis (appendfsync always / everysec), 1-3 replicas
# behind nginx (tests/scale/bench_scale.sh; BENCH_SECONDS per run).
bench-scale: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(Q)NORMD=$(BUILD)/normd tests/scale/bench_scale.sh $(BENCH_SECONDS)

# Train-steps/s with and without --data-dir (the cost of durability).
bench-durability: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/normd
	$(Q)NORMD=$(BUILD)/normd tests/server/bench_durability.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/bench_norm $(BUILD)/bench_json
	$(Q)$(BUILD)/bench_norm
	$(Q)$(BUILD)/bench_json

# core/ may include only the C library, POSIX threads (pool.c) and its own headers.
check-layering:
	@bad=$$(grep -nE '^\s*#\s*include\s*[<"](jansson|microhttpd|uv)\.h[>"]|#\s*include\s*"(\.\./)?(api|server)/' core/*.[ch]); \
	if [ -n "$$bad" ]; then echo "layering: core/ includes an upper floor:"; echo "$$bad"; exit 1; fi
	@bad=$$(grep -lE '^\s*#\s*include\s*<pthread\.h>' core/*.[ch] | grep -v '^core/pool\.c$$'); \
	if [ -n "$$bad" ]; then echo "layering: only core/pool.c may include <pthread.h>: $$bad"; exit 1; fi
	@bad=$$(grep -nE '^\s*#\s*include\s*[<"]((microhttpd|uv)\.h|sys/socket\.h|netinet/|server/|core/(internal|layer_impl|norm_walk)\.h)' api/*.[ch] 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "layering: api/ includes HTTP, sockets, server/ or core internals:"; echo "$$bad"; exit 1; fi
	@bad=$$(grep -nE '^\s*#\s*include\s*[<"](jansson\.h|core/(norm_kernels|norm_walk|layer_impl|internal)\.h|api/(internal|errors|json_tensor|jw|tensor_io)\.h)' server/*.[ch] 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "layering: server/ includes jansson, core kernels or internals, or api internals:"; echo "$$bad"; exit 1; fi
	@echo "  layering ok"

# ---- container image and deployment files (docker or podman, whichever is present) -----------

IMAGE ?= normd:latest

# Builds $(IMAGE) from the Dockerfile (multi-stage, debian:bookworm-slim).
image:
	$(Q)IMAGE=$(IMAGE) docker/image_test.sh build

# Builds and runs the image: a layer, a forward, a train-step, SIGTERM exits 0; size, build time.
image-test:
	$(Q)IMAGE=$(IMAGE) docker/image_test.sh

# docker/compose.yaml up, a create, a forward and an extract through nginx, down.
compose-test:
	$(Q)docker/compose_test.sh

# The scaled profile: Redis (AOF) + 3 normd + nginx; through nginx and on every replica, Redis
# stopped (503s, forwards served) and back, down and up (the layers come back from Redis's volume).
compose-scaled-test:
	$(Q)docker/compose_test.sh scaled

# ---- tooling ----------------------------------------------------------------------------------

# Every C file of the three floors and their tests, in the house style (.clang-format);
# format-check fails on any file that format would change (CI runs it).
FORMAT_FILES = $(wildcard core/*.[ch] api/*.[ch] server/*.[ch] tests/*.[ch] tests/api/*.c \
                 tests/server/*.c tests/bench/*.c tests/fuzz/*.c tests/tools/*.c)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	$(Q)clang-format --dry-run -Werror $(FORMAT_FILES)
	$(Q)echo "  format ok ($(words $(FORMAT_FILES)) files)"

# api/openapi.yaml through Redocly's and Spectral's OpenAPI linters (recommended rules; configs
# in tools/lint-api/), installed there by npm at the versions package-lock.json pins. Needs node
# and npm (Debian's nodejs and npm); fails on any error, prints warnings.
LINT_API_DIR := tools/lint-api
# npm writes node_modules/.package-lock.json: reinstalled when the committed lock changes.
$(LINT_API_DIR)/node_modules/.package-lock.json: $(LINT_API_DIR)/package.json $(LINT_API_DIR)/package-lock.json
	$(Q)command -v npm >/dev/null 2>&1 || { echo "lint-api needs node and npm (apt-get install nodejs npm)"; exit 1; }
	$(Q)cd $(LINT_API_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(Q)touch $@

lint-api: $(LINT_API_DIR)/node_modules/.package-lock.json
	$(Q)REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	  $(LINT_API_DIR)/node_modules/.bin/redocly lint --config $(LINT_API_DIR)/redocly.yaml api/openapi.yaml
	$(Q)$(LINT_API_DIR)/node_modules/.bin/spectral lint --fail-severity error \
	  --ruleset $(LINT_API_DIR)/.spectral.yaml api/openapi.yaml

lint:
	clang-tidy core/*.c -- -std=c11 -D_POSIX_C_SOURCE=200809L -I.
	cppcheck --quiet --enable=warning,performance,portability --std=c11 -I. core tests

clean:
	rm -rf build build-address build-undefined build-thread

# libFuzzer harnesses: make fuzz, fuzz-build, fuzz-run FUZZER=... (needs clang)
-include tests/fuzz/fuzz.mk
