# zerofs: one non-recursive make graph.
#   make              build ./zerofs
#   make check        build and run every test (unit, fixtures, generated, CLI, FUSE)
#   make SANITIZE=address,undefined check
#   make bench        benchmarks (bench/RESULTS.md)
#   make fuzz         libFuzzer harnesses, bounded time (clang)
#   make install      PREFIX/DESTDIR honoured
# V=1 shows the commands. DEVELOPER=1 turns warnings into errors.

PREFIX ?= /usr/local
prefix ?= $(PREFIX)
bindir ?= $(prefix)/bin
sbindir ?= $(prefix)/sbin
datadir ?= $(prefix)/share
mandir ?= $(datadir)/man
bashcompdir ?= $(datadir)/bash-completion/completions
man1dir ?= $(mandir)/man1
man5dir ?= $(mandir)/man5
DESTDIR ?=
INSTALL ?= install
INSTALL_PROGRAM ?= $(INSTALL) -m 0755
INSTALL_DATA ?= $(INSTALL) -m 0644

CC ?= cc
PKG_CONFIG ?= pkg-config
# The tests' python: the client venv scripts/setup-debian.sh makes (Debian's
# python and torch, plus transformers & co. from PyPI), else Debian's own.
ZEROFS_VENV ?= $(CURDIR)/.venv
PYTHON ?= $(if $(wildcard $(ZEROFS_VENV)/bin/python3),$(ZEROFS_VENV)/bin/python3,/usr/bin/python3)
CFLAGS ?= -O2 -g
WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wwrite-strings -Wformat=2 -Wvla -Wpointer-arith -Wundef \
	-Wno-missing-field-initializers
ifeq ($(DEVELOPER),1)
WARNINGS += -Werror
endif
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Icore \
	-MMD -MP -pthread $(WARNINGS)
# Unsafe string functions are compile errors in the program's own code.
BANNED = -include core/banned.h
ifneq ($(SANITIZE),)
SAN_FLAGS = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

Q = $(if $(filter 1,$(V)),,@)

# core/ is the library: it never sees FUSE's flags, so an #include of
# <fuse.h> there fails to build.
CORE_PKGS = libzip libcjson libxxhash
FS_PKGS = fuse3 $(CORE_PKGS)
CORE_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(CORE_PKGS))
FS_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(FS_PKGS))
CORE_LIBS = $(shell $(PKG_CONFIG) --libs $(CORE_PKGS)) -lm
FS_LIBS = $(shell $(PKG_CONFIG) --libs $(FS_PKGS)) -lm

# Sanitizer builds get their own objects: make does not notice changed flags.
BUILD = build$(if $(SANITIZE),-san)
CORE_SRC = $(sort $(wildcard core/*.c))
FS_SRC = $(sort $(wildcard fs/*.c))
CORE_OBJ = $(CORE_SRC:%.c=$(BUILD)/%.o)
FS_OBJ = $(FS_SRC:%.c=$(BUILD)/%.o)
LIB = $(BUILD)/libzerofs.a

UNIT_SRC = $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

HELPER_SRC = $(sort $(wildcard tests/helpers/*.c))
HELPER_BIN = $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/tests/%)

all: zerofs ## build ./zerofs

# ./zerofs is shared by plain and sanitizer builds: relink it when the
# build it comes from changes, so `make check` never tests the other one.
FLAVOUR = .zerofs-flavour
$(FLAVOUR): FORCE
	@echo '$(BUILD) $(SANITIZE)' | cmp -s - $@ || echo '$(BUILD) $(SANITIZE)' > $@

zerofs: $(FS_OBJ) $(LIB) $(FLAVOUR)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) -pthread -o $@ $(FS_OBJ) $(LIB) $(FS_LIBS)

FORCE:

$(LIB): $(CORE_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(BANNED) $(CORE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c -o $@ $<

# The conversion kernels are the hot loop of every converting read.
$(BUILD)/core/convert.o: CFLAGS += -O3

$(BUILD)/fs/%.o: fs/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(BANNED) $(FS_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB) tests/unit/tap.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) -Itests/unit $(CORE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -o $@ $< $(LIB) $(CORE_LIBS)

$(BUILD)/tests/%: tests/helpers/%.c $(LIB)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(BASE_CFLAGS) $(CORE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -o $@ $< $(LIB) $(CORE_LIBS)

tests: zerofs $(UNIT_BIN) $(HELPER_BIN)

check: tests ## run the whole test suite
	$(Q)PYTHON=$(PYTHON) ZEROFS_VENV=$(ZEROFS_VENV) SANITIZE=$(SANITIZE) ZEROFS_BUILD=$(BUILD) tests/run.sh

# valgrind is ~50x slower: the conversion test skips its 2^32 sweep there
# (the sanitizer and plain runs do it).
valgrind: tests ## run the core unit tests under valgrind (memcheck)
	$(Q)for t in $(UNIT_BIN); do \
		args=; case $$t in *test_convert|*test_pickle_mem) args=--quick ;; esac; \
		echo "valgrind $$t $$args"; \
		valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			$$t $$args > $$t.valgrind.log 2>&1 || { tail -40 $$t.valgrind.log; exit 1; }; \
		grep -E '^(not ok|1\.\.)' $$t.valgrind.log | tail -1; \
	done

bench: zerofs ## run the benchmarks, results in bench/RESULTS.md
	$(Q)PYTHON=$(PYTHON) ZEROFS_VENV=$(ZEROFS_VENV) bench/run.sh

# mount(8) finds helpers in /sbin only: with prefix=/usr the links below
# make 'mount -t zerofs' and fstab lines work directly; with /usr/local,
# type fuse.zerofs still works through mount.fuse3, which runs zerofs
# from PATH (zerofs(1), FSTAB AND SYSTEMD).
install: zerofs ## install zerofs, mount.zerofs, the man pages and bash completion
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(sbindir) $(DESTDIR)$(man1dir) $(DESTDIR)$(man5dir) $(DESTDIR)$(bashcompdir)
	$(INSTALL_PROGRAM) zerofs $(DESTDIR)$(bindir)/zerofs
	ln -sf "$$(realpath -m --relative-to=$(sbindir) $(bindir))/zerofs" $(DESTDIR)$(sbindir)/mount.zerofs
	ln -sf "$$(realpath -m --relative-to=$(sbindir) $(bindir))/zerofs" $(DESTDIR)$(sbindir)/mount.fuse.zerofs
	$(INSTALL_DATA) man/zerofs.1 $(DESTDIR)$(man1dir)/zerofs.1
	$(INSTALL_DATA) man/zerofs-checkpoint.5 $(DESTDIR)$(man5dir)/zerofs-checkpoint.5
	$(INSTALL_DATA) man/zerofs-safetensors.5 $(DESTDIR)$(man5dir)/zerofs-safetensors.5
	$(INSTALL_DATA) scripts/completion.bash $(DESTDIR)$(bashcompdir)/zerofs

uninstall:
	rm -f $(DESTDIR)$(bindir)/zerofs $(DESTDIR)$(sbindir)/mount.zerofs \
		$(DESTDIR)$(sbindir)/mount.fuse.zerofs $(DESTDIR)$(man1dir)/zerofs.1 \
		$(DESTDIR)$(man5dir)/zerofs-checkpoint.5 $(DESTDIR)$(man5dir)/zerofs-safetensors.5 \
		$(DESTDIR)$(bashcompdir)/zerofs

lint-man: ## check the man pages with mandoc
	mandoc -Tlint -Wwarning man/zerofs.1 man/zerofs-checkpoint.5 man/zerofs-safetensors.5

# Only the lines changed since STYLE_BASE are looked at (git's rule): the
# tree is not reformatted in one go. STYLE_BASE=main checks a branch.
STYLE_BASE ?= HEAD
style: ## show what clang-format (.clang-format) would change in the C lines changed since STYLE_BASE
	$(Q)scripts/style.sh $(STYLE_BASE)

hdr-check: ## compile every header on its own, included twice (guards)
	$(Q)for h in include/zerofs/*.h core/*.h fs/*.h; do \
		case $$h in fs/*) flags='$(FS_CFLAGS)' ;; *) flags='$(CORE_CFLAGS)' ;; esac; \
		printf '#include "%s"\n#include "%s"\n' "$$h" "$$h" | \
			$(CC) $(BASE_CFLAGS) -I. $$flags -Werror -fsyntax-only -x c - || \
			{ echo "hdr-check: $$h"; exit 1; }; \
	done

clean:
	rm -rf build build-san zerofs $(FLAVOUR)

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

.PHONY: FORCE all tests check valgrind bench install uninstall lint-man hdr-check style clean help fuzz

-include $(CORE_OBJ:.o=.d) $(FS_OBJ:.o=.d) $(UNIT_BIN:=.d) $(HELPER_BIN:=.d)

demo: zerofs ## mount a generated demo checkpoint and show it
	$(Q)PYTHON=$(PYTHON) scripts/demo.sh

fuzz: ## run the libFuzzer harnesses for a bounded time (FUZZ_SECONDS each)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

.PHONY: demo
