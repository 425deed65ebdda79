# klua - a Kubernetes controller runtime in C with Lua reconcilers.
#
#   make            bin/klua (release build)
#   make test       installs what is missing, builds the sanitizer variant,
#                   the control plane, and runs every test in spec/
#   make demo       local control plane + stand-in GitHub + klua + examples
#   make cluster-up / cluster-down   the local control plane alone
#   make fuzz       longer fuzz runs (FUZZ_SECONDS=300)
#   make bench      benchmarks against client-go / controller-runtime

VERSION   := 0.1.0
CC        ?= cc
PKGS      := lua5.4 yaml-0.1 openssl
# libcurl is not the system's: tools/curl.sh builds Debian's curl source (with
# its patches) for HTTP(S) only, into a cache directory keyed by its flags, and
# every build here links that libcurl.a statically (OpenSSL and zlib stay shared).
CURL_PREFIX := $(shell sh tools/curl.sh --prefix)
$(if $(CURL_PREFIX),,$(error tools/curl.sh --prefix printed nothing))
CURL_LIB    := $(CURL_PREFIX)/lib/libcurl.a
PKG_CFLAGS := -I$(CURL_PREFIX)/include $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS      := $(CURL_LIB) $(PKG_LIBS) -lz -pthread -lm
Q         ?= @
WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -DKLUA_VERSION=\"$(VERSION)\" $(WARN) $(PKG_CFLAGS) -Isrc -Ibuild/gen
REL_CFLAGS  := $(CFLAGS_COMMON) -O2 -g
ASAN_CFLAGS := $(CFLAGS_COMMON) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

SRCS      := $(sort $(wildcard src/*.c))
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
LUA_MODS  := $(sort $(wildcard lua/lib/klua/*.lua))
GEN_SRCS  := build/gen/luamods.c
REL_OBJS  := $(patsubst src/%.c,build/rel/%.o,$(SRCS)) build/rel/luamods.o
ASAN_LIB_OBJS := $(patsubst src/%.c,build/asan/%.o,$(LIB_SRCS)) build/asan/luamods.o
ASAN_OBJS := $(ASAN_LIB_OBJS) build/asan/main.o
UNIT_SRCS := $(sort $(wildcard spec/c/test_*.c spec/c/itest_*.c))
# test_json and fuzz_json are built a second time with the portable string
# scan (-DJSON_NO_SSE2), so the path a non-x86 build takes is tested too.
UNIT_BINS := $(patsubst spec/c/%.c,build/asan/spec/%,$(UNIT_SRCS)) build/asan/spec/test_json_nosse2
FUZZ_SRCS := $(sort $(wildcard spec/fuzz/fuzz_*.c))
FUZZ_BINS := $(patsubst spec/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS)) build/fuzz/fuzz_json_nosse2
# klua.json, the production codec, as a loadable Lua module for the busted
# specs (.busted puts build/lua on package.cpath): lua_json.c and what it
# needs, plus a stand-in for the host functions it may call (no script memory
# cap outside klua). Not linked against liblua: the interpreter provides it.
LUA_JSON_SO := build/lua/klua/json.so
LUA_JSON_SO_SRCS := src/lua_json.c src/json.c src/buf.c src/err.c tools/lua_json_standalone.c
LUA_JSON_SO_OBJS := $(patsubst %.c,build/pic/%.o,$(LUA_JSON_SO_SRCS))

.PHONY: all test test-build deps controlplane cluster-up cluster-down demo fuzz bench clean check-src lua-modules

all: bin/klua

bin/klua: $(REL_OBJS)
	@mkdir -p bin
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $^ $(LIBS)

build/rel/%.o: src/%.c $(wildcard src/*.h) $(CURL_LIB) | build/gen/luamods.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(REL_CFLAGS) -c -o $@ $<

build/asan/%.o: src/%.c $(wildcard src/*.h) $(CURL_LIB) | build/gen/luamods.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	$(Q)$(CC) $(ASAN_CFLAGS) -c -o $@ $<

# The compile rules depend on it: its headers are the ones src/ includes.
$(CURL_LIB):
	$(Q)sh tools/curl.sh

build/gen/luamods.c: $(LUA_MODS) tools/embed.sh
	@mkdir -p build/gen
	$(Q)sh tools/embed.sh $(LUA_MODS) > $@.tmp && mv $@.tmp $@

build/rel/luamods.o: build/gen/luamods.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(REL_CFLAGS) -Wno-overlength-strings -c -o $@ $<

build/asan/luamods.o: build/gen/luamods.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	$(Q)$(CC) $(ASAN_CFLAGS) -c -o $@ $<

build/asan/klua: $(ASAN_OBJS)
	@echo "  LD asan $@"
	$(Q)$(CC) -fsanitize=address,undefined -o $@ $^ $(LIBS)

build/asan/spec/%: spec/c/%.c $(wildcard spec/c/*.h) $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"
	$(Q)$(CC) $(ASAN_CFLAGS) -Ispec/c -o $@ $< $(ASAN_LIB_OBJS) $(LIBS)

build/asan/json_nosse2.o: src/json.c $(wildcard src/*.h) $(CURL_LIB)
	@mkdir -p $(dir $@)
	@echo "  CC asan $< (JSON_NO_SSE2)"
	$(Q)$(CC) $(ASAN_CFLAGS) -DJSON_NO_SSE2 -c -o $@ $<

ASAN_NOSSE2_OBJS := $(filter-out build/asan/json.o,$(ASAN_LIB_OBJS)) build/asan/json_nosse2.o
build/asan/spec/test_json_nosse2: spec/c/test_json.c spec/c/harness.h $(ASAN_NOSSE2_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD asan $@"
	$(Q)$(CC) $(ASAN_CFLAGS) -DJSON_NO_SSE2 -Ispec/c -o $@ $< $(ASAN_NOSSE2_OBJS) $(LIBS)

build/pic/%.o: %.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC pic  $<"
	$(Q)$(CC) $(REL_CFLAGS) -fPIC -c -o $@ $<

# Loaded once after linking: a symbol it needs but does not have (say, a new
# host call in lua_json.c) fails here, not in the middle of the specs.
$(LUA_JSON_SO): $(LUA_JSON_SO_OBJS)
	@mkdir -p $(dir $@)
	@echo "  LD so   $@"
	$(Q)$(CC) -shared -o $@ $^ -lm
	$(Q)lua5.4 -e 'package.cpath = "build/lua/?.so"; assert(require("klua.json").encode({1}) == "[1]")' \
	  || { rm -f $@; echo "$@ does not load: a symbol lua_json.c needs is missing (tools/lua_json_standalone.c)"; exit 1; }

lua-modules: $(LUA_JSON_SO)

FUZZ_CFLAGS := $(CFLAGS_COMMON) -Wno-unused-command-line-argument -O1 -g
FUZZ_LIB_OBJS := $(patsubst src/%.c,build/fuzzobj/%.o,$(LIB_SRCS)) build/fuzzobj/luamods.o
.SECONDARY: $(FUZZ_LIB_OBJS)

build/fuzzobj/%.o: src/%.c $(wildcard src/*.h) $(CURL_LIB) | build/gen/luamods.c
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build/fuzzobj/luamods.o: build/gen/luamods.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build/fuzz/%: spec/fuzz/%.c $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB_OBJS) $(LIBS)

build/fuzzobj/json_nosse2.o: src/json.c $(wildcard src/*.h) $(CURL_LIB)
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $< (JSON_NO_SSE2)"
	$(Q)clang $(FUZZ_CFLAGS) -DJSON_NO_SSE2 -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

FUZZ_NOSSE2_OBJS := $(filter-out build/fuzzobj/json.o,$(FUZZ_LIB_OBJS)) build/fuzzobj/json_nosse2.o
build/fuzz/fuzz_json_nosse2: spec/fuzz/fuzz_json.c $(FUZZ_NOSSE2_OBJS)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	$(Q)clang $(FUZZ_CFLAGS) -DJSON_NO_SSE2 -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_NOSSE2_OBJS) $(LIBS)

test-build: bin/klua build/asan/klua $(UNIT_BINS) $(FUZZ_BINS) $(LUA_JSON_SO)

deps:
	@sh spec/support/deps.sh

controlplane:
	@sh spec/support/controlplane/build.sh

# The README's test command. Installs what is missing, then runs everything.
test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) test-build
	@sh spec/support/controlplane/build.sh
	@bash spec/run.sh

check-src:
	@sh spec/support/check-src.sh

cluster-up: deps
	@sh spec/support/controlplane/build.sh
	@sh spec/support/cluster.sh up build/cluster

cluster-down:
	@sh spec/support/cluster.sh down build/cluster

demo: deps
	@$(MAKE) --no-print-directory bin/klua
	@sh spec/support/controlplane/build.sh
	@bash spec/support/demo.sh

# A variant (fuzz_json_nosse2) starts from its target's seed corpus.
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz/corpus/$$n; \
	  $$f -max_total_time=$${FUZZ_SECONDS:-300} build/fuzz/corpus/$$n spec/fuzz/corpus/$${n%_nosse2} || exit 1; done

bench: deps
	@sh bench/run.sh

clean:
	rm -rf build bin

# klua under randomised faults on its own control plane (spec/support/chaos.py):
# watch cuts, API server kills, etcd compaction, GitHub 5xx/429/slow answers,
# SIGKILLed replicas and leaders; then the invariants, one "chaos:" line each.
# CHAOS_SECONDS (default 300) is how long faults strike; CHAOS_SEED replays a run;
# KLUA_BIN picks the binary (default the sanitizer build).
.PHONY: chaos
chaos: deps build/asan/klua
	@sh spec/support/controlplane/build.sh
	@python3 spec/support/chaos.py --seconds $${CHAOS_SECONDS:-300}
