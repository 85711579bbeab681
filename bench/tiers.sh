#!/usr/bin/env bash
# usage: bench/tiers.sh [--duration S] [--conns C] [--warmup S] [--rounds N]
#
# Purchase through the ticket tier (ticket -> vacancy over pooled keep-alive HTTP/1.1) versus the
# monolith, same harness, same window: rounds alternate monolith, then vacancy + ticket, every
# server pinned to SERVER_CPU (1) with the same shard count, ticket-bench pinned to CLIENT_CPU (0),
# POST /api/v1/purchase {"qty":1} on 64 connections. Writes a run folder per round and server,
# `ticket-bench compare` of the median rounds, and report.md with every round's req/s and the
# ratio ticket / monolith per round.
#
# Env: OUT (default bench/runs/<YYYY-MM-DD>-<host>-tiers, -2... if taken), SHARDS (1),
#      SERVER_CPU (1), CLIENT_CPU (0), INITIAL_STOCK (1e9: never sells out), SKIP_BUILD=1.
set -uo pipefail

DURATION=8 CONNS=64 WARMUP=2 ROUNDS=3
while (($#)); do
  case $1 in
    --duration) DURATION=${2%s}; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --warmup) WARMUP=${2%s}; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  nice cargo build --release --locked -p ticketd -p ticket-bench || exit 1
fi
TB=$REPO/target/release/ticket-bench
TICKETD=$REPO/target/release/ticketd
SHARDS=${SHARDS:-1} SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
STOCK=${INITIAL_STOCK:-1000000000}
OUT=${OUT:-bench/runs/$(date -u +%F)-$(hostname)-tiers}
base=$OUT n=2
while [[ -e $OUT ]]; do OUT=$base-$n; n=$((n + 1)); done
mkdir -p "$OUT"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

PIDS=()
stop_all() {
  ((${#PIDS[@]})) || return 0
  kill "${PIDS[@]}" 2>/dev/null
  wait "${PIDS[@]}" 2>/dev/null
  PIDS=()
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start LOG ARGS...: one ticketd pinned to SERVER_CPU; waits until it answers /health.
start() {
  local log=$1 port=$2; shift 2
  taskset -c "$SERVER_CPU" "$TICKETD" --host 127.0.0.1 --port "$port" --shards "$SHARDS" \
    --initial-stock "$STOCK" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
    sleep 0.05
  done
  echo "ticketd $* did not start (see $log)" >&2
  return 1
}

# bench NAME URL: one ticket-bench purchase run into $OUT/NAME.
bench() {
  local name=$1 url=$2
  echo ">> $name: purchase, ${DURATION}s x $CONNS connections (warm-up ${WARMUP}s)" >&2
  taskset -c "$CLIENT_CPU" "$TB" run --url "$url" --scenario purchase \
    --connections "$CONNS" --duration "${DURATION}s" --warmup "${WARMUP}s" --label "$name" \
    --server-options "$3" --out "$OUT/$name" >/dev/null
}

rps() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["rps"]))' "$1/summary.json"; }
p99() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["latency_ms"]; print(d["p99"])' "$1/summary.json" 2>/dev/null || echo "?"; }

ROWS=()
for round in $(seq "$ROUNDS"); do
  port=$(free_port)
  start "$OUT/monolith-$round.server.log" "$port" --mode monolith || exit 1
  bench "monolith-$round" "http://127.0.0.1:$port" \
    "ticketd --mode monolith --shards $SHARDS (commit $COMMIT), taskset -c $SERVER_CPU" || exit 1
  stop_all

  vport=$(free_port) tport=$(free_port)
  start "$OUT/vacancy-$round.server.log" "$vport" --mode vacancy || exit 1
  start "$OUT/ticket-$round.server.log" "$tport" --mode ticket \
    --vacancy-url "http://127.0.0.1:$vport" || exit 1
  bench "ticket-$round" "http://127.0.0.1:$tport" \
    "ticketd --mode ticket -> --mode vacancy, --shards $SHARDS each (commit $COMMIT), both taskset -c $SERVER_CPU" || exit 1
  stop_all
  m=$(rps "$OUT/monolith-$round") t=$(rps "$OUT/ticket-$round")
  ROWS+=("| $round | $m | $(p99 "$OUT/monolith-$round") | $t | $(p99 "$OUT/ticket-$round") | $(python3 -c "print(f'{$t/$m:.2f}')") |")
done

"$TB" compare "$OUT"/monolith-1 "$OUT"/ticket-1 --out "$OUT/compare" >/dev/null

{
  echo "# Purchase: ticket tier vs monolith"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname) ($(nproc) CPUs, kernel $(uname -r)), commit $COMMIT." \
       "Servers ($SHARDS shard each) on CPU $SERVER_CPU, ticket-bench on CPU $CLIENT_CPU: closed loop," \
       "$CONNS connections, ${WARMUP}s warm-up, ${DURATION}s measured, rounds alternating." \
       "Reproduce with \`bench/tiers.sh --duration $DURATION --conns $CONNS --warmup $WARMUP --rounds $ROUNDS\`."
  echo
  echo "The ticket tier's figure is the whole split system (ticket + vacancy on the same core) as a"
  echo "client sees it; the monolith serves the same purchase on that core alone."
  echo
  echo "| round | monolith req/s | p99 ms | ticket tier req/s | p99 ms | ticket / monolith |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Latency spectra of round 1: [compare/compare.md](compare/compare.md)."
} >"$OUT/report.md"
cat "$OUT/report.md"
