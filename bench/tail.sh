#!/usr/bin/env bash
# usage: bench/tail.sh [--rounds N] [--duration S] [--warmup S] [--conns "64 1024"]
#                      [--cases "get:none post:none post:sync"] [--client wrk|tb] [--attribute]
#
# Tail latency, ticketd against the axum peer (issue 14): for each case (GET /api/v1/available,
# POST /api/v1/purchase {"qty":1}, ticketd with --durability none or sync) and each connection
# count, ROUNDS interleaved rounds (5) in one window, each round running ticketd then the peer
# (the peer first on even rounds), each a fresh process pinned to SERVER_CPUS with the stock at
# 10^9 (no order is refused within a run), the client pinned to CLIENT_CPUS. A closed loop on
# fixed keep-alive connections: `wrk -t1` (default) or `ticket-bench run` (--client tb), with a
# warm-up that is not measured. The peer has no journal: in a sync case it is the same memory-only
# peer, the bar ticketd's durable sales are held to.
#
# Prints, and writes to OUT/report.md, one markdown table per case (req/s, p50, p99, p99.9, max
# per round and server; for ticketd also its transport counters from `GET /` after the run:
# ENOBUFS, late wakes, slow yields) and a verdict per case against issue 14's bar: in how many
# rounds ticketd's p99 <= the peer's, its max <= 5 ms, its req/s >= the peer's.
#
# --attribute (implies --client tb; needs perf and root or perf_event_paranoid <= -1): every
# measured run is traced (`perf record -a`: a cpu-clock sample every 100 us on every CPU, naming
# the thread it caught, on CLOCK_MONOTONIC) while ticket-bench logs its responses of SLOW (2ms) or more
# (`--slow-log`); bench/stalls.py then blames each stall window on the server's CPU not running
# (the host), another task on the server's or client's CPU (kernel threads), or nothing it can
# see: "client" (the server idled while the client ran), "few" (the server ran while under a
# quarter of the connections waited: requests waiting for their own reason, such as a group
# commit), "server" (the server's own threads ran: its own stalls), or "unexplained". Each run
# folder gets stalls.md and the tables a "stalls" column: windows, then host / taken / client /
# few / server / unexplained, then the longest window (ms:cause). KEEP_TRACE=1 keeps perf.data
# and perf.txt (12 MB a run).
#
# Runs on any Linux machine given the binaries; it builds nothing:
#   TICKETD (default $CARGO_TARGET_DIR or target, /release/ticketd), AXUM_PEER (default
#   ../shared/anchors build: ${TMPDIR:-/tmp}/ticketd-axum-peer/release/axum-peer), TB (ticket-bench,
#   beside TICKETD), WRK (wrk on PATH).
# Env: SERVER_CPUS (1; a taskset list, e.g. 2-9), CLIENT_CPUS (0; e.g. 10-13), SHARDS (1; ticketd
#      --shards), PEER_THREADS (the peer's WORKER_THREADS; default: the CPUs in SERVER_CPUS),
#      THREADS (client threads, 1), OUT (bench/runs/<YYYY-MM-DD>-<host>-tail, -2... if taken),
#      TICKETD_TRANSPORT (passed to ticketd: uring, the default, or glommio).
set -uo pipefail

ROUNDS=5 DURATION=4 WARMUP=1 CONNS_LIST="64 1024" CASES="get:none post:none post:sync" CLIENT=wrk
ATTRIBUTE=0 SLOW=${SLOW:-2ms}
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=${2%s}; shift 2 ;;
    --warmup) WARMUP=${2%s}; shift 2 ;;
    --conns) CONNS_LIST=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --client) CLIENT=$2; shift 2 ;;
    --attribute) ATTRIBUTE=1 CLIENT=tb; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case $CLIENT in wrk|tb) ;; *) echo "--client must be wrk or tb" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
TICKETD=${TICKETD:-$TARGET/release/ticketd}
TB=${TB:-$(dirname "$TICKETD")/ticket-bench}
AXUM_PEER=${AXUM_PEER:-${TMPDIR:-/tmp}/ticketd-axum-peer/release/axum-peer}
WRK=${WRK:-wrk}
SERVER_CPUS=${SERVER_CPUS:-1} CLIENT_CPUS=${CLIENT_CPUS:-0} SHARDS=${SHARDS:-1} THREADS=${THREADS:-1}
# The peer gets as many worker threads as ticketd has CPUs (taskset list to a count).
cpu_count() {
  python3 - "$1" <<'EOF'
import sys
n = 0
for part in sys.argv[1].split(","):
    lo, _, hi = part.partition("-")
    n += int(hi or lo) - int(lo) + 1
print(n)
EOF
}
PEER_THREADS=${PEER_THREADS:-$(cpu_count "$SERVER_CPUS")}
STOCK=1000000000

for bin in "$TICKETD" "$AXUM_PEER"; do
  [[ -x $bin ]] || { echo "no binary at $bin (set TICKETD / AXUM_PEER)" >&2; exit 2; }
done
if [[ $CLIENT == wrk ]]; then
  command -v "$WRK" >/dev/null || { echo "no wrk (set WRK, or --client tb)" >&2; exit 2; }
else
  [[ -x $TB ]] || { echo "no ticket-bench at $TB (set TB)" >&2; exit 2; }
fi
if ((ATTRIBUTE)); then
  command -v perf >/dev/null || { echo "--attribute needs perf" >&2; exit 2; }
fi

OUT=${OUT:-bench/runs/$(date -u +%F)-$(hostname)-tail}
base=$OUT n=2
while [[ -e $OUT ]]; do OUT=$base-$n; n=$((n + 1)); done
mkdir -p "$OUT"
DATA=$(mktemp -d)
PID=
stop() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  PID=
}
trap 'stop; rm -rf "$DATA"' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve SERVER DURABILITY PORT LOG: starts ticketd or the peer, pinned; waits for /api/v1/health.
serve() {
  local server=$1 durability=$2 port=$3 log=$4
  if [[ $server == ticketd ]]; then
    mkdir -p "$DATA/$port"
    taskset -c "$SERVER_CPUS" "$TICKETD" --host 127.0.0.1 --port "$port" --shards "$SHARDS" \
      --initial-stock "$STOCK" --durability "$durability" --data-dir "$DATA/$port" >"$log" 2>&1 &
  else
    PORT=$port HOST=127.0.0.1 INITIAL_STOCK=$STOCK WORKER_THREADS=$PEER_THREADS \
      taskset -c "$SERVER_CPUS" "$AXUM_PEER" >"$log" 2>&1 &
  fi
  PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && return 0
    sleep 0.05
  done
  echo "$server did not start (see $log)" >&2
  return 1
}

# load METHOD PATH CONNS SECONDS DIR: one closed-loop run; prints
# "requests rps p50 p99 p99.9 max errors" (ms) on stdout, the client's own output in DIR.
load() {
  local method=$1 path=$2 conns=$3 seconds=$4 dir=$5 url=http://127.0.0.1:$PORT
  mkdir -p "$dir"
  if [[ $CLIENT == wrk ]]; then
    METHOD=$method taskset -c "$CLIENT_CPUS" "$WRK" -t"$THREADS" -c"$conns" -d"${seconds}s" \
      --timeout 10s -s bench/wrk/tail.lua "$url$path" >"$dir/wrk.txt" 2>&1
    awk '/^TAIL /{print $2, $3, $4, $5, $6, $7, $8}' "$dir/wrk.txt"
  else
    local scenario=available
    [[ $method == POST ]] && scenario=purchase
    local slow=()
    ((ATTRIBUTE)) && slow=(--slow-log "$SLOW")
    taskset -c "$CLIENT_CPUS" "$TB" run --url "$url" --scenario "$scenario" \
      --connections "$conns" --threads "$THREADS" --duration "${seconds}s" --warmup 0s \
      "${slow[@]}" --out "$dir" >"$dir/ticket-bench.txt" 2>&1
    python3 - "$dir/summary.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
errors = sum(v for v in d["errors"].values() if isinstance(v, (int, float)))
print(d["requests"], round(d["rps"]), l["p50"], l["p99"], l["p99_9"], l["max"], errors)
EOF
  fi
}

# counters PORT: ticketd's transport counters summed over its shards (/metrics, shard="all"):
# ENOBUFS, late wakes, slow yields.
counters() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk '
    /^ticketd_uring_recv_enobufs_total\{shard="all"\}/ {e=$2}
    /^ticketd_uring_late_wakes_total\{shard="all"\}/ {l=$2}
    /^ticketd_uring_slow_yields_total\{shard="all"\}/ {s=$2}
    END {print (e==""?"-":e), (l==""?"-":l), (s==""?"-":s)}'
}

# traced SECONDS DIR COMMAND...: runs COMMAND under `perf record -a` (see --attribute), the trace
# in DIR/perf.data; without --attribute, just COMMAND.
traced() {
  local seconds=$1 dir=$2
  shift 2
  if ((ATTRIBUTE == 0)); then
    "$@"
    return
  fi
  mkdir -p "$dir"
  # Every CPU until interrupted: the load's whole length, its last responses' wait included.
  perf record -a --clockid monotonic -e cpu-clock -F 10000 \
    -o "$dir/perf.data" >/dev/null 2>"$dir/perf.log" &
  local perf=$!
  sleep 0.5 # perf is recording before the load starts
  "$@"
  kill -INT "$perf" 2>/dev/null
  wait "$perf" || true
}

# attribute DIR SERVER_PID CONNS LABEL: bench/stalls.py on DIR's trace and slow.csv; prints
# "windows:host/taken/client/few/server/unexplained;longest-ms:cause", or "no-trace" (perf
# recorded nothing: see DIR/perf.log).
attribute() {
  local dir=$1 pid=$2 conns=$3 label=$4
  if [[ ! -s $dir/perf.data ]]; then
    echo "no trace for $label: see $dir/perf.log" >&2
    echo no-trace
    return
  fi
  perf script -i "$dir/perf.data" -F comm,pid,tid,cpu,time,event,ip,sym --ns \
    >"$dir/perf.txt" 2>/dev/null
  python3 bench/stalls.py --slow "$dir/slow.csv" --perf "$dir/perf.txt" \
    --server-cpus "$SERVER_CPUS" --client-cpus "$CLIENT_CPUS" --server-pid "$pid" \
    --connections "$conns" --label "$label" >"$dir/stalls.md"
  [[ ${KEEP_TRACE:-0} == 1 ]] || rm -f "$dir/perf.data" "$dir/perf.txt"
  awk '/^STALLS /{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "%s:%d/%d/%d/%d/%d/%d;%s:%s\n", v["windows"], v["host_server"] + v["host_client"],
      v["taken_server"] + v["taken_client"], v["client_busy"], v["server_few"],
      v["server_busy"], v["unexplained"], v["longest_ms"], v["longest"] }' "$dir/stalls.md"
}

{
  echo "# bench/tail.sh: ticketd against the axum peer"
  echo "ticketd: $TICKETD (transport ${TICKETD_TRANSPORT:-uring}, --shards $SHARDS)"
  echo "peer: $AXUM_PEER (WORKER_THREADS=$PEER_THREADS)"
  echo "client: $CLIENT, $THREADS thread(s); server CPUs $SERVER_CPUS, client CPUs $CLIENT_CPUS"
  echo "rounds $ROUNDS, ${DURATION}s measured after ${WARMUP}s warm-up, stock $STOCK"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ)"
} >"$OUT/setup.txt"

ROWS=$OUT/rows.txt
: >"$ROWS"
for round in $(seq "$ROUNDS"); do
  for case in $CASES; do
    kind=${case%%:*} durability=${case##*:}
    method=GET path=/api/v1/available
    [[ $kind == post ]] && method=POST path=/api/v1/purchase
    for conns in $CONNS_LIST; do
      order="ticketd axum"
      ((round % 2)) || order="axum ticketd"
      for server in $order; do
        name=$kind-$durability-$conns-$server-$round
        echo ">> round $round: $method $path, $conns connections, $server ($durability)" >&2
        PORT=$(free_port)
        serve "$server" "$durability" "$PORT" "$OUT/$name.server.log" || exit 1
        ((WARMUP > 0)) && load "$method" "$path" "$conns" "$WARMUP" "$OUT/$name.warmup" >/dev/null
        result=$(traced "$DURATION" "$OUT/$name" load "$method" "$path" "$conns" "$DURATION" "$OUT/$name")
        extra="- - -"
        [[ $server == ticketd ]] && extra=$(counters "$PORT")
        stalls=-
        if ((ATTRIBUTE)); then
          stalls=$(attribute "$OUT/$name" "$PID" "$conns" "$name")
          stalls=${stalls:--} # stalls.py failed: see its stalls.md
        fi
        stop
        rm -rf "${DATA:?}/$PORT"
        [[ -n $result ]] || { echo "no result for $name (see $OUT/$name)" >&2; exit 1; }
        echo "$kind-$durability-$conns $server $round $result $extra $stalls" >>"$ROWS"
      done
    done
  done
done

python3 - "$ROWS" "$ROUNDS" >"$OUT/report.md" <<'EOF'
import sys
from collections import defaultdict
rows, rounds = sys.argv[1], int(sys.argv[2])
runs = defaultdict(dict)
for line in open(rows):
    case, server, rnd, reqs, rps, p50, p99, p999, mx, errors, enobufs, late, slow, stalls = line.split()
    runs[case][(server, int(rnd))] = dict(rps=float(rps), p50=float(p50), p99=float(p99),
        p999=float(p999), max=float(mx), errors=int(float(errors)), enobufs=enobufs, late=late,
        slow=slow, stalls=stalls)
for case, r in runs.items():
    kind, durability, conns = case.split("-")
    title = {"get": "GET /api/v1/available", "post": "POST /api/v1/purchase {\"qty\":1}"}[kind]
    print(f"## {title}, {conns} connections, ticketd --durability {durability}\n")
    print("| round | server | req/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | ENOBUFS | late wakes | slow yields | stalls: windows, host/taken/client/few/server/unexplained; longest ms:cause |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    p99_ok = max_ok = rps_ok = both = 0
    for n in range(1, rounds + 1):
        for server in ("ticketd", "axum"):
            x = r.get((server, n))
            if x is None:
                continue
            print(f"| {n} | {server} | {x['rps']:,.0f} | {x['p50']:.2f} | {x['p99']:.2f} | "
                  f"{x['p999']:.2f} | {x['max']:.2f} | {x['errors']} | {x['enobufs']} | "
                  f"{x['late']} | {x['slow']} | {x['stalls']} |")
        t, a = r.get(("ticketd", n)), r.get(("axum", n))
        if t and a:
            both += 1
            p99_ok += t["p99"] <= a["p99"]
            max_ok += t["max"] <= 5.0
            rps_ok += t["rps"] >= a["rps"]
    print(f"\nticketd p99 <= the peer's in {p99_ok} of {both} rounds; max <= 5 ms in {max_ok} of "
          f"{both}; req/s >= the peer's in {rps_ok} of {both}.\n")
EOF
cat "$OUT/report.md"
echo "run folder: $OUT" >&2
