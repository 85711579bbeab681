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
#      SERVER_CPU (1), CLIENT_CPU (0), INITIAL_STOCK (1e9: never sells out), SKIP_BUILD=1,
#      DURABILITY (sync: the monolith and the vacancy service journal every sale, as by
#      default; none: memory only, the forwarding cost alone). Data directories go under OUT.
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

KIND=tiers
DURABILITY=${DURABILITY:-sync}
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

ROWS=()
for round in $(seq "$ROUNDS"); do
  port=$(free_port)
  start "$OUT/monolith-$round.server.log" "$port" --mode monolith --durability "$DURABILITY" \
    --data-dir "$OUT/data-monolith-$round" || exit 1
  bench "monolith-$round" "http://127.0.0.1:$port" \
    "ticketd --mode monolith --durability $DURABILITY --shards $SHARDS (commit $COMMIT), taskset -c $SERVER_CPU" || exit 1
  stop_all

  vport=$(free_port) tport=$(free_port)
  start "$OUT/vacancy-$round.server.log" "$vport" --mode vacancy --durability "$DURABILITY" \
    --data-dir "$OUT/data-vacancy-$round" || exit 1
  start "$OUT/ticket-$round.server.log" "$tport" --mode ticket \
    --vacancy-url "http://127.0.0.1:$vport" || exit 1
  bench "ticket-$round" "http://127.0.0.1:$tport" \
    "ticketd --mode ticket -> --mode vacancy --durability $DURABILITY, --shards $SHARDS each (commit $COMMIT), both taskset -c $SERVER_CPU" || exit 1
  stop_all
  rm -rf "$OUT/data-monolith-$round" "$OUT/data-vacancy-$round"
  m=$(rps "$OUT/monolith-$round") t=$(rps "$OUT/ticket-$round")
  ROWS+=("| $round | $m | $(p99 "$OUT/monolith-$round") | $t | $(p99 "$OUT/ticket-$round") | $(python3 -c "print(f'{$t/$m:.2f}')") |")
done

"$TB" compare "$OUT"/monolith-1 "$OUT"/ticket-1 --out "$OUT/compare" >/dev/null

{
  echo "# Purchase: ticket tier vs monolith"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname) ($(nproc) CPUs, kernel $(uname -r)), commit $COMMIT." \
       "Servers ($SHARDS shard each, --durability $DURABILITY) on CPU $SERVER_CPU, ticket-bench on CPU $CLIENT_CPU: closed loop," \
       "$CONNS connections, ${WARMUP}s warm-up, ${DURATION}s measured, rounds alternating." \
       "Reproduce with \`DURABILITY=$DURABILITY bench/tiers.sh --duration $DURATION --conns $CONNS --warmup $WARMUP --rounds $ROUNDS\`."
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
