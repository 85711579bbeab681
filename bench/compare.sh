#!/usr/bin/env bash
# usage: bench/compare.sh [--duration S] [--conns C] [--warmup S]
#
# ticketd, the axum peer and nginx side by side through ticket-bench, into one report folder:
# each server in turn on a free loopback port pinned to SERVER_CPU (1), ticket-bench pinned to
# CLIENT_CPU (0); GET /api/v1/available on all three, POST /api/v1/purchase {"qty":1} on ticketd
# and axum (nginx has no stock); then `ticket-bench compare` per endpoint, and report.md.
#
# Env:
#   ANCHORS     the peers (default ../shared/anchors, relative to the repository root). The folder
#               must be writable and built: nginx/run.sh keeps its prefix and logs under
#               anchors/results/run/, and the axum peer must be at
#               anchors/axum-peer/target/release/axum-peer (anchors/setup.sh builds it; the
#               anchors' lib.sh runs setup.sh itself when the binary is missing). Where the shared
#               copy is read-only, copy it (cp -r ../shared/anchors /tmp/anchors) and set
#               ANCHORS=/tmp/anchors.
#   OUT         report folder (default bench/runs/<YYYY-MM-DD>-<host>-compare, -2, -3... if taken)
#   SHARDS      ticketd --shards (1: one core, like the peers under taskset -c 1)
#   DURABILITY  ticketd --durability (default sync, ticketd's default: every sale journaled
#               before its answer; none: memory only, like the peers and like ticketd before the
#               journal). ticketd journals into a fresh data directory in the report folder,
#               removed after its runs, so every comparison starts from INITIAL_STOCK; the report
#               says which durability it ran with.
#   SERVER_CPU, CLIENT_CPU, INITIAL_STOCK (1e9: purchases never sell out), QUIET_MAX, QUIET_WAIT:
#               as in the anchors' lib.sh (it waits for the machine to be quiet before each run)
#   SKIP_BUILD=1  use the existing target/release binaries
set -uo pipefail

DURATION=10 CONNS=64 WARMUP=2
while (($#)); do
  case $1 in
    --duration) DURATION=${2%s}; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --warmup) WARMUP=${2%s}; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
ANCHORS_DIR=${ANCHORS:-../shared/anchors}
[[ -f $ANCHORS_DIR/lib.sh ]] || { echo "no anchors at $ANCHORS_DIR (set ANCHORS)" >&2; exit 2; }
ANCHORS_DIR=$(cd "$ANCHORS_DIR" && pwd)
[[ -w $ANCHORS_DIR ]] || {
  echo "$ANCHORS_DIR is not writable: cp -r it somewhere and set ANCHORS (see the header)" >&2
  exit 2
}
# lib.sh: free_port, start_target/stop_target (pinned to SERVER_CPU), wait_quiet; sets ANCHORS.
# shellcheck source=/dev/null
source "$ANCHORS_DIR/lib.sh"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  nice cargo build --release --locked -p ticketd -p ticket-bench || exit 1
fi
TB=$REPO/target/release/ticket-bench
TICKETD=$REPO/target/release/ticketd
SHARDS=${SHARDS:-1}
DURABILITY=${DURABILITY:-sync}
case $DURABILITY in sync|none) ;; *) echo "DURABILITY must be sync or none" >&2; exit 2 ;; esac
for bin in "$TB" "$TICKETD"; do [[ -x $bin ]] || { echo "missing $bin" >&2; exit 2; }; done

host=$(hostname)
OUT=${OUT:-bench/runs/$(date -u +%F)-$host-compare}
base=$OUT n=2
while [[ -e $OUT ]]; do OUT=$base-$n; n=$((n + 1)); done
mkdir -p "$OUT"
# ticketd's journal for this comparison only: a data directory left by an earlier run would set
# the stock instead of INITIAL_STOCK.
DATA_DIR=$OUT/data-ticketd
trap 'stop_target' EXIT
trap 'stop_target; exit 130' INT TERM

nginx_version=$(nginx -v 2>&1 | sed 's/.*nginx\///')
declare -A SERVER_OPTIONS=(
  [ticketd]="target/release/ticketd --shards $SHARDS --durability $DURABILITY (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)), taskset -c $SERVER_CPU, INITIAL_STOCK=$STOCK"
  [axum]="anchors axum-peer (axum 0.8, tokio, WORKER_THREADS = CPUs allowed = 1), taskset -c $SERVER_CPU, INITIAL_STOCK=$STOCK"
  [nginx]="nginx $nginx_version, 1 worker, return 200 '{\"qty\":1000}', taskset -c $SERVER_CPU"
)
declare -A TARGET=(
  [ticketd]="cmd:exec $TICKETD --shards $SHARDS --host 127.0.0.1 --durability $DURABILITY --data-dir $DATA_DIR"
  [axum]=axum
  [nginx]=nginx
)

MY_SID=$(ps -o sid= -p $$ | tr -d ' ')
BGLOAD=()

# bench NAME SCENARIO: one ticket-bench run into $OUT/NAME-SCENARIO, noting how much CPU other
# processes (not this script's session, not the server's) used meanwhile (anchors' bgload.py).
bench() {
  local name=$1 scenario=$2 rc bg
  wait_quiet
  echo ">> $name: $scenario, ${DURATION}s x $CONNS connections (warm-up ${WARMUP}s)" >&2
  python3 "$ANCHORS/bgload.py" snap >"$OUT/.bgsnap"
  taskset -c "$CLIENT_CPU" "$TB" run --url "$T_BASE" --scenario "$scenario" \
    --connections "$CONNS" --duration "${DURATION}s" --warmup "${WARMUP}s" \
    --label "$name-$scenario" --server-options "${SERVER_OPTIONS[$name]}" \
    --out "$OUT/$name-$scenario" >/dev/null
  rc=$?
  bg=$(python3 "$ANCHORS/bgload.py" since "$OUT/.bgsnap" "$MY_SID" "${T_PIDS[@]}")
  rm -f "$OUT/.bgsnap"
  BGLOAD+=("$name-$scenario ${bg}%")
  return $rc
}

RUNS_AVAILABLE=() RUNS_PURCHASE=() FAILED=()
for name in ticketd axum nginx; do
  echo ">> $name: starting (server CPU $SERVER_CPU)" >&2
  if ! start_target "${TARGET[$name]}" "$OUT/$name.server.log"; then
    FAILED+=("$name (see $name.server.log)"); continue
  fi
  if bench "$name" available; then RUNS_AVAILABLE+=("$OUT/$name-available"); else FAILED+=("$name available"); fi
  if ((T_HAS_PURCHASE)); then
    if bench "$name" purchase; then RUNS_PURCHASE+=("$OUT/$name-purchase"); else FAILED+=("$name purchase"); fi
  fi
  stop_target
  [[ $name == ticketd ]] && rm -rf "$DATA_DIR"
done

((${#RUNS_AVAILABLE[@]})) && "$TB" compare "${RUNS_AVAILABLE[@]}" --out "$OUT/compare-available" >/dev/null
((${#RUNS_PURCHASE[@]})) && "$TB" compare "${RUNS_PURCHASE[@]}" --out "$OUT/compare-purchase" >/dev/null

{
  echo "# ticketd vs the axum peer vs nginx"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $host ($(nproc) CPUs, kernel $(uname -r)), servers on CPU" \
       "$SERVER_CPU, ticket-bench on CPU $CLIENT_CPU: closed loop, $CONNS connections, ${WARMUP}s warm-up," \
       "${DURATION}s measured. ticketd ran \`--durability $DURABILITY\`" \
       "$([[ $DURABILITY == sync ]] && echo "(every sale journaled to disk before its answer; the peers keep their stock in memory)" || echo "(memory only, as the peers)")." \
       "Reproduce with \`ANCHORS=$ANCHORS_DIR DURABILITY=$DURABILITY bench/compare.sh --duration $DURATION --conns $CONNS --warmup $WARMUP\`."
  echo
  echo "On a small box the client's core (mostly kernel loopback time) caps what any server can" \
       "show: nginx, which does nothing beyond HTTP, marks that ceiling."
  echo
  echo "CPU used by other processes during each run, in % of one CPU (figures are suspect above" \
       "~10 %): $(IFS=';'; joined="${BGLOAD[*]}"; echo "${joined//;/, }")."
  ((${#FAILED[@]})) && echo && echo "Failed: ${FAILED[*]}"
  for endpoint in available purchase; do
    [[ -f $OUT/compare-$endpoint/compare.md ]] || continue
    echo
    echo "## ${endpoint^} (\`compare-$endpoint/\`)"
    echo
    sed -e '1,2d' -e "s|(compare.svg)|(compare-$endpoint/compare.svg)|" "$OUT/compare-$endpoint/compare.md"
  done
} >"$OUT/report.md"
cat "$OUT/report.md"
echo "report: $OUT/report.md" >&2
((${#FAILED[@]} == 0))
