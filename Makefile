# rill: one plain Makefile.
#
#   make                      librill.a, librill.so and rill.pc in build/
#   make test                 the whole suite: plain (each switch backend), packaging,
#                             demos, the SSE demo end to end and fuzzed, ASan+UBSan
#                             (ucontext, fast), ThreadSanitizer (thread tests),
#                             valgrind, the standalone switch test (native, and
#                             aarch64 under qemu-aarch64)
#   make test-sse, test-fuzz  the SSE demo with curl, Chromium and bad clients; its
#                             request handling under libFuzzer (FUZZ_SECONDS=60)
#   make SWITCH=fast          the assembly context switch (build/fast); also
#                             SWITCH=portable (build/portable); ucontext is the default
#   make demo                 run every demo with short delays
#   make bench                micro-benchmarks of every switch backend, side by side
#                             (and the echo server's round trips against plain epoll)
#   make bench-io             the SSE demo under wrk, and 10 000 streams held at once
#   make bench-pg             rill_pg against blocking libpq, on a private PostgreSQL server
#   make test-pg              the PostgreSQL module's tests against a private server
#   make install PREFIX=...   headers, libraries, pkg-config file
#   make SANITIZER=address,undefined   an instrumented build (in build/san)
#   make echo                 the effective flags
#
# Knobs: CC, OPTIMIZATION, PREFIX, SANITIZER, SWITCH, WERROR, CFLAGS, LDFLAGS;
# V=1 prints every command.

CC ?= cc
OPTIMIZATION ?= -O2
PREFIX ?= /usr/local
SANITIZER ?=
WERROR ?= -Werror
VERSION = 0.1.0
V ?= 0
ifeq ($(V),0)
say = @printf '  %-6s %s\n' $(1) $(2);
endif

WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wwrite-strings $(WERROR)
ifneq ($(wildcard /usr/include/valgrind/valgrind.h),)
VALGRIND_DEF = -DRILL_VALGRIND
endif

# The context switch (runtime/switch.h): ucontext (makecontext + swapcontext,
# the default), fast (assembly: x86-64, aarch64) or portable (_setjmp/_longjmp).
# Each backend and checker builds in a directory of its own: build/ is the
# default, build/fast, build/portable-san, ...
SWITCH ?= ucontext
ARCH := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
SWITCH_SRC_ucontext = runtime/switch_ucontext.c runtime/switch_start.c
SWITCH_SRC_portable = runtime/switch_portable.c runtime/switch_start.c
ifeq ($(ARCH),x86_64)
SWITCH_SRC_fast = runtime/switch_fast.c runtime/switch_x86_64.S
else ifeq ($(ARCH),aarch64)
SWITCH_SRC_fast = runtime/switch_fast.c runtime/switch_aarch64.S
else ifeq ($(SWITCH),fast)
$(warning SWITCH=fast has no assembly for $(ARCH): building the portable switch)
SWITCH_SRC_fast = $(SWITCH_SRC_portable)
endif
ifeq ($(SWITCH_SRC_$(SWITCH)),)
$(error SWITCH=$(SWITCH): choose ucontext, fast or portable)
endif
ifeq ($(SWITCH),ucontext)
VARIANT =
else
VARIANT = $(SWITCH)
endif

ifeq ($(SANITIZER)-$(SWITCH),thread-portable)
# ThreadSanitizer keeps each fiber's _setjmp buffers apart: a _longjmp back
# into a suspended fiber is not found there, and it aborts.
$(error SANITIZER=thread does not work with SWITCH=portable: use ucontext or fast)
endif
ifeq ($(SANITIZER),thread)
SAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer
CHECKER = tsan
# Criterion cannot start under ThreadSanitizer: tests/minicrit.h stands in.
TEST_DEFS = -DRILL_MINICRIT
else
TEST_LIBS = -lcriterion
ifneq ($(SANITIZER),)
SAN_FLAGS = -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CHECKER = san
endif
endif
BUILD ?= build$(if $(VARIANT)$(CHECKER),/)$(VARIANT)$(if $(and $(VARIANT),$(CHECKER)),-)$(CHECKER)

FINAL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(OPTIMIZATION) -g $(WARN) $(SAN_FLAGS) -fstack-clash-protection \
               -fPIC -fvisibility=hidden -Iinclude $(VALGRIND_DEF) \
               -DRILL__VERSION='"$(VERSION)"' -DRILL__SWITCH='"$(SWITCH)"' $(CFLAGS)
FINAL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LIBS = -lev -pthread

LIB_SRC = $(filter-out runtime/switch_%,$(wildcard runtime/*.c)) $(SWITCH_SRC_$(SWITCH))
LIB_OBJ = $(addsuffix .o,$(basename $(LIB_SRC:runtime/%=$(BUILD)/obj/%)))
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
DEMO_SRC = $(wildcard demos/*.c)
# A demo of several files is a directory with a main.c: demos/NAME/ builds
# build/demos/NAME from all its .c files, linked with DEMO_LIBS_NAME too
# (before librill.a, which a library of rill's needs after it), compiled
# with DEMO_CFLAGS_NAME, and rebuilt when DEMO_DEPS_NAME change.  The pg
# demo needs libpq: without it, it is left out.
DEMO_DIRS = $(filter-out $(if $(PG_CFLAGS),,pg),$(patsubst demos/%/main.c,%,$(wildcard demos/*/main.c)))
DEMO_BIN = $(DEMO_SRC:demos/%.c=$(BUILD)/demos/%) $(DEMO_DIRS:%=$(BUILD)/demos/%)
DEMO_LIBS_sse = -lhttp_parser
# bench/sse_clients.c is a load client of bench/sse-load.sh (make bench-io),
# not a benchmark of its own; bench/pg.c needs a server (make bench-pg).
BENCH_SRC = $(filter-out bench/sse_clients.c bench/pg.c,$(wildcard bench/*.c))
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# The optional PostgreSQL module (include/rill/pg.h, runtime/pg/): librill_pg,
# built when libpq's header is there.  Written against rill.h alone.
PG_HEADER = /usr/include/postgresql/libpq-fe.h
ifneq ($(wildcard $(PG_HEADER)),)
PG_CFLAGS = -I$(dir $(PG_HEADER))
PG_OBJ = $(patsubst runtime/pg/%.c,$(BUILD)/obj/pg/%.o,$(wildcard runtime/pg/*.c))
PG_LIB = $(BUILD)/librill_pg.a $(BUILD)/librill_pg.so
PG_TEST_BIN = $(patsubst tests/pg/%.c,$(BUILD)/tests/pg/%,$(wildcard tests/pg/test_pg_*.c))
endif
DEMO_LIBS_pg = $(BUILD)/librill_pg.a -lpq
DEMO_CFLAGS_pg = $(PG_CFLAGS)
DEMO_DEPS_pg = $(BUILD)/librill_pg.a

DEPS_BUILD = libev-dev:/usr/include/ev.h gcc:cc make:make pkgconf:pkg-config
# The demos (the SSE server parses HTTP with libhttp-parser).
# (and the PostgreSQL demo libpq and a server to start privately).
DEPS_DEMO = $(DEPS_BUILD) libhttp-parser-dev:/usr/include/http_parser.h \
            libpq-dev:$(PG_HEADER) postgresql:/usr/lib/postgresql
DEPS_TEST = $(DEPS_DEMO) libcriterion-dev:/usr/include/criterion/criterion.h \
            valgrind:valgrind g++:c++ curl:curl chromium:chromium clang:clang python3:python3
DEPS_BUILD_STAMP = build/.deps-build
DEPS_TEST_STAMP = build/.deps-test

.PHONY: demo-run all lib test test-pg test-plain test-san test-tsan test-valgrind test-demos test-sse test-fuzz test-package valgrind demo demo-bins \
        bench bench-bins bench-io bench-pg install uninstall echo clean deps deps-demo deps-test

all: deps $(BUILD)/librill.a $(BUILD)/librill.so $(BUILD)/rill.pc $(PG_LIB)
lib: $(BUILD)/librill.a $(BUILD)/librill.so $(BUILD)/rill.pc $(PG_LIB)

deps:
	@scripts/deps.sh $(DEPS_BUILD)
deps-demo:
	@scripts/deps.sh $(DEPS_DEMO)
deps-test:
	@scripts/deps.sh $(DEPS_TEST)

$(BUILD)/obj/%.o: runtime/%.c $(wildcard runtime/*.h) include/rill.h
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: runtime/%.S
	@mkdir -p $(@D)
	$(call say,AS,$<)$(CC) $(FINAL_CFLAGS) -c $< -o $@

$(BUILD)/librill.a: $(LIB_OBJ)
	@rm -f $@
	$(call say,AR,$@)ar rcs $@ $^

# Only rill_* is exported: everything is hidden unless marked RILL_API.
$(BUILD)/librill.so: $(LIB_OBJ)
	$(call say,LD,$@)$(CC) -shared -Wl,-soname,librill.so.0 $(FINAL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/pg/%.o: runtime/pg/%.c $(wildcard runtime/pg/*.h) include/rill.h include/rill/pg.h
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $(PG_CFLAGS) -c $< -o $@

$(BUILD)/librill_pg.a: $(PG_OBJ)
	@rm -f $@
	$(call say,AR,$@)ar rcs $@ $^

# Only rill_pg_* is exported (RILL_API); it links against librill.so.
$(BUILD)/librill_pg.so: $(PG_OBJ) $(BUILD)/librill.so
	$(call say,LD,$@)$(CC) -shared -Wl,-soname,librill_pg.so.0 $(FINAL_LDFLAGS) -o $@ $(PG_OBJ) \
	  $(BUILD)/librill.so -lpq

$(BUILD)/rill.pc: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' \
	  'includedir=$${prefix}/include' '' 'Name: rill' \
	  'Description: asyncio-style tasks, cancel scopes and task groups on libev fibers' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lrill' 'Libs.private: -lev -pthread' \
	  'Cflags: -I$${includedir}' > $@

$(BUILD)/tests/%: tests/%.c tests/helpers.h tests/minicrit.h tests/procfs.h $(BUILD)/librill.a
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $(TEST_DEFS) -Wno-missing-prototypes -Wno-unused-parameter $< -o $@ \
	  $(FINAL_LDFLAGS) $(BUILD)/librill.a $(LIBS) $(TEST_LIBS) -lm

$(BUILD)/tests/pg/%: tests/pg/%.c tests/helpers.h tests/procfs.h $(BUILD)/librill_pg.a $(BUILD)/librill.a
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $(PG_CFLAGS) -Wno-missing-prototypes -Wno-unused-parameter $< -o $@ \
	  $(FINAL_LDFLAGS) $(BUILD)/librill_pg.a $(BUILD)/librill.a -lpq $(LIBS) $(TEST_LIBS) -lm

$(BUILD)/demos/%: demos/%.c demos/demo.h $(BUILD)/librill.a
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $< -o $@ $(FINAL_LDFLAGS) $(BUILD)/librill.a $(LIBS) -lm

define demo_dir_rule
$(BUILD)/demos/$(1): $(wildcard demos/$(1)/*.c demos/$(1)/*.h) demos/demo.h $(BUILD)/librill.a \
                     $(DEMO_DEPS_$(1))
	@mkdir -p $$(@D)
	$$(call say,CC,demos/$(1)/)$$(CC) $$(FINAL_CFLAGS) $$(DEMO_CFLAGS_$(1)) $(wildcard demos/$(1)/*.c) \
	  -o $$@ $$(FINAL_LDFLAGS) $$(DEMO_LIBS_$(1)) $$(BUILD)/librill.a $$(LIBS) -lm
endef
$(foreach d,$(DEMO_DIRS),$(eval $(call demo_dir_rule,$(d))))

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) tests/procfs.h $(BUILD)/librill.a
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $< -o $@ $(FINAL_LDFLAGS) $(BUILD)/librill.a $(LIBS) -lm

# ---- tests -------------------------------------------------------------------
# The suite runs three ways; scripts/run-tests.sh fails a mode if any sanitizer
# or valgrind log reports an error or a leak (Criterion alone would not).
#
# Two lanes run at once, one per core: the plain lane prints as it goes; the
# checked lane (ASan+UBSan, valgrind) writes build/results/checked.log,
# printed once both have ended.  What both use (the default build's tests)
# is built first, so that they never build the same file.
TEST_LANE_PLAIN = test-plain test-plain-fast test-plain-portable test-package test-demos \
                  test-sse test-fuzz test-tsan test-switch test-aarch64 test-pg
TEST_LANE_CHECKED = test-san test-san-fast test-valgrind
test: deps-test
	@rm -rf build/results && mkdir -p build/results
	@$(MAKE) --no-print-directory -k $(TEST_BIN) lib $(BUILD)/tests/selfcheck || true
	@( $(MAKE) --no-print-directory -j1 -k $(TEST_LANE_CHECKED) >build/results/checked.log 2>&1; \
	   echo $$? >build/results/checked.status ) & \
	  $(MAKE) --no-print-directory -j1 -k $(TEST_LANE_PLAIN); plain=$$?; wait; \
	  cat build/results/checked.log; checked=$$(cat build/results/checked.status); \
	  scripts/summary.sh build/results && [ $$plain -eq 0 ] && [ "$$checked" = 0 ]

test-plain: $(TEST_BIN) lib
	@scripts/run-tests.sh plain build/results $(TEST_BIN)

test-san:
	@$(MAKE) --no-print-directory SANITIZER=address,undefined \
	  $(addprefix build/san/tests/,$(notdir $(TEST_BIN))) build/san/tests/selfcheck
	@scripts/selfcheck.sh asan build/san/tests/selfcheck
	@scripts/run-tests.sh asan build/results $(addprefix build/san/tests/,$(notdir $(TEST_BIN)))

# The other switch backends (SWITCH=fast, portable): the plain suite, and
# ASan+UBSan for fast.  Results are labelled plain-fast, asan-fast, ...
tests_in = $(addprefix $(1)/tests/,$(notdir $(TEST_BIN)))
test-plain-%: FORCE
	@$(MAKE) --no-print-directory SWITCH=$* $(call tests_in,build/$*)
	@scripts/run-tests.sh plain-$* build/results $(call tests_in,build/$*)

test-san-%: FORCE
	@$(MAKE) --no-print-directory SWITCH=$* SANITIZER=address,undefined $(call tests_in,build/$*-san)
	@scripts/run-tests.sh asan-$* build/results $(call tests_in,build/$*-san)

# The tests that cross threads, under ThreadSanitizer (see tests/minicrit.h).
TSAN_TESTS = test_thread
test-tsan:
	@$(MAKE) --no-print-directory SANITIZER=thread \
	  $(addprefix build/tsan/tests/,$(TSAN_TESTS) selfcheck_race)
	@scripts/selfcheck.sh tsan build/tsan/tests/selfcheck_race
	@scripts/run-tests.sh tsan build/results $(addprefix build/tsan/tests/,$(TSAN_TESTS))

test-valgrind valgrind: $(TEST_BIN) $(BUILD)/tests/selfcheck
	@scripts/selfcheck.sh valgrind $(BUILD)/tests/selfcheck
	@scripts/run-tests.sh valgrind build/results $(TEST_BIN)

# The PostgreSQL module's tests, against a private server started for them
# (scripts/pg-server.sh) and stopped whatever happens: plain, ASan+UBSan
# and valgrind, one after the other on the one server.
PG_SAN_TEST_BIN = $(PG_TEST_BIN:$(BUILD)/%=build/san/%)
test-pg: $(PG_TEST_BIN)
	@[ -n "$(PG_TEST_BIN)" ] || { echo "rill: test-pg needs libpq ($(PG_HEADER))"; exit 1; }
	@$(MAKE) --no-print-directory SANITIZER=address,undefined $(PG_SAN_TEST_BIN)
	@mkdir -p build/results
	@d=$$(mktemp -d /tmp/rill-pg.XXXXXX) && trap 'scripts/pg-server.sh stop "'"$$d"'"' EXIT && \
	  ci=$$(scripts/pg-server.sh start "$$d") && export RILL_PG_CONNINFO="$$ci" && \
	  { scripts/run-tests.sh plain-pg build/results $(PG_TEST_BIN); a=$$?; \
	    scripts/run-tests.sh asan-pg build/results $(PG_SAN_TEST_BIN); b=$$?; \
	    scripts/run-tests.sh valgrind-pg build/results $(PG_TEST_BIN); c=$$?; \
	    [ $$a -eq 0 ] && [ $$b -eq 0 ] && [ $$c -eq 0 ]; }

test-package: lib
	@mkdir -p build/results
	@scripts/test-package.sh build/results

test-demos: $(DEMO_BIN)
	@scripts/run-demos.sh build/results $(DEMO_BIN)

# The SSE demo end to end (scripts/test-sse.sh): curl, headless Chromium,
# misbehaving clients, SIGTERM; its self-test under ASan+UBSan and valgrind.
test-sse: $(BUILD)/demos/sse
	@$(MAKE) --no-print-directory SANITIZER=address,undefined build/san/demos/sse
	@mkdir -p build/results
	@scripts/test-sse.sh build/results $(BUILD)/demos/sse build/san/demos/sse

# The SSE demo's request handling under libFuzzer for FUZZ_SECONDS, from
# the seeds in tests/fuzz/corpus/http (a crash or a broken invariant fails).
# http.c is compiled with the target by clang, instrumented for coverage.
FUZZ_CC = clang
FUZZ_SECONDS = 60
build/fuzz/fuzz_http: tests/fuzz/fuzz_http.c demos/sse/http.c demos/sse/http.h
	@mkdir -p $(@D)
	$(call say,CC,$@)$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 $(WARN) \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Idemos/sse \
	  tests/fuzz/fuzz_http.c demos/sse/http.c -o $@ -lhttp_parser

test-fuzz: build/fuzz/fuzz_http
	@mkdir -p build/results
	@scripts/run-fuzz.sh build/results build/fuzz/fuzz_http tests/fuzz/corpus/http $(FUZZ_SECONDS)

# The context switch alone (tests/switch): one binary per backend, built from
# switch.h and that backend's files only; test-aarch64 cross-builds them for
# aarch64 (static) and runs them under qemu-aarch64.
.PHONY: test-switch test-aarch64
SWITCH_BACKENDS = ucontext portable fast
SWITCH_TEST_CFLAGS = -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iruntime
SWITCH_TEST_DEPS = tests/switch/test_switch.c $(wildcard runtime/switch*)
AARCH64_CC = aarch64-linux-gnu-gcc
DEPS_AARCH64 = gcc-aarch64-linux-gnu:$(AARCH64_CC) \
               libc6-dev-arm64-cross:/usr/aarch64-linux-gnu/lib/libc.a qemu-user:qemu-aarch64

build/switch/test_switch-%: $(SWITCH_TEST_DEPS)
	@mkdir -p $(@D)
	$(call say,CC,$@)$(CC) $(SWITCH_TEST_CFLAGS) $< $(or $(SWITCH_SRC_$*),$(SWITCH_SRC_portable)) -o $@ -lm

build/switch/aarch64/test_switch-%: $(SWITCH_TEST_DEPS)
	@mkdir -p $(@D)
	$(call say,CC,$@)$(AARCH64_CC) -static $(SWITCH_TEST_CFLAGS) $< \
	  $(if $(filter fast,$*),runtime/switch_fast.c runtime/switch_aarch64.S,$(SWITCH_SRC_$*)) -o $@ -lm

test-switch: $(addprefix build/switch/test_switch-,$(SWITCH_BACKENDS))
	@scripts/run-switch-tests.sh switch build/results $^

test-aarch64:
	@if scripts/deps.sh $(DEPS_AARCH64); then \
	  $(MAKE) --no-print-directory $(addprefix build/switch/aarch64/test_switch-,$(SWITCH_BACKENDS)) && \
	  RUNNER=qemu-aarch64 scripts/run-switch-tests.sh switch-aarch64 build/results \
	    $(addprefix build/switch/aarch64/test_switch-,$(SWITCH_BACKENDS)); \
	else echo "rill: test-aarch64 skipped"; fi

# A deliberately faulty test program: the harness must catch it.
$(BUILD)/tests/selfcheck: tests/selfcheck.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) -Wno-missing-prototypes -O0 $< -o $@ $(FINAL_LDFLAGS) -lcriterion

# ---- demos, benchmarks ----------------------------------------------------------
# demo-bins has a recipe of its own so that, with nothing to rebuild, make
# says nothing (no "is up to date" per demo).
# The demos are listed by a make run after the dependencies are in place
# (the pg demo exists only with libpq).
demo: deps-demo
	@$(MAKE) --no-print-directory demo-bins
	@$(MAKE) --no-print-directory demo-run

demo-run:
	@scripts/run-demos.sh - $(DEMO_BIN)

demo-bins: $(DEMO_BIN)
	@:

# The bench programs of every backend, then scripts/bench-compare.sh: each
# program's table for each backend, and a summary of the backends side by
# side (medians of 3 runs, taken alternately).  make bench BENCH_FLAGS=--quick
BENCH_SWITCHES = ucontext fast portable
bench_dir = build$(if $(filter-out ucontext,$(1)),/$(1))/bench
bench: deps
	@for s in $(BENCH_SWITCHES); do $(MAKE) --no-print-directory SWITCH=$$s bench-bins || exit 1; done
	@scripts/bench-compare.sh $(BENCH_FLAGS) $(foreach s,$(BENCH_SWITCHES),$(s)=$(call bench_dir,$(s)))

bench-bins: $(BENCH_BIN)
	@:

# rill_pg against blocking libpq (bench/pg.c): a 10^6-row cursor stream and
# its memory, and 100 queries through a pool of 10, against a private
# server started and stopped here (scripts/pg-server.sh).  Not part of
# make bench: it needs PostgreSQL and takes about half a minute.
# It runs twice, built with the ucontext and the fast switch: a cursor
# yields each row through a context switch, and swapcontext's signal mask
# costs a system call per switch.
# make bench-pg BENCH_PG_FLAGS=--quick (10^5 rows)
bench-pg:
	@$(MAKE) --no-print-directory build/bench-pg/pg
	@$(MAKE) --no-print-directory SWITCH=fast build/fast/bench-pg/pg
	@d=$$(mktemp -d /tmp/rill-pg.XXXXXX) && trap 'scripts/pg-server.sh stop "'"$$d"'"' EXIT && \
	  ci=$$(scripts/pg-server.sh start "$$d") && \
	  RILL_PG_CONNINFO="$$ci" build/bench-pg/pg $(BENCH_PG_FLAGS) && echo && \
	  RILL_PG_CONNINFO="$$ci" build/fast/bench-pg/pg $(BENCH_PG_FLAGS)

$(BUILD)/bench-pg/pg: bench/pg.c $(wildcard bench/*.h) tests/procfs.h $(BUILD)/librill_pg.a $(BUILD)/librill.a
	@[ -n "$(PG_CFLAGS)" ] || { echo "rill: bench-pg needs libpq ($(PG_HEADER))"; exit 1; }
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $(PG_CFLAGS) $< -o $@ $(FINAL_LDFLAGS) \
	  $(BUILD)/librill_pg.a -lpq $(BUILD)/librill.a $(LIBS) -lm

# The SSE demo under load (bench/sse-load.sh): wrk against /stream, then
# 1000, 5000 and 10 000 streams held at once by bench/sse_clients.  Not part
# of make bench or make test: it takes about a minute and raises ulimit -n.
bench-io: deps-demo $(BUILD)/demos/sse $(BUILD)/bench-io/sse_clients
	@scripts/deps.sh wrk:wrk
	@bench/sse-load.sh $(BUILD)/demos/sse $(BUILD)/bench-io/sse_clients

$(BUILD)/bench-io/sse_clients: bench/sse_clients.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(FINAL_CFLAGS) $< -o $@ $(FINAL_LDFLAGS)

# ---- install ------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/rill.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/librill.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/librill.so $(DESTDIR)$(PREFIX)/lib/librill.so.$(VERSION)
	ln -sf librill.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/librill.so.0
	ln -sf librill.so.0 $(DESTDIR)$(PREFIX)/lib/librill.so
	install -m 644 $(BUILD)/rill.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
ifneq ($(PG_LIB),)
	install -d $(DESTDIR)$(PREFIX)/include/rill
	install -m 644 include/rill/pg.h $(DESTDIR)$(PREFIX)/include/rill/
	install -m 644 $(BUILD)/librill_pg.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/librill_pg.so $(DESTDIR)$(PREFIX)/lib/librill_pg.so.$(VERSION)
	ln -sf librill_pg.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/librill_pg.so.0
	ln -sf librill_pg.so.0 $(DESTDIR)$(PREFIX)/lib/librill_pg.so
endif

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/rill.h $(DESTDIR)$(PREFIX)/lib/librill.* \
	  $(DESTDIR)$(PREFIX)/include/rill/pg.h $(DESTDIR)$(PREFIX)/lib/librill_pg.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/rill.pc

echo:
	@echo "CC=$(CC)"
	@echo "CFLAGS=$(FINAL_CFLAGS)"
	@echo "LDFLAGS=$(FINAL_LDFLAGS) $(LIBS)"
	@echo "BUILD=$(BUILD)"
	@echo "SWITCH=$(SWITCH): $(SWITCH_SRC_$(SWITCH))"

clean:
	rm -rf build
FORCE:
