#!/usr/bin/env bash
# A/B two ticketd binaries on the fast path, in interleaved rounds in one window: for each round
# and each case, BEFORE then AFTER (AFTER first on odd rounds), each a fresh process with its own
# empty data directory, pinned to SERVER_CPU, ticket-bench pinned to CLIENT_CPU. Prints one row
# per run (req/s, p50, p99, p99.9, max) and the median ratio AFTER/BEFORE per case.
#
#   BEFORE=/path/to/old/ticketd AFTER=target/release/ticketd bench/ab.sh
#
# Cases: GET /api/v1/available and POST /api/v1/purchase {"qty":1} with stock 10^9 (every order
# is covered by the shard's slice), --durability none and sync, one shard, CONNS connections.
# ROUNDS (5), DURATION (4 s), WARMUP (1 s), CONNS (64), SERVER_CPU (1), CLIENT_CPU (0).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
: "${BEFORE:?set BEFORE to the old ticketd binary}"
AFTER=${AFTER:-target/release/ticketd}
TB=${TB:-target/release/ticket-bench}
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-4} WARMUP=${WARMUP:-1} CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
OUT=${OUT:-bench/runs/$(date -u +%F)-$(hostname)-ab}
mkdir -p "$OUT"
DATA=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DATA"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run BIN NAME SCENARIO DURABILITY: one server, one ticket-bench run into $OUT/NAME.
run() {
  local bin=$1 name=$2 scenario=$3 durability=$4 port dir
  port=$(free_port)
  dir=$DATA/$name
  mkdir -p "$dir"
  taskset -c "$SERVER_CPU" "$bin" --host 127.0.0.1 --port "$port" --shards 1 \
    --initial-stock 1000000000 --durability "$durability" --data-dir "$dir" \
    >"$OUT/$name.server.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.05
  done
  taskset -c "$CLIENT_CPU" "$TB" run --url "http://127.0.0.1:$port" --scenario "$scenario" \
    --connections "$CONNS" --duration "${DURATION}s" --warmup "${WARMUP}s" --label "$name" \
    --out "$OUT/$name" >/dev/null
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
  rm -rf "$dir"
}

{
  echo "# A/B: $BEFORE (before) vs $AFTER (after)"
  echo "rounds $ROUNDS, ${DURATION}s + ${WARMUP}s warm-up, $CONNS connections, server CPU $SERVER_CPU, client CPU $CLIENT_CPU, $(date -u +%FT%TZ)"
} >"$OUT/setup.txt"
for round in $(seq "$ROUNDS"); do
  for case in available:none purchase:none purchase:sync; do
    scenario=${case%%:*} durability=${case##*:}
    order="before after"
    ((round % 2)) || order="after before"
    for which in $order; do
      bin=$BEFORE
      [[ $which == after ]] && bin=$AFTER
      echo ">> round $round $scenario $durability $which" >&2
      run "$bin" "$scenario-$durability-$which-$round" "$scenario" "$durability"
    done
  done
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("| case | which | round | req/s | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
ratios = {}
for case in ["available-none", "purchase-none", "purchase-sync"]:
    rps = {"before": [], "after": []}
    for which in ["before", "after"]:
        for r in range(1, rounds + 1):
            d = json.load(open(f"{out}/{case}-{which}-{r}/summary.json"))
            l = d["latency_ms"]
            rps[which].append(d["rps"])
            print(f"| {case} | {which} | {r} | {d['rps']:,.0f} | {l['p50']} | {l['p99']} | {l['p99_9']} | {l['max']} |")
    ratios[case] = statistics.median(a / b for a, b in zip(rps["after"], rps["before"]))
print()
for case, ratio in ratios.items():
    print(f"- {case}: median after/before req/s {ratio:.3f}")
EOF
