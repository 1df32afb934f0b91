# layerd — plain GNU make, pkg-config for every library.
#   make            build ./layerd
#   make run        install missing packages, build, start on 127.0.0.1:5080 with the built-in spec
#   make check      install missing packages, build, run every test (unit tests under ASan+UBSan and valgrind)
#   make fuzz       libFuzzer (clang) on every parser, FUZZ_SECONDS each
#   make deb        build/deb/layerd_<version>_<arch>.deb (dpkg-buildpackage, lintian)
#   make image      build/image: the OCI image as an OCI layout, tagged $(IMAGE_TAG)
#   make SANITIZER=address,undefined   build ./layerd itself with sanitizers

CC ?= cc
CLANG ?= clang
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
DESTDIR ?=
FUZZ_SECONDS ?= 60
SANITIZER ?=

VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
# The version is compiled in (layerd version, the User-Agent): a file that
# changes with it makes the objects that use it rebuild.
VERSION_STAMP := build/version
$(shell mkdir -p build && { [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = "$(VERSION)" ] || echo "$(VERSION)" >$(VERSION_STAMP); })

# Libraries per module (STYLE.md: each third-party library lives in one module).
PKGS_COMMON := libcrypto
PKGS_HOSTSCONFIG := yaml-0.1
PKGS_FALLBACK := libcurl jansson
PKGS_AGENT := libmicrohttpd libsystemd
PKGS := $(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK) $(PKGS_AGENT)

# pkg-config runs only where a build needs it, so `make deps` works before the -dev packages exist.
pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1))
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1))

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes -Wvla
BASE_CFLAGS := -std=gnu17 $(WARN) -O2 -g -pthread -D_GNU_SOURCE -DLAYERD_VERSION='"$(VERSION)"' -I. \
	-fno-strict-aliasing -fstack-protector-strong -D_FORTIFY_SOURCE=2 -MMD -MP
CFLAGS ?=
LDFLAGS ?=
ifneq ($(SANITIZER),)
SAN_FLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
endif
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

COMMON_SRC := common/error.c common/log.c common/parse.c common/reference.c common/fsutil.c common/textdiff.c \
	common/digest.c common/base64.c common/range.c common/semver.c common/ratelimit.c common/json.c \
	common/time.c common/buf.c common/budget.c
COMMON_SRC += common/run.c common/filestamp.c
COMMON_SRC += common/throttle.c
HOSTSCONFIG_SRC := hostsconfig/spec.c hostsconfig/spec-model.c hostsconfig/spec-common.c hostsconfig/spec-layerd.c \
	hostsconfig/spec-yaml.c hostsconfig/spec-helm.c \
	hostsconfig/spec-print.c hostsconfig/spec-default.c hostsconfig/render.c hostsconfig/render-containerd.c \
	hostsconfig/render-docker.c hostsconfig/render-talos.c hostsconfig/render-registries-conf.c \
	hostsconfig/hosts-apply.c hostsconfig/spec-tags.c hostsconfig/toml.c hostsconfig/toml-tree.c hostsconfig/containerd-config.c \
	hostsconfig/spec-version.c
HOSTSCONFIG_SRC += hostsconfig/render-talos-legacy.c hostsconfig/render-yaml.c
# The agent's sources that use none of its libraries (libmicrohttpd, libsystemd): the fuzz targets link them too.
AGENT_PURE_SRC := agent/route.c agent/outcome.c agent/host.c agent/bounds.c \
	agent/clientauth.c agent/verdict.c agent/private.c \
	agent/reqmetrics.c
AGENT_PURE_SRC += agent/admin-wire.c
AGENT_SRC := agent/main.c agent/serve.c agent/admit.c agent/log.c agent/notify.c agent/hosts.c agent/cache-cmd.c agent/cache-limits.c \
	agent/upstream.c agent/fetch-cmd.c agent/pull.c agent/http.c agent/manifest.c agent/download.c agent/stream.c \
	agent/tags.c agent/metrics.c agent/prefetch.c agent/prefetch-cmd.c \
	agent/containerd.c agent/doctor.c agent/run.c \
	agent/access.c agent/metrics-listen.c \
	$(AGENT_PURE_SRC)
AGENT_SRC += agent/referrers.c
AGENT_SRC += agent/specwatch.c
AGENT_SRC += agent/admin.c agent/admin-client.c agent/status.c agent/cache-rm.c
CACHE_SRC := cache/store.c cache/entry.c cache/tags.c cache/memo.c
FALLBACK_SRC := fallback/challenge.c fallback/credentials.c fallback/http.c fallback/fallback.c fallback/answer.c \
	fallback/token.c fallback/breaker.c fallback/config.c fallback/manifest.c \
	fallback/containerd.c fallback/probe.c fallback/addr.c
FALLBACK_SRC += fallback/credhelper.c fallback/credsource.c
FALLBACK_SRC += fallback/referrers.c
LIB_SRC := $(COMMON_SRC) $(HOSTSCONFIG_SRC) $(CACHE_SRC) $(FALLBACK_SRC)
# What the agent's unit tests link besides LIB_SRC: all of the agent but its main().
AGENT_TEST_SRC := $(filter-out agent/main.c,$(AGENT_SRC))

UNIT_SRC := $(sort $(wildcard tests/unit/*/test-*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz-*.c))
FUZZ_TARGETS := $(filter-out fuzz-main,$(basename $(notdir $(FUZZ_SRC))))

REL := build/release
ASAN := build/asan
FUZZ := build/fuzz

.PHONY: all run check unit fuzz bench install clean deps deb image deps-packaging
.DEFAULT_GOAL := all
# Keep the objects of pattern-rule chains (unit and fuzz binaries) between runs.
.SECONDARY:

all: layerd

# ---- release build ------------------------------------------------------------
$(REL)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(SAN_FLAGS) $(call pkg_cflags,$(PKGS)) $(CFLAGS) -c $< -o $@

$(REL)/agent/main.o $(REL)/agent/upstream.o: $(VERSION_STAMP)

layerd: $(addprefix $(REL)/,$(LIB_SRC:.c=.o) $(AGENT_SRC:.c=.o))
	$(CC) -pthread $(SAN_FLAGS) $(LDFLAGS) -o $@ $^ $(call pkg_libs,$(PKGS))

# ---- ASan+UBSan build for unit tests and fuzz-corpus replay ----------------------
$(ASAN)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 $(ASAN_FLAGS) $(call pkg_cflags,$(PKGS) cmocka) $(CFLAGS) -c $< -o $@

$(ASAN)/unit/%: $(ASAN)/tests/unit/%.o $(addprefix $(ASAN)/,$(LIB_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(ASAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK) cmocka)

# The agent's unit tests (tests/unit/agent/) link the agent's objects and libraries too. Static
# pattern rules: a plain one loses to $(ASAN)/unit/% while the agent's objects are not built yet.
AGENT_UNIT_NAMES := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/agent/test-*.c))
$(addprefix $(ASAN)/unit/,$(AGENT_UNIT_NAMES)): $(ASAN)/unit/agent/%: $(ASAN)/tests/unit/agent/%.o $(addprefix $(ASAN)/,$(LIB_SRC:.c=.o) $(AGENT_TEST_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(ASAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS) cmocka)

# Unit tests also built without sanitizers, for valgrind.
$(REL)/unit/%: $(REL)/tests/unit/%.o $(addprefix $(REL)/,$(LIB_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread -o $@ $^ $(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK) cmocka)

$(addprefix $(REL)/unit/,$(AGENT_UNIT_NAMES)): $(REL)/unit/agent/%: $(REL)/tests/unit/agent/%.o $(addprefix $(REL)/,$(LIB_SRC:.c=.o) $(AGENT_TEST_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread -o $@ $^ $(call pkg_libs,$(PKGS) cmocka)

$(REL)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(call pkg_cflags,$(PKGS) cmocka) $(CFLAGS) -c $< -o $@

$(ASAN)/fuzz/%: $(ASAN)/tests/fuzz/%.o $(ASAN)/tests/fuzz/fuzz-main.o $(addprefix $(ASAN)/,$(LIB_SRC:.c=.o) \
		$(AGENT_PURE_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(ASAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK))

# ThreadSanitizer build for the tests of code with threads in it (cache/, fallback/, the agent's pull core).
TSAN := build/tsan
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
$(TSAN)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 $(TSAN_FLAGS) $(call pkg_cflags,$(PKGS) cmocka) $(CFLAGS) -c $< -o $@

$(TSAN)/unit/%: $(TSAN)/tests/unit/%.o $(addprefix $(TSAN)/,$(LIB_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(TSAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK) cmocka)

# The agent's threaded tests link the agent's objects and libraries too. Debian's libmicrohttpd is not
# built with TSan; its locks are seen (pthread is intercepted) and it reported nothing to suppress.
$(addprefix $(TSAN)/unit/,$(AGENT_UNIT_NAMES)): $(TSAN)/unit/agent/%: $(TSAN)/tests/unit/agent/%.o $(addprefix $(TSAN)/,$(LIB_SRC:.c=.o) $(AGENT_TEST_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(TSAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS) cmocka)

UNIT_NAMES := $(patsubst tests/unit/%.c,%,$(UNIT_SRC))
UNIT_ASAN := $(addprefix $(ASAN)/unit/,$(UNIT_NAMES))
UNIT_REL := $(addprefix $(REL)/unit/,$(UNIT_NAMES))
FUZZ_REPLAY := $(addprefix $(ASAN)/fuzz/,$(FUZZ_TARGETS))
UNIT_TSAN := $(addprefix $(TSAN)/unit/,$(filter cache/% fallback/test-fallback agent/test-core agent/test-admit agent/test-bounds common/test-budget agent/test-private agent/test-verdict common/test-throttle agent/test-reqmetrics,$(UNIT_NAMES)))
UNIT_TSAN += $(TSAN)/unit/fallback/test-credsource
UNIT_TSAN += $(TSAN)/unit/agent/test-specwatch

unit: $(UNIT_ASAN) $(UNIT_REL) $(UNIT_TSAN) $(FUZZ_REPLAY)

# ---- the two README commands ------------------------------------------------------
run: deps
	$(MAKE) layerd
	./layerd serve $(RUN_ARGS)

check: deps
	$(MAKE) layerd unit $(REL)/bench/hload
	tests/run --unit "$(UNIT_ASAN)" --valgrind "$(UNIT_REL)" --tsan "$(UNIT_TSAN)" --fuzz "$(FUZZ_REPLAY)" --layerd ./layerd

deps:
	@scripts/deps.sh

# ---- fuzzing with libFuzzer (clang) ---------------------------------------------------
$(FUZZ)/%: tests/fuzz/%.c $(LIB_SRC) $(AGENT_PURE_SRC)
	@mkdir -p $(@D)
	$(CLANG) -std=gnu17 -g -O1 -pthread -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
		$(call pkg_cflags,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK)) -o $@ $< $(LIB_SRC) $(AGENT_PURE_SRC) \
		$(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK))

fuzz: deps $(addprefix $(FUZZ)/,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t#fuzz-}; work=$$(mktemp -d); \
		echo "fuzz $$t for $(FUZZ_SECONDS)s"; \
		$(FUZZ)/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
			-dict=tests/fuzz/$$name.dict -artifact_prefix=$(FUZZ)/$$t- $$work tests/fuzz/corpus/$$name; \
		rm -rf $$work; \
	done

# ---- benchmarks (bench/README.md); timings are reported, never pass/fail ---------------
# make bench: bench/run.sh, about 11 minutes; BENCH_* variables (bench/README.md) change sizes.
BENCH_BLOBS ?= 100000
BENCH_VARS := $(foreach v,$(filter BENCH_%,$(.VARIABLES)),$(v)='$($(v))')

$(REL)/bench/cache-startup: $(REL)/bench/cache-startup.o $(addprefix $(REL)/,$(LIB_SRC:.c=.o))
	@mkdir -p $(@D)
	$(CC) -pthread $(SAN_FLAGS) -o $@ $^ $(call pkg_libs,$(PKGS_COMMON) $(PKGS_HOSTSCONFIG) $(PKGS_FALLBACK))

# Load clients of their own: no library of layerd's.
$(REL)/bench/bigread: $(REL)/bench/bigread.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^

$(REL)/bench/hload: $(REL)/bench/hload.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^

$(REL)/bench/abuse: $(REL)/bench/abuse.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^

$(REL)/bench/cpull: $(REL)/bench/cpull.o
	@mkdir -p $(@D)
	$(CC) -pthread -o $@ $^

# What linking Debian's libcurl costs in resident memory, for the RSS rows.
$(REL)/bench/rssfloor: $(REL)/bench/rssfloor.o
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(call pkg_libs,libcurl)

bench:
	@scripts/deps.sh --bench
	$(MAKE) layerd $(REL)/bench/cache-startup $(REL)/bench/bigread $(REL)/bench/hload $(REL)/bench/abuse $(REL)/bench/rssfloor $(REL)/bench/cpull
	env $(BENCH_VARS) bench/run.sh

install: layerd
	install -D -m 0755 layerd $(DESTDIR)$(PREFIX)/bin/layerd
	install -D -m 0644 packaging/man/layerd.8 $(DESTDIR)$(PREFIX)/share/man/man8/layerd.8
	install -D -m 0644 docs/spec.md $(DESTDIR)$(PREFIX)/share/doc/layerd/spec.md
	install -D -m 0644 docs/agent.md $(DESTDIR)$(PREFIX)/share/doc/layerd/agent.md
	install -D -m 0644 docs/doctor.md $(DESTDIR)$(PREFIX)/share/doc/layerd/doctor.md
	install -D -m 0644 docs/hosts.md $(DESTDIR)$(PREFIX)/share/doc/layerd/hosts.md
	install -D -m 0644 docs/example-spec.yaml $(DESTDIR)$(PREFIX)/share/doc/layerd/example-spec.yaml

# ---- packaging (packaging/README.md) --------------------------------------------------
# An OCI tag: the version with anything outside [A-Za-z0-9._-] made '_'.
IMAGE_TAG ?= $(shell printf '%s' '$(VERSION)' | tr -c 'A-Za-z0-9._-' _)
IMAGE_DIR ?= build/image

deps-packaging:
	@scripts/deps.sh --packaging

deb: deps-packaging
	packaging/build-deb.sh --version '$(VERSION)' --out build/deb

# From the release build, stripped: the same ./layerd gives the same digests.
image: deps-packaging
	$(MAKE) layerd
	/usr/bin/python3 packaging/image/build.py --binary layerd --out $(IMAGE_DIR) --tag '$(IMAGE_TAG)' \
		--version '$(VERSION)'
	@echo "OCI layout $(IMAGE_DIR), tag $(IMAGE_TAG); push it with:"
	@echo "  skopeo copy oci:$(IMAGE_DIR):$(IMAGE_TAG) docker://REGISTRY/layerd:$(IMAGE_TAG)"

clean:
	rm -rf build layerd

-include $(shell find build -name '*.d' 2>/dev/null)
