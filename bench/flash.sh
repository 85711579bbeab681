#!/usr/bin/env bash
# usage: bench/flash.sh [--duration S] [--conns C] [--stock N] [--rounds N] [--warmup S]
#                       [--reconnect-after N] [--rate R] [--qty-mix LIST] [--threads T]
#
# A flash sale (`ticket-bench run --scenario flash`) side by side against ticketd --shards 1,
# ticketd --shards 2 and the axum peer, in interleaved rounds (each round runs the three in
# turn, the order rotated every round). Every server is pinned to SERVER_CPU (1), with the stock
# set to --stock (50,000) and, for ticketd, its own empty data directory (removed after its run);
# ticket-bench is pinned to CLIENT_CPU (0): closed loop (open loop at R req/s with --rate) on C
# connections (256), qty 1 (or --qty-mix), each connection kept open (or reopened every N
# requests with --reconnect-after) for S seconds (6), most of them after the sell-out. Writes a
# run folder per server and round, `ticket-bench compare` of round 1 (compare.md, compare.svg),
# and report.md: per run, the time to sell out, req/s and p50/p99/p99.9/max before and after
# the sell-out, successes against the stock, late successes, non-200 answers and timeouts.
# --threads T gives ticket-bench T event-loop threads (1): on a machine with CPUs to spare, set
# CLIENT_CPU to a list (2-4) and T to its length, so the client is not the bottleneck (one
# ticket-bench thread saturates near 200,000 req/s, and its own queueing then shows as latency).
#
# Env: DURABILITY (none, the default: like the peer, memory only; or sync: ticketd journals
#      every sale before its answer), OUT (default bench/runs/<YYYY-MM-DD>-<host>-flash, -2...
#      if taken), SERVER_CPU (1), CLIENT_CPU (0), SKIP_BUILD=1, ANCHORS (../shared/anchors),
#      AXUM_PEER (the axum peer's binary; default: built from ANCHORS/axum-peer with
#      `cargo build --release` into AXUM_TARGET, default ${TMPDIR:-/tmp}/ticketd-axum-peer, outside
#      the repository).
set -uo pipefail

DURATION=6 CONNS=256 WARMUP=0 ROUNDS=1 FLASH_STOCK=50000 EXTRA=()
while (($#)); do
  case $1 in
    --duration) DURATION=${2%s}; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --stock) FLASH_STOCK=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --warmup) WARMUP=${2%s}; shift 2 ;;
    --reconnect-after|--rate|--qty-mix|--threads) EXTRA+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

KIND=flash
DURABILITY=${DURABILITY:-none}
case $DURABILITY in sync|none) ;; *) echo "DURABILITY must be sync or none" >&2; exit 2 ;; esac
INITIAL_STOCK=$FLASH_STOCK
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

ANCHORS_DIR=${ANCHORS:-$REPO/../shared/anchors}
AXUM_PEER=${AXUM_PEER:-${AXUM_TARGET:-${TMPDIR:-/tmp}/ticketd-axum-peer}/release/axum-peer}
if [[ ! -x $AXUM_PEER ]]; then
  [[ -f $ANCHORS_DIR/axum-peer/Cargo.toml ]] || { echo "no axum peer at $ANCHORS_DIR (set ANCHORS)" >&2; exit 2; }
  nice cargo build --release --locked --manifest-path "$ANCHORS_DIR/axum-peer/Cargo.toml" \
    --target-dir "$(dirname "$(dirname "$AXUM_PEER")")" || exit 1
fi

NAMES=(ticketd-1 ticketd-2 axum)
declare -A SETUP=(
  [ticketd-1]="ticketd --shards 1 --durability $DURABILITY (commit $COMMIT), taskset -c $SERVER_CPU, stock $STOCK"
  [ticketd-2]="ticketd --shards 2 --durability $DURABILITY (commit $COMMIT), both shards taskset -c $SERVER_CPU, stock $STOCK"
  [axum]="anchors axum-peer (axum, tokio, 1 worker thread, an atomic counter), taskset -c $SERVER_CPU, INITIAL_STOCK=$STOCK"
)

# serve NAME ROUND PORT: starts the server NAME for ROUND on PORT.
serve() {
  local name=$1 round=$2 port=$3 log=$OUT/$1-$2.server.log
  case $name in
    ticketd-*)
      SHARDS=${name#ticketd-} start "$log" "$port" --durability "$DURABILITY" \
        --data-dir "$OUT/data-$name-$round" ;;
    axum) start_cmd "$log" "$port" env PORT="$port" INITIAL_STOCK="$STOCK" "$AXUM_PEER" ;;
  esac
}

FAILED=() LOADS=()
for round in $(seq "$ROUNDS"); do
  for k in "${!NAMES[@]}"; do
    name=${NAMES[(k + round - 1) % ${#NAMES[@]}]}
    port=$(free_port)
    serve "$name" "$round" "$port" || { FAILED+=("$name-$round (start)"); stop_all; continue; }
    LOADS+=("$name-$round $(cut -d' ' -f1 /proc/loadavg)")
    echo ">> $name, round $round: flash sale of $STOCK, ${DURATION}s x $CONNS connections ${EXTRA[*]}" >&2
    taskset -c "$CLIENT_CPU" "$TB" run --url "http://127.0.0.1:$port" --scenario flash \
      --connections "$CONNS" --duration "${DURATION}s" --warmup "${WARMUP}s" "${EXTRA[@]}" \
      --label "$name-$round" --server-options "${SETUP[$name]}" --out "$OUT/$name-$round" \
      >/dev/null || FAILED+=("$name-$round (see its summary.md)")
    stop_all
    rm -rf "$OUT/data-$name-$round"
  done
done

FIRST=()
for name in "${NAMES[@]}"; do [[ -f $OUT/$name-1/summary.json ]] && FIRST+=("$OUT/$name-1"); done
((${#FIRST[@]})) && "$TB" compare "${FIRST[@]}" --out "$OUT/compare" >/dev/null

# The table: one row per run, from its summary.json.
TABLE=$(python3 - "$OUT" "$ROUNDS" "${NAMES[@]}" <<'PY'
import json, os, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v): return f"{v:.2f}"
def lat(p): l = p["latency_ms"]; return f"{ms(l['p50'])} / {ms(l['p99'])} / {ms(l['p99_9'])} / {ms(l['max'])}"
print("| server | round | sold out after s | before: req/s | p50 / p99 / p99.9 / max ms | after: req/s | p50 / p99 / p99.9 / max ms | successes / stock | late | non-200 | timeouts |")
print("|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|")
for r in range(1, rounds + 1):
    for n in names:
        path = os.path.join(out, f"{n}-{r}", "summary.json")
        if not os.path.exists(path):
            print(f"| {n} | {r} | failed | | | | | | | | |"); continue
        f = json.load(open(path))["flash"]
        b, a = f["before"], f["after"]
        sold = "?" if f["sold_out_after_s"] is None else f"{f['sold_out_after_s']:.3f}"
        after = (f"{a['rps']:,.0f}", lat(a)) if a else ("not sold out", "")
        eq = {True: "", False: " **≠**", None: ""}[f["successes_equal_stock"]]
        stock = "?" if f["stock"] is None else f"{f['stock']:,}"
        print(f"| {n} | {r} | {sold} | {b['rps']:,.0f} | {lat(b)} | {after[0]} | {after[1]} | "
              f"{f['tickets']:,} / {stock}{eq} | "
              f"{f['late_successes']} | {f['non_200']} | {f['timeouts']} |")
PY
)

{
  echo "# Flash sale: ticketd --shards 1, --shards 2 and the axum peer"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname) ($(nproc) CPUs, kernel $(uname -r)), commit $COMMIT." \
       "Servers on CPU $SERVER_CPU (ticketd --durability $DURABILITY, each with a fresh data directory)," \
       "ticket-bench on CPU $CLIENT_CPU: \`--scenario flash\`, stock $STOCK, $CONNS connections," \
       "${WARMUP}s warm-up, ${DURATION}s measured${EXTRA[*]:+, ${EXTRA[*]}}; $ROUNDS round(s), servers interleaved." \
       "Reproduce with \`DURABILITY=$DURABILITY bench/flash.sh --duration $DURATION --conns $CONNS --stock $STOCK --rounds $ROUNDS${EXTRA[*]:+ ${EXTRA[*]}}\`."
  echo
  echo "The sell-out is the arrival of the first \"sold out\" answer; before and after split the"
  echo "answers by arrival. Late successes (must be 0): successful orders sent after a \"sold out\""
  echo "answer to the same or a smaller qty had arrived. Latencies in ms."
  echo
  echo "$TABLE"
  echo
  echo "1-minute load average as each run started (the server and ticket-bench add about 2 once" \
       "running; more means other work shared the CPUs): $(IFS=';'; joined="${LOADS[*]}"; echo "${joined//;/, }")."
  echo
  ((${#FAILED[@]})) && echo "Failed checks or starts: ${FAILED[*]}" && echo
  echo "Whole-run latency spectra of round 1: [compare/compare.md](compare/compare.md)," \
       "[compare/compare.svg](compare/compare.svg); each run folder has flash-before.hgrm and" \
       "flash-after.hgrm for the HdrHistogram plotter."
} >"$OUT/report.md"
cat "$OUT/report.md"
echo "report: $OUT/report.md" >&2
((${#FAILED[@]} == 0))
