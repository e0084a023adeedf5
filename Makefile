# raft-kv: build it, run a local 3-node cluster, test it, benchmark it.
#
#   make cluster     build, then run the 3 nodes of the Procfile in the foreground (Ctrl-C stops them)
#   make test        formatting and lint checks (clippy over every target, benches included), unit
#                    and property tests, the multi-process cluster tests, then
#                    a short run of each fuzz target (make fuzz-short)
#   make fuzz        the cargo-fuzz targets of the decoders, FUZZ_SECONDS (60) each
#   make bench       raft-kv side by side with redis-server (bench/run.sh): writes docs/BENCHMARKS.md
#   make microbench  the criterion micro-benchmarks of the codec and the apply path, full length
#   make deps        install the system packages the above need (Debian/Ubuntu, via apt-get)
#   make clean-data  remove the data directories of `make cluster`
#
# Everything is built with the release profile, so RocksDB's C++ is compiled once.

SHELL := /bin/bash
.DEFAULT_GOAL := build

CARGO ?= cargo
BIN := ./target/release/raft-kv
# libclang-dev: bindgen for RocksDB. redis-tools: redis-cli and redis-benchmark. redis-server:
# the reference the differential tests compare against. python3-redis: redis-py, the second
# language's client the tests drive the cluster with.
DEB_PACKAGES := libclang-dev redis-tools redis-server python3-redis

.PHONY: deps build cluster test bench microbench fuzz fuzz-short clean-data

deps:
	@bash -c "$$deps_script"

build:
	$(CARGO) build --release

cluster: deps build
	@mkdir -p data
	@bash -c "$$cluster_script"

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) test --release --workspace --lib --bins
	$(CARGO) test --release -p actors --test '*'
	$(CARGO) test --release --test cluster --test differential --test hostile_clients --test operations -- --test-threads=1
	$(CARGO) test --release --test faults -- --test-threads=1 --nocapture
	@$(MAKE) --no-print-directory fuzz-short

# 5 to 10 minutes once built. BENCH_REPS, BENCH_N, BENCH_KEYS, BENCH_MICRO=0, BENCH_OUT: see bench/run.sh.
bench: deps build
	RAFTKV_BIN=$(BIN) bench/run.sh

microbench:
	$(CARGO) bench -p actors --bench codec --bench apply

# libFuzzer on the decoders of untrusted input (actors/protocol/fuzz: resp_decoder,
# command_parser, peer_frames), each for a bounded time. They build only the protocol crate, not
# RocksDB, into their own target directory. `--sanitizer none` works on the stable toolchain;
# the code is safe Rust, so the fuzzer looks for panics, overflows and broken invariants rather
# than memory errors. cargo-fuzz is installed first if missing. A crash stops make and leaves
# the input in actors/protocol/fuzz/artifacts/<target>/; new coverage accumulates in
# actors/protocol/fuzz/corpus/<target>/ (not committed), the committed seeds are in seeds/.
#
# `make fuzz-short` (the end of `make test`) runs each target for FUZZ_SHORT_SECONDS. Where
# cargo-fuzz cannot be installed or built it says so and soaks the seeded property tests of the
# same decoders (actors/tests/, and the RESP decoder's randomized unit tests) with FUZZ_CASES
# cases per seed instead; `make fuzz` fails there.
FUZZ_DIR := actors/protocol/fuzz
FUZZ_TARGETS := resp_decoder command_parser peer_frames
FUZZ_SECONDS ?= 60
FUZZ_SHORT_SECONDS ?= 20
FUZZ_CASES ?= 500000
CARGO_FUZZ_VERSION ?= 0.13.2

fuzz:
	@FUZZ_TIME=$(FUZZ_SECONDS) FUZZ_VERBOSITY=1 FUZZ_FALLBACK=0 bash -c "$$fuzz_script"

# Without libFuzzer's progress lines: only its warnings, a crash, and the final statistics.
fuzz-short:
	@FUZZ_TIME=$(FUZZ_SHORT_SECONDS) FUZZ_VERBOSITY=0 FUZZ_FALLBACK=1 bash -c "$$fuzz_script"

clean-data:
	rm -rf data

# Installs only the missing packages, with one `apt-get update` before. Root (or sudo) is
# needed only when something is missing.
define deps_script
set -euo pipefail
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for package in $(DEB_PACKAGES); do
    dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$$package")
  done
else
  for tool in redis-cli redis-benchmark redis-server; do
    command -v "$$tool" >/dev/null 2>&1 || missing+=("$$tool")
  done
  echo "deps: not a Debian system; building RocksDB also needs libclang (clang's library)."
fi
if [ $${#missing[@]} -eq 0 ]; then
  echo "deps: already installed: $(DEB_PACKAGES)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: please install: $${missing[*]}" >&2
  exit 1
fi
if [ "$$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "deps: need root to apt-get install: $${missing[*]}" >&2
  exit 1
fi
echo "deps: installing $${missing[*]}"
$$sudo apt-get update
$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$${missing[@]}"
endef
export deps_script

define fuzz_script
set -euo pipefail
unavailable() {
  echo "fuzz: $$1" >&2
  if [ "$$FUZZ_FALLBACK" != 1 ]; then
    exit 1
  fi
  echo "fuzz: cargo-fuzz is unavailable; running the seeded property tests of the same decoders" \
    "with $(FUZZ_CASES) cases per seed instead" >&2
  RAFTKV_PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p protocol --lib resp::
  RAFTKV_PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p actors --test command_parser --test peer_frames
  exit 0
}
# `if !` rather than `||`: bash ignores `set -e` in a function called from an `||` list.
if ! $(CARGO) fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz $(CARGO_FUZZ_VERSION)"
  if ! env -u CARGO_TARGET_DIR $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION); then
    unavailable "cargo-fuzz could not be installed"
  fi
fi
# The fuzz build has compiler flags of its own: it never shares the workspace's target directory.
fuzz_cargo=(--fuzz-dir $(FUZZ_DIR) --target-dir $(FUZZ_DIR)/target --sanitizer none)
if ! $(CARGO) fuzz build "$${fuzz_cargo[@]}"; then
  unavailable "the fuzz targets did not build with this toolchain (see above)"
fi
for target in $(FUZZ_TARGETS); do
  echo "fuzz: $$target for $$FUZZ_TIME s"
  mkdir -p $(FUZZ_DIR)/corpus/$$target
  $(CARGO) fuzz run "$${fuzz_cargo[@]}" $$target $(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/seeds/$$target \
    -- -max_total_time=$$FUZZ_TIME -verbosity=$$FUZZ_VERBOSITY -print_final_stats=1
done
endef
export fuzz_script

# goreman when it is installed (it has `goreman run stop node2`), else honcho.
define cluster_script
set -euo pipefail
if command -v goreman >/dev/null 2>&1; then
  exec goreman start
fi
if command -v honcho >/dev/null 2>&1; then
  exec honcho start -f Procfile
fi
if ! python3 -c 'import honcho' >/dev/null 2>&1; then
  echo "cluster: neither goreman nor honcho found; installing honcho with pip"
  if ! pip install honcho; then
    echo "cluster: pip could not install honcho. Install goreman (go install github.com/mattn/goreman@latest)" >&2
    echo "         or honcho (apt-get install honcho, or pipx install honcho), then run make cluster again." >&2
    exit 1
  fi
fi
if command -v honcho >/dev/null 2>&1; then
  exec honcho start -f Procfile
fi
exec python3 -m honcho start -f Procfile
endef
export cluster_script
