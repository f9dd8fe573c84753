# tests/fuzz/fuzz.mk - libFuzzer harnesses (included by the Makefile; needs clang and libFuzzer:
# apt-get install clang libfuzzer-14-dev).
#
#   make fuzz                       build every harness, run each for FUZZ_SECONDS (default 60)
#   make fuzz-build                 build them into build-fuzz/
#   make fuzz-run FUZZER=fuzz_api   run one (FUZZ_SECONDS, FUZZ_ARGS=... for more flags)
#
# The project's sources are compiled again with clang and -fsanitize=fuzzer-no-link,address,
# undefined into build-fuzz/obj/. Each run starts from a scratch copy of the committed corpus
# (tests/fuzz/corpus/<harness>/, never written to), so new inputs land in
# build-fuzz/corpus/<harness>/; crash-*, timeout-*, oom-* files go to build-fuzz/findings/, and
# any finding makes the target fail; a finding is copied into tests/fuzz/regressions/<harness>/,
# where make test replays it (tests/fuzz/replay.c) before and after its fix.

FUZZ_CC      ?= $(shell command -v clang-14 >/dev/null 2>&1 && echo clang-14 || echo clang)
FUZZ_DIR     := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_DEFINES ?=
FUZZ_ARGS    ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BASE    := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -g -O1 $(FUZZ_DEFINES)
FUZZ_LIBFLAGS := $(FUZZ_BASE) -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_HFLAGS  := $(FUZZ_BASE) -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_JSON_CFLAGS = $(shell pkg-config --cflags jansson 2>/dev/null)
FUZZ_JSON_LIBS   = $(shell pkg-config --libs jansson 2>/dev/null)

FUZZERS := fuzz_api fuzz_json_fast fuzz_tensor fuzz_definition fuzz_persist fuzz_config \
           fuzz_encoding fuzz_store_log

# Input sizes each harness needs: requests carry tensors (fuzz_api), persisted files hold
# arrays; the others are short texts.
FUZZ_MAXLEN_fuzz_api        := 16384
FUZZ_MAXLEN_fuzz_json_fast  := 4096
FUZZ_MAXLEN_fuzz_tensor     := 8192
FUZZ_MAXLEN_fuzz_definition := 4096
FUZZ_MAXLEN_fuzz_persist    := 16384
FUZZ_MAXLEN_fuzz_config     := 1024
FUZZ_MAXLEN_fuzz_encoding   := 8192
FUZZ_MAXLEN_fuzz_store_log  := 8192

FUZZ_CORE_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(wildcard core/*.c))
FUZZ_API_OBJ  := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(wildcard api/*.c))
FUZZ_SRV_OBJ  := $(FUZZ_DIR)/obj/server/config.o $(FUZZ_DIR)/obj/server/log.o

.PHONY: fuzz fuzz-build fuzz-run fuzz-clean

fuzz-build: $(addprefix $(FUZZ_DIR)/,$(FUZZERS))

$(FUZZ_DIR)/obj/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_DIR)/obj/api/%.o: api/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) $(FUZZ_JSON_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_DIR)/obj/server/%.o: server/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libfz_core.a: $(FUZZ_CORE_OBJ)
	$(AR) rcs $@ $^
# GET /ui's files (the generated source of the Makefile's embed_assets rule).
$(FUZZ_DIR)/obj/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) -c $< -o $@
$(FUZZ_DIR)/libfz_api.a: $(FUZZ_API_OBJ) $(FUZZ_DIR)/obj/gen/ui_assets.o
	$(AR) rcs $@ $^

# The harnesses are rebuilt when FUZZ_DEFINES changes (the stamp holds the last value).
FUZZ_HDRS := tests/fuzz/fuzz_util.h $(FUZZ_DIR)/defines.stamp
$(FUZZ_DIR)/defines.stamp: FORCE_FUZZ
	@mkdir -p $(@D)
	@echo '$(FUZZ_DEFINES)' | cmp -s - $@ || echo '$(FUZZ_DEFINES)' > $@
.PHONY: FORCE_FUZZ
FORCE_FUZZ:

$(FUZZ_DIR)/fuzz_config: tests/fuzz/fuzz_config.c $(FUZZ_SRV_OBJ) $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_HFLAGS) -o $@ $< $(FUZZ_SRV_OBJ) -lm

# server/encoding.c and zlib over the engine's budget (core).
$(FUZZ_DIR)/fuzz_encoding: tests/fuzz/fuzz_encoding.c $(FUZZ_DIR)/obj/server/encoding.o \
		$(FUZZ_DIR)/obj/server/trace.o $(FUZZ_DIR)/obj/server/change_msg.o \
		$(FUZZ_DIR)/libfz_core.a $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_HFLAGS) -o $@ $< $(FUZZ_DIR)/obj/server/encoding.o \
		$(FUZZ_DIR)/obj/server/trace.o $(FUZZ_DIR)/obj/server/change_msg.o \
		$(FUZZ_DIR)/libfz_core.a -lz -lm -lpthread

# server/store_log.c (the --data-dir log's records) with zlib; core for nd_name_valid.
$(FUZZ_DIR)/fuzz_store_log: tests/fuzz/fuzz_store_log.c $(FUZZ_DIR)/obj/server/store_log.o \
		$(FUZZ_DIR)/libfz_core.a $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_HFLAGS) -o $@ $< $(FUZZ_DIR)/obj/server/store_log.o \
		$(FUZZ_DIR)/libfz_core.a -lz -lm -lpthread

$(FUZZ_DIR)/fuzz_persist: tests/fuzz/fuzz_persist.c $(FUZZ_DIR)/libfz_core.a $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_HFLAGS) -o $@ $< $(FUZZ_DIR)/libfz_core.a -lm -lpthread

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libfz_api.a $(FUZZ_DIR)/libfz_core.a $(FUZZ_HDRS)
	$(FUZZ_CC) $(FUZZ_HFLAGS) $(FUZZ_JSON_CFLAGS) -o $@ $< $(FUZZ_DIR)/libfz_api.a \
		$(FUZZ_DIR)/libfz_core.a $(FUZZ_JSON_LIBS) -lm -lpthread

-include $(FUZZ_CORE_OBJ:.o=.d) $(FUZZ_API_OBJ:.o=.d) $(FUZZ_SRV_OBJ:.o=.d) \
	$(FUZZ_DIR)/obj/server/store_log.d

# One harness: a scratch corpus seeded from the committed one, findings kept, exit status of
# libFuzzer (non-zero on a crash, leak, timeout or OOM).
fuzz-run: $(FUZZ_DIR)/$(FUZZER)
	@test -n "$(FUZZER)" || { echo "usage: make fuzz-run FUZZER=fuzz_api"; exit 2; }
	@mkdir -p $(FUZZ_DIR)/corpus/$(FUZZER) $(FUZZ_DIR)/findings
	@if [ -d tests/fuzz/corpus/$(FUZZER) ]; then cp -n tests/fuzz/corpus/$(FUZZER)/* \
		$(FUZZ_DIR)/corpus/$(FUZZER)/ 2>/dev/null || true; fi
	$(FUZZ_DIR)/$(FUZZER) -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAXLEN_$(FUZZER)) \
		-dict=tests/fuzz/normd.dict -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_DIR)/findings/$(FUZZER)- $(FUZZ_ARGS) $(FUZZ_DIR)/corpus/$(FUZZER)

# Every harness in turn; all run even after a finding, and the target fails if any found one.
fuzz: fuzz-build
	@fail=; for f in $(FUZZERS); do \
	  $(MAKE) --no-print-directory fuzz-run FUZZER=$$f || fail="$$fail $$f"; done; \
	if [ -n "$$fail" ]; then echo "fuzz: findings in:$$fail (see $(FUZZ_DIR)/findings/)"; exit 1; fi

fuzz-clean:
	rm -rf $(FUZZ_DIR)
