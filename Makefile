# raft-kv: build it, run a local 3-node cluster, test it, benchmark it.
#
#   make cluster     build, then run the 3 nodes of the Procfile in the foreground (Ctrl-C stops them)
#   make test        formatting check, unit tests, then the multi-process cluster tests
#   make bench       start a fresh 3-node cluster in the background and run redis-benchmark on it
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
# Extra redis-benchmark flags for `make bench`, e.g. `make bench BENCH_FLAGS=` for the full report.
BENCH_FLAGS ?= -q

.PHONY: deps build cluster test bench clean-data

deps:
	@bash -c "$$deps_script"

build:
	$(CARGO) build --release

cluster: deps build
	@mkdir -p data
	@bash -c "$$cluster_script"

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) test --release --workspace --lib --bins
	$(CARGO) test --release --test cluster --test differential -- --test-threads=1

bench: deps build
	@bash -c "$$bench_script"

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

# The Procfile's three nodes on the Procfile's ports, but with a fresh temporary data directory,
# so the figures do not depend on what an earlier run left behind.
define bench_script
set -euo pipefail
if redis-cli -p 63791 ping >/dev/null 2>&1; then
  echo "bench: something already answers on port 63791 (is make cluster running?); stop it first" >&2
  exit 1
fi
dir=$$(mktemp -d -t raft-kv-bench.XXXXXX)
pids=()
stop_nodes() {
  [ $${#pids[@]} -eq 0 ] || kill -TERM "$${pids[@]}" 2>/dev/null || true
  for _ in $$(seq 50); do
    alive=0
    for pid in "$${pids[@]}"; do kill -0 "$$pid" 2>/dev/null && alive=1; done
    [ "$$alive" -eq 0 ] && break
    sleep 0.2
  done
  [ $${#pids[@]} -eq 0 ] || kill -KILL "$${pids[@]}" 2>/dev/null || true
  rm -rf "$$dir"
}
trap stop_nodes EXIT
peers=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379
for id in 1 2 3; do
  RUST_LOG="$${RUST_LOG:-warn}" $(BIN) --id "$$id" --cluster "$$peers" --port "6379$$id" \
    --data-dir "$$dir/node$$id" >"$$dir/node$$id.log" 2>&1 &
  pids+=($$!)
done
echo "bench: waiting for node1 (port 63791) to accept writes..."
deadline=$$((SECONDS + 60))
until [ "$$(redis-cli -p 63791 set bench:ready 1 2>/dev/null)" = "OK" ]; do
  for pid in "$${pids[@]}"; do
    if ! kill -0 "$$pid" 2>/dev/null; then
      echo "bench: a node exited; the end of each node's log:" >&2
      tail -n 20 "$$dir"/node*.log >&2
      exit 1
    fi
  done
  if [ "$$SECONDS" -ge "$$deadline" ]; then
    echo "bench: no leader after 60 s; the end of each node's log:" >&2
    tail -n 20 "$$dir"/node*.log >&2
    exit 1
  fi
  sleep 0.2
done
echo "bench: redis-benchmark -t set,get -n 100000 -p 63791 $(BENCH_FLAGS)"
redis-benchmark -t set,get -n 100000 -p 63791 $(BENCH_FLAGS)
endef
export bench_script
