#!/usr/bin/env bash
# `make bench`: raft-kv side by side with redis-server, on this machine, in one run.
#
# Starts, each on free loopback ports and in its own temporary directory:
#   - a fresh 3-node raft-kv cluster (the release binary, RUST_LOG=info),
#   - redis-server --appendonly yes --appendfsync always --save ''   (the durable peer),
#   - redis-server --appendonly no --save ''                          (the ceiling),
#   - redis-server --appendonly yes --appendfsync everysec --save '' and a second 3-node raft-kv
#     cluster started with --fsync everysec: the explicit faster mode, which is not Raft-safe,
#     benchmarked separately (the targets are judged on the default cluster only).
# Then:
#   1. redis-benchmark -t set,get -n N -c 50 [ | -P 16 | -d 1024 ] against the durable redis,
#      the ceiling redis, the raft-kv leader and a raft-kv follower (and the everysec pair);
#      REPS repetitions, medians of requests/s, p50 and p99 (from `redis-benchmark --csv`); then
#      the everysec cluster is stopped;
#   1b. once more, unpipelined SET alone against the durable redis and the raft-kv leader, REPS
#      times, counting the CPU time of the servers (from /proc) and of redis-benchmark, and the
#      machine's idle time: what a SET costs each system, and the budget SET at 1.0x would need;
#   2. loads KEYS keys into raft-kv (MSET of 100 pairs per command, redis-cli --pipe);
#   3. kill -9 a follower, restarts it, and times until it answers a linearizable GET of a key
#      written just before (PING is answered before Raft is ready, so it proves nothing);
#   4. starts node 4 with --join, adds it with RAFT.NODE ADD on the leader, and times until the
#      leader's RAFT.INFO shows it as a voter and its DBSIZE equals the leader's;
#   5. reads the peak RSS (VmHWM) of every node, stops everything, and runs the criterion
#      micro-benchmarks (actors/benches) with a short measurement time.
# Prints the report and writes it to docs/BENCHMARKS.md. The hand-written part of that file,
# after the HAND_WRITTEN marker line, is kept as it is.
#
# Environment: BENCH_REPS (3), BENCH_N (100000), BENCH_CLIENTS (50), BENCH_KEYS (1000000),
# BENCH_MICRO (1; 0 skips the micro-benchmarks), BENCH_OUT (docs/BENCHMARKS.md),
# BENCH_KEEP (0; 1 keeps the temporary directory with the logs), RAFTKV_BIN.
# Quick run: BENCH_REPS=1 BENCH_N=10000 BENCH_KEYS=100000 BENCH_MICRO=0 BENCH_OUT=/tmp/b.md make bench

set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${BENCH_REPS:-3}
N=${BENCH_N:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
KEYS=${BENCH_KEYS:-1000000}
MICRO=${BENCH_MICRO:-1}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
BIN=${RAFTKV_BIN:-./target/release/raft-kv}
HAND_WRITTEN='<!-- Everything below this line is written by hand; bench/run.sh keeps it. -->'

for tool in redis-server redis-cli redis-benchmark timeout; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (run make deps)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench: $BIN not found (run make build)" >&2; exit 1; }

tmp=$(mktemp -d -t raft-kv-bench.XXXXXX)
raw=$tmp/results.tsv # rep workload system test rps p50 p99
pids=()

stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  local status=$?
  stop_all
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then echo "bench: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# free_port VAR: sets VAR to a free loopback port, found by binding to port 0; never the same
# port twice in a run.
given_ports=" "
free_port() {
  local candidate
  for _ in $(seq 20); do
    if command -v python3 >/dev/null; then
      candidate=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    else
      candidate=$((20000 + RANDOM % 40000))
      (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
    fi
    [[ $given_ports == *" $candidate "* ]] && continue
    given_ports+="$candidate "
    printf -v "$1" '%s' "$candidate"
    return
  done
  echo "bench: no free port found" >&2
  exit 1
}

cli() { timeout 5 redis-cli -p "$1" "${@:2}" 2>/dev/null | tr -d '\r'; }

# --- start everything -----------------------------------------------------------------------
declare -A port # system -> Redis port
declare -A node_pid node_port node_args
free_port 'port[durable]'
free_port 'port[ceiling]'
free_port 'port[redis_es]'
mkdir -p "$tmp/redis-durable" "$tmp/redis-ceiling" "$tmp/redis-everysec"
redis-server --bind 127.0.0.1 --port "${port[durable]}" --dir "$tmp/redis-durable" \
  --appendonly yes --appendfsync always --save '' --logfile "$tmp/redis-durable.log" &
pids+=($!)
durable_pid=$!
redis-server --bind 127.0.0.1 --port "${port[ceiling]}" --dir "$tmp/redis-ceiling" \
  --appendonly no --save '' --logfile "$tmp/redis-ceiling.log" &
pids+=($!)
redis-server --bind 127.0.0.1 --port "${port[redis_es]}" --dir "$tmp/redis-everysec" \
  --appendonly yes --appendfsync everysec --save '' --logfile "$tmp/redis-everysec.log" &
pids+=($!)

# raft-kv nodes are keyed by a cluster prefix and their id: 1, 2, 3 (and 4, added later) for
# the default cluster, es1, es2, es3 for the everysec one. Each logs to $tmp/node<key>.log.
start_node() { # key, id, extra args...
  local key=$1 id=$2
  node_args[$key]="--id $id --port ${node_port[$key]} --data-dir $tmp/node$key ${*:3}"
  # shellcheck disable=SC2086
  RUST_LOG=${RUST_LOG:-info} "$BIN" ${node_args[$key]} >>"$tmp/node$key.log" 2>&1 &
  node_pid[$key]=$!
  pids+=($!)
}
peer_addrs() { # sets $addrs: three fresh peer addresses, comma-separated
  local peer_port list=() _
  for _ in 1 2 3; do
    free_port peer_port
    list+=("127.0.0.1:$peer_port")
  done
  addrs=$(IFS=,; echo "${list[*]}")
}
start_cluster() { # prefix, peer addresses, extra node args...
  local id
  for id in 1 2 3; do
    free_port "node_port[$1$id]"
    start_node "$1$id" "$id" --cluster "$2" "${@:3}"
  done
}
peer_addrs
cluster=$addrs
start_cluster "" "$cluster"
# The second cluster, with --fsync everysec.
peer_addrs
start_cluster es "$addrs" --fsync everysec

nodes_alive() {
  local key
  for key in "${!node_pid[@]}"; do
    if ! kill -0 "${node_pid[$key]}" 2>/dev/null; then
      log "node $key exited; the end of each node's log:"
      tail -n 20 "$tmp"/node*.log >&2
      exit 1
    fi
  done
}

find_leader_of() { # prefix: sets $found to the key of that cluster's leader
  local deadline=$((SECONDS + 60)) id
  while [ "$SECONDS" -lt "$deadline" ]; do
    nodes_alive
    for id in 1 2 3; do
      if cli "${node_port[$1$id]}" info raft | grep -qx 'role:leader'; then
        found=$1$id
        return
      fi
    done
    sleep 0.2
  done
  log "no leader in raft-kv cluster '$1' after 60 s"
  tail -n 20 "$tmp/node$1"*.log >&2
  exit 1
}
leader=""
find_leader() { # sets $leader (node id) and $follower (the lowest other id) of the default cluster
  find_leader_of ""
  leader=$found
  for follower in 1 2 3; do [ "$follower" != "$leader" ] && break; done
}
find_es_leader() { # sets port[fast] to the everysec cluster's leader
  find_leader_of es
  port[fast]=${node_port[$found]}
}

wait_ready() { # port, what
  local deadline=$((SECONDS + 60))
  until [ "$(cli "$1" set bench:ready 1)" = OK ]; do
    [ "$SECONDS" -lt "$deadline" ] || { log "$2 does not accept writes after 60 s"; exit 1; }
    sleep 0.2
  done
}
wait_ready "${port[durable]}" "redis-server (durable)"
wait_ready "${port[ceiling]}" "redis-server (ceiling)"
wait_ready "${port[redis_es]}" "redis-server (everysec)"
find_leader
wait_ready "${node_port[$leader]}" "the raft-kv leader"
find_es_leader
wait_ready "${port[fast]}" "the everysec cluster's leader"
log "raft-kv leader: node $leader; follower used: node $follower"

machine_cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
machine="$(nproc) cores ($machine_cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
run_start=$SECONDS

# --- 1. throughput and latency --------------------------------------------------------------
workloads=(c50 P16 d1024)
declare -A workload_flags=([c50]="" [P16]="-P 16" [d1024]="-d 1024")
declare -A workload_label=([c50]="-c $CLIENTS" [P16]="-c $CLIENTS -P 16" [d1024]="-c $CLIENTS -d 1024")
systems=(durable ceiling leader follower redis_es fast)
declare -A system_label=(
  [durable]="redis-server, appendfsync always"
  [ceiling]="redis-server, no persistence"
  [leader]="raft-kv leader"
  [follower]="raft-kv follower"
  [redis_es]="redis-server, appendfsync everysec"
  [fast]="raft-kv leader, \`--fsync everysec\` (not Raft-safe)"
)
errors=0
for rep in $(seq "$REPS"); do
  find_leader
  port[leader]=${node_port[$leader]}
  port[follower]=${node_port[$follower]}
  find_es_leader
  for workload in "${workloads[@]}"; do
    for system in "${systems[@]}"; do
      log "rep $rep/$REPS: ${workload_label[$workload]} against ${system_label[$system]}"
      # shellcheck disable=SC2086
      redis-benchmark -h 127.0.0.1 -p "${port[$system]}" -t set,get -n "$N" -c "$CLIENTS" \
        ${workload_flags[$workload]} --csv >"$tmp/out.csv" 2>"$tmp/err.txt" || {
        log "redis-benchmark failed:"; cat "$tmp/err.txt" >&2; exit 1; }
      errors=$((errors + $(grep -c 'Error from server' "$tmp/err.txt" || true)))
      # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
      awk -F, -v rep="$rep" -v w="$workload" -v s="$system" '
        { gsub(/"/, "") }
        $1 == "SET" || $1 == "GET" { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rep, w, s, $1, $2, $5, $7 }
      ' "$tmp/out.csv" >>"$raw"
      [ "$(awk -v rep="$rep" -v w="$workload" -v s="$system" '$1 == rep && $2 == w && $3 == s' "$raw" | wc -l)" -eq 2 ] \
        || { log "no SET/GET figures in redis-benchmark's output:"; cat "$tmp/out.csv" "$tmp/err.txt" >&2; exit 1; }
      nodes_alive
    done
  done
done
# The everysec cluster has done its part; the rest of the run measures the default one.
for id in 1 2 3; do kill -TERM "${node_pid[es$id]}" 2>/dev/null || true; done
for id in 1 2 3; do
  wait "${node_pid[es$id]}" 2>/dev/null || true
  unset "node_pid[es$id]"
done

# --- 1b. CPU per unpipelined SET -----------------------------------------------------------
# The SET target is a question of CPU on this machine: whatever the servers spend per SET, plus
# what redis-benchmark spends, times the rate, cannot exceed the cores. So the same unpipelined
# SET load runs once more against the durable redis-server and the raft-kv leader, and counts it.
cpu_raw=$tmp/cpu.tsv # rep system rps server_us rb_us idle_pct leader_us follower_us...
clk_tck=$(getconf CLK_TCK)
proc_ticks() { # pid: user + system clock ticks of the process, all its threads
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
idle_ticks() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }
cpu_run() { # rep system port pids...
  local rep=$1 system=$2 rb_port=$3 p t0 t1 i0 i1 rb rps
  local -a before=() after=()
  shift 3
  for p in "$@"; do before+=("$(proc_ticks "$p")"); done
  i0=$(idle_ticks); t0=$(now)
  { TIMEFORMAT='%3U %3S'; time redis-benchmark -h 127.0.0.1 -p "$rb_port" -t set -n "$N" -c "$CLIENTS" \
    --csv >"$tmp/out.csv" 2>"$tmp/err.txt"; } 2>"$tmp/rbtime.txt" || {
    log "redis-benchmark failed:"; cat "$tmp/err.txt" >&2; exit 1; }
  i1=$(idle_ticks); t1=$(now)
  for p in "$@"; do after+=("$(proc_ticks "$p")"); done
  rb=$(awk '{ print $1 + $2 }' "$tmp/rbtime.txt")
  rps=$(awk -F, '{ gsub(/"/, "") } $1 == "SET" { print $2 }' "$tmp/out.csv")
  [ -n "$rps" ] || { log "no SET figure in redis-benchmark's output:"; cat "$tmp/out.csv" "$tmp/err.txt" >&2; exit 1; }
  awk -v rep="$rep" -v s="$system" -v rps="$rps" -v n="$N" -v hz="$clk_tck" -v rb="$rb" \
    -v idle=$((i1 - i0)) -v wall="$(elapsed "$t0" "$t1")" -v cores="$(nproc)" \
    -v before="${before[*]}" -v after="${after[*]}" 'BEGIN {
      split(before, b, " "); split(after, a, " "); total = 0; each = ""
      for (i = 1; i in a; i++) { us = (a[i] - b[i]) / hz / n * 1e6; total += us; each = each "\t" us }
      printf "%s\t%s\t%s\t%s\t%s\t%s%s\n", rep, s, rps, total, rb / n * 1e6, 100 * idle / hz / (cores * wall), each
    }' >>"$cpu_raw"
}
for rep in $(seq "$REPS"); do
  find_leader
  log "rep $rep/$REPS: CPU per unpipelined SET, redis-server (appendfsync always) and raft-kv"
  cpu_run "$rep" durable "${port[durable]}" "$durable_pid"
  followers=()
  for id in 1 2 3; do [ "$id" = "$leader" ] || followers+=("${node_pid[$id]}"); done
  cpu_run "$rep" leader "${node_port[$leader]}" "${node_pid[$leader]}" "${followers[@]}"
  nodes_alive
done
# The median of the numbers on stdin, one per line ("nan" for none).
median_of_lines() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
cpu_median() { # system column (3 rps, 4 server µs, 5 redis-benchmark µs, 6 idle %, 7.. each process)
  awk -F'\t' -v s="$1" -v c="$2" '$2 == s { print $c }' "$cpu_raw" | median_of_lines
}

# median workload system test column(5 rps, 6 p50, 7 p99)
median() {
  awk -F'\t' -v w="$1" -v s="$2" -v t="$3" -v c="$4" '$2 == w && $3 == s && $4 == t { print $c }' "$raw" |
    median_of_lines
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
fmt_rps() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt_ms() { awk -v x="$1" 'BEGIN { printf "%.3f", x }'; }
# at_least value threshold -> "met" / "missed"
verdict_ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "**met**" : "missed") }'; }
verdict_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "**met**" : "missed") }'; }

# --- 2. load 1 M keys -------------------------------------------------------------------------
find_leader
leader_port=${node_port[$leader]}
log "loading $KEYS keys into raft-kv through the leader (node $leader)"
# MSET of 100 pairs per command, written by redis-cli --pipe in chunks of 20 000 keys, so that a
# chunk that meets an error (a leader change on a busy machine) can be sent again: MSET is
# idempotent. (One pipe of all the keys works too: 1 M keys load in about 3.5 s here.)
load_chunk() { # first, count
  awk -v first="$1" -v count="$2" 'BEGIN {
    for (b = 0; b * 100 < count; b++) {
      n = count - b * 100; if (n > 100) n = 100
      printf "*%d\r\n$4\r\nMSET\r\n", 1 + 2 * n
      for (j = 0; j < n; j++) {
        i = first + b * 100 + j; k = sprintf("load:%09d", i); v = sprintf("value-%09d", i)
        printf "$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
      }
    }
  }'
}
load_retries=0
t0=$(now)
for ((first = 0; first < KEYS; first += 20000)); do
  count=$((KEYS - first < 20000 ? KEYS - first : 20000))
  for attempt in 1 2 3 4 5 6; do
    if load_chunk "$first" "$count" | timeout 300 redis-cli -p "$leader_port" --pipe >"$tmp/load.txt" 2>&1 &&
      grep -q 'errors: 0,' "$tmp/load.txt"; then
      break
    fi
    [ "$attempt" -lt 6 ] || { log "loading keys $first.. failed 6 times:"; tail -n 5 "$tmp/load.txt" >&2; exit 1; }
    log "loading keys $first.. met errors ($(grep -m1 -v '^All data\|^Last reply' "$tmp/load.txt" || true)); again"
    load_retries=$((load_retries + 1))
    sleep 1
    find_leader
    leader_port=${node_port[$leader]}
  done
done
t1=$(now)
load_seconds=$(elapsed "$t0" "$t1")
dbsize=$(cli "$leader_port" dbsize || true)
log "loaded in $load_seconds s; the leader's DBSIZE is $dbsize"

# Peak RSS of the three nodes over the throughput runs and the load, before any restart.
declare -A hwm
read_hwm() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
for id in 1 2 3; do hwm[$id]=$(read_hwm "${node_pid[$id]}"); done

# --- 3. restart a follower holding the keys -----------------------------------------------------
token="restart-$RANDOM$RANDOM"
[ "$(cli "$leader_port" set bench:restart-probe "$token")" = OK ] || { log "cannot write the probe key"; exit 1; }
follower_port=${node_port[$follower]}
deadline=$((SECONDS + 30))
until [ "$(cli "$follower_port" get bench:restart-probe)" = "$token" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { log "node $follower does not serve the probe key"; exit 1; }
  sleep 0.05
done
log "kill -9 node $follower, restart it, wait for a linearizable GET to answer"
kill -KILL "${node_pid[$follower]}"
wait "${node_pid[$follower]}" 2>/dev/null || true
restart_mark=$(wc -l <"$tmp/node$follower.log")
t0=$(now)
# shellcheck disable=SC2086
RUST_LOG=${RUST_LOG:-info} "$BIN" ${node_args[$follower]} >>"$tmp/node$follower.log" 2>&1 &
node_pid[$follower]=$!
pids+=($!)
restart_seconds="not ready after 120 s"
deadline=$((SECONDS + 120))
while [ "$SECONDS" -lt "$deadline" ]; do
  if [ "$(timeout 2 redis-cli -p "$follower_port" get bench:restart-probe 2>/dev/null | tr -d '\r')" = "$token" ]; then
    restart_seconds=$(elapsed "$t0" "$(now)")
    break
  fi
  sleep 0.02
done
# How much of it was opening the data directory: the node logs "starting raft-kv node" once
# RocksDB is open and the log is read.
open_seconds="?"
started_line=$(tail -n +"$((restart_mark + 1))" "$tmp/node$follower.log" | grep -m1 'starting raft-kv node' || true)
if [ -n "$started_line" ]; then
  open_seconds=$(elapsed "$t0" "$(date -d "$(cut -d' ' -f1 <<<"$started_line")" +%s.%N)")
fi
log "restart: ready after $restart_seconds s (data dir open after $open_seconds s)"

# --- 4. a new node catches up by snapshot -------------------------------------------------------
find_leader
leader_port=${node_port[$leader]}
free_port peer4
free_port 'node_port[4]'
start_node 4 4 --cluster "$cluster,127.0.0.1:$peer4" --join
deadline=$((SECONDS + 30))
until [ "$(cli "${node_port[4]}" ping)" = PONG ]; do
  [ "$SECONDS" -lt "$deadline" ] || { log "node 4 does not answer PING"; exit 1; }
  nodes_alive
  sleep 0.1
done
leader_keys=$(cli "$leader_port" dbsize || true)
log "RAFT.NODE ADD 4 on the leader (node $leader, $leader_keys keys); waiting until node 4 is a voter with every key"
t0=$(now)
add_reply=$(cli "$leader_port" raft.node add 4 "127.0.0.1:$peer4" "127.0.0.1:${node_port[4]}" || true)
[ "$add_reply" = OK ] || { log "RAFT.NODE ADD answered: $add_reply"; exit 1; }
catchup_seconds="not caught up after 180 s"
deadline=$((SECONDS + 180))
while [ "$SECONDS" -lt "$deadline" ]; do
  nodes_alive
  if cli "$leader_port" raft.info | grep -q '^member:id=4,.*role=voter' &&
    [ "$(cli "${node_port[4]}" dbsize)" = "$leader_keys" ]; then
    catchup_seconds=$(elapsed "$t0" "$(now)")
    break
  fi
  sleep 0.05
done
snapshot_note=$(grep -m1 'installed a snapshot' "$tmp/node4.log" | grep -o 'keys=[0-9]*' || echo "no snapshot installed")
log "catch-up: $catchup_seconds s ($snapshot_note)"

hwm_restarted=$(read_hwm "${node_pid[$follower]}")
hwm[4]=$(read_hwm "${node_pid[4]}")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
# Elections during the run: each "became leader" line in a node's log.
elections=$(cat "$tmp"/node[0-9]*.log | grep -c 'became leader' || true) # the default cluster's
cluster_minutes=$(awk -v s=$((SECONDS - run_start)) 'BEGIN { printf "%.1f", s / 60 }')
stop_all

# --- 5. micro-benchmarks -------------------------------------------------------------------
micro_table=""
if [ "$MICRO" = 1 ]; then
  log "micro-benchmarks: cargo bench -p actors --bench codec --bench apply (short measurement)"
  cargo bench -p actors --bench codec --bench apply -- --warm-up-time 0.5 --measurement-time 2 \
    --output-format bencher >"$tmp/micro.txt" 2>"$tmp/micro.err" || {
    log "the micro-benchmarks failed:"; tail -n 30 "$tmp/micro.err" >&2; exit 1; }
  # test decode/set_3b ... bench:        2611 ns/iter (+/- 123)
  micro_table=$(awk '
    $1 == "test" && $4 == "bench:" {
      name = $2; ns = $5; gsub(/,/, "", ns)
      n = name; sub(/.*\//, "", n)
      per = (name ~ /^(keyspace_apply|storage_ready)\//) ? n + 0 : 16
      what = (name ~ /^(decode|decode_and_parse|encode)\//) ? "16 pipelined requests or replies" : "a batch of " per " SET entries"
      printf "| `%s` | %s | %.2f µs | %.3f µs | %.0f |\n", name, what, ns / 1000, ns / 1000 / per, per * 1e9 / ns
    }' "$tmp/micro.txt")
fi

# --- the report ----------------------------------------------------------------------------
report=$tmp/report.md
{
  echo "# raft-kv benchmarks"
  echo
  echo "Generated by \`make bench\` ([bench/run.sh](../bench/run.sh)) on $started_at."
  echo
  echo "- Machine: $machine."
  echo "- Everything shares it: six raft-kv nodes (two clusters), three redis-servers and"
  echo "  redis-benchmark; only one system is under load at a time. Load"
  echo "  average at start: $load_start; at end: $load_end. Other engineers' builds and tests may"
  echo "  have been running too, so the figures are noisy: compare systems within one run."
  echo "- Versions: $(redis-server --version | cut -d' ' -f1-3), $(rustc --version 2>/dev/null || echo rustc), raft-kv $(git describe --always --dirty 2>/dev/null || echo '?')."
  echo "- raft-kv: 3 nodes, release build, fsync per Ready and linearizable reads on, as always (ReadIndex, and the"
  echo "  leader's read lease, on by default: see README, \"Reads\")."
  echo "  The rows marked \`--fsync everysec\` are a second cluster in the explicit faster mode, which"
  echo "  syncs log writes about once a second (a power loss can lose acknowledged writes): compare"
  echo "  them with redis-server's \`appendfsync everysec\`. The targets below use the default cluster."
  echo "- Each figure is the median of $REPS runs of"
  echo "  \`redis-benchmark -h 127.0.0.1 -p PORT -t set,get -n $N -c $CLIENTS [-P 16 | -d 1024] --csv\`;"
  echo "  the systems take turns within each repetition. Latencies are redis-benchmark's, in ms."
  [ "$errors" -eq 0 ] || echo "- redis-benchmark reported $errors error replies (\`Error from server\`) during the runs."
  echo "- Time with the cluster up: $cluster_minutes min; leader elections in that time: $elections"
  echo "  (the first one included; node 4's addition and node $follower's restart need none)."
  echo
  echo "## Throughput and latency"
  echo
  echo "| workload | system | SET req/s | SET p50 | SET p99 | GET req/s | GET p50 | GET p99 | SET ÷ durable | GET ÷ ceiling |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for workload in "${workloads[@]}"; do
    durable_set=$(median "$workload" durable SET 5)
    ceiling_get=$(median "$workload" ceiling GET 5)
    for system in "${systems[@]}"; do
      set_rps=$(median "$workload" "$system" SET 5)
      get_rps=$(median "$workload" "$system" GET 5)
      printf '| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "${workload_label[$workload]}" "${system_label[$system]}" \
        "$(fmt_rps "$set_rps")" "$(fmt_ms "$(median "$workload" "$system" SET 6)")" \
        "$(fmt_ms "$(median "$workload" "$system" SET 7)")" \
        "$(fmt_rps "$get_rps")" "$(fmt_ms "$(median "$workload" "$system" GET 6)")" \
        "$(fmt_ms "$(median "$workload" "$system" GET 7)")" \
        "$(ratio "$set_rps" "$durable_set")" "$(ratio "$get_rps" "$ceiling_get")"
    done
  done
  echo
  echo "With \`--fsync everysec\`, raft-kv ÷ redis-server \`appendfsync everysec\`, SET:"
  printf '%s' "$(for workload in "${workloads[@]}"; do
    printf ' `%s` %s×;' "${workload_label[$workload]}" \
      "$(ratio "$(median "$workload" fast SET 5)" "$(median "$workload" redis_es SET 5)")"
  done | sed 's/^ //; s/;$/./')"
  echo
  echo
  echo "## Targets (issue 5)"
  echo
  echo "| target | raft-kv leader | raft-kv follower | leader | follower |"
  echo "|---|---:|---:|---|---|"
  target_row() { # label workload test reference threshold
    local l f
    l=$(ratio "$(median "$2" leader "$3" 5)" "$(median "$2" "$4" "$3" 5)")
    f=$(ratio "$(median "$2" follower "$3" 5)" "$(median "$2" "$4" "$3" 5)")
    printf '| %s | %s× | %s× | %s | %s |\n' "$1" "$l" "$f" "$(verdict_ge "$l" "$5")" "$(verdict_ge "$f" "$5")"
  }
  target_row "SET ≥ 1.0× redis appendfsync always (\`-c $CLIENTS\`)" c50 SET durable 1.0
  target_row "GET ≥ 0.8× redis without persistence (\`-c $CLIENTS\`)" c50 GET ceiling 0.8
  target_row "SET ≥ 0.5× redis appendfsync always (\`-P 16\`)" P16 SET durable 0.5
  target_row "GET ≥ 0.5× redis without persistence (\`-P 16\`)" P16 GET ceiling 0.5
  for test in SET GET; do
    l=$(median c50 leader "$test" 7)
    f=$(median c50 follower "$test" 7)
    printf '| %s p99 ≤ 3 ms (`-c %s`, no pipelining) | %s ms | %s ms | %s | %s |\n' "$test" "$CLIENTS" \
      "$(fmt_ms "$l")" "$(fmt_ms "$f")" "$(verdict_le "$l" 3)" "$(verdict_le "$f" 3)"
  done
  restart_verdict=$(awk -v s="$restart_seconds" 'BEGIN { print (s + 0 > 0 && s + 0 <= 5 ? "**met**" : "missed") }')
  catchup_verdict=$(awk -v s="$catchup_seconds" 'BEGIN { print (s + 0 > 0 && s + 0 <= 10 ? "**met**" : "missed") }')
  printf '| restart of a node holding %s keys ≤ 5 s | | %s s | | %s |\n' "$KEYS" "$restart_seconds" "$restart_verdict"
  printf '| new node caught up by snapshot of %s keys ≤ 10 s | | %s s (node 4) | | %s |\n' "$KEYS" "$catchup_seconds" "$catchup_verdict"
  echo
  echo "## CPU per unpipelined SET"
  echo
  echo "\`redis-benchmark -t set -n $N -c $CLIENTS\` once more, alone, against the durable redis-server and the"
  echo "raft-kv leader, $REPS times each, medians: the servers' CPU time (user and system, every"
  echo "thread, from \`/proc\`; raft-kv's is all three nodes'), redis-benchmark's, and the machine's idle time."
  echo
  echo "| system | SET req/s | server CPU per SET | redis-benchmark CPU per SET | machine idle |"
  echo "|---|---:|---:|---:|---:|"
  fmt_us() { awk -v x="$1" 'BEGIN { printf "%.1f µs", x }'; }
  printf '| redis-server, appendfsync always | %s | %s | %s | %.0f %% |\n' "$(fmt_rps "$(cpu_median durable 3)")" \
    "$(fmt_us "$(cpu_median durable 4)")" "$(fmt_us "$(cpu_median durable 5)")" "$(cpu_median durable 6)"
  printf '| raft-kv, 3 nodes (leader %s, followers %s and %s) | %s | %s | %s | %.0f %% |\n' \
    "$(fmt_us "$(cpu_median leader 7)")" "$(fmt_us "$(cpu_median leader 8)")" "$(fmt_us "$(cpu_median leader 9)")" \
    "$(fmt_rps "$(cpu_median leader 3)")" "$(fmt_us "$(cpu_median leader 4)")" \
    "$(fmt_us "$(cpu_median leader 5)")" "$(cpu_median leader 6)"
  budget=$(awk -v cores="$(nproc)" -v rps="$(cpu_median durable 3)" -v rb="$(cpu_median leader 5)" \
    'BEGIN { printf "%.1f", cores * 1e6 / rps - rb }')
  echo
  echo "At the durable redis-server's rate, $(nproc) cores give $(awk -v c="$(nproc)" -v r="$(cpu_median durable 3)" \
    'BEGIN { printf "%.1f", c * 1e6 / r }') µs of CPU per SET to everything on the machine, and"
  echo "redis-benchmark takes its share of that; SET at 1.0× would need the three nodes"
  echo "together to spend at most **$budget µs** per SET (if nothing else ran and no core were ever"
  echo "idle), against the $(fmt_us "$(cpu_median leader 4)") they spend here and the"
  echo "$(fmt_us "$(cpu_median durable 4)") one durable redis-server spends."
  echo
  echo "## Memory, restart and catch-up"
  echo
  echo "| measurement | value |"
  echo "|---|---|"
  echo "| peak RSS (VmHWM) after the throughput runs and the load, nodes 1/2/3 | ${hwm[1]} / ${hwm[2]} / ${hwm[3]} MiB |"
  echo "| peak RSS of the restarted node $follower / of node 4, at the end | $hwm_restarted / ${hwm[4]} MiB |"
  echo "| loading $KEYS keys (\`MSET\` of 100 pairs, \`redis-cli --pipe\` in chunks of 20 000 keys, through the leader) | $load_seconds s; leader DBSIZE $dbsize; chunks sent again after an error: $load_retries |"
  echo "| \`kill -9\` of follower node $follower, restart, until it answers a linearizable \`GET\` | $restart_seconds s (its data dir was open after $open_seconds s) |"
  echo "| \`RAFT.NODE ADD 4\` until node 4 is a voter and its DBSIZE equals the leader's ($leader_keys) | $catchup_seconds s ($snapshot_note) |"
  if [ -n "$micro_table" ]; then
    echo
    echo "## Micro-benchmarks"
    echo
    echo "\`cargo bench -p actors --bench codec --bench apply\` (criterion, 2 s per benchmark here;"
    echo "\`make microbench\` runs them at full length). Sources: [actors/benches](../actors/benches)."
    echo
    echo "| benchmark | one iteration | time per iteration | per element | elements/s |"
    echo "|---|---|---:|---:|---:|"
    echo "$micro_table"
  fi
} >"$report"

cat "$report"
mkdir -p "$(dirname "$OUT")"
hand=""
if [ -f "$OUT" ] && grep -qxF "$HAND_WRITTEN" "$OUT"; then
  hand=$(awk -v marker="$HAND_WRITTEN" 'seen { print } $0 == marker { seen = 1 }' "$OUT")
fi
{
  cat "$report"
  echo
  echo "$HAND_WRITTEN"
  if [ -n "$hand" ]; then
    printf '%s\n' "$hand"
  else
    echo
    echo "## Where the time goes"
    echo
    echo "_To be written from a profile._"
  fi
} >"$OUT"
log "report written to $OUT"
