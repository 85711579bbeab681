#!/usr/bin/env bash
# usage: bench/cluster.sh [--duration S] [--conns C] [--stock N] [--rounds N] [--window W]
#
# Past one machine (issue 18): a flash sale of --stock tickets (100,000) sold by three ticketd
# cluster nodes leasing from a 3-member etcd on loopback, against one cluster node alone and a
# standalone ticketd (no cluster), in interleaved rounds (the order rotated every round). Every
# ticketd runs --shards 1 --durability sync with a fresh data directory, pinned with the etcd
# members to SERVER_CPU (1); one ticket-bench per node (`--scenario flash`, C/nodes connections
# each, 192 in all by default, qty 1) on CLIENT_CPU (0), all started together, for S seconds
# (6). Each cluster run is a sale of its own in the same etcd (`ticketd cluster init`).
#
# report.md, one row per run: tickets sold and sold per second up to the sell-out (the last
# sale of any node), p99 / p99.9 / max of the answers before it (the worst node), the etcd
# transactions per 1,000 tickets (the ledger's: the etcd revisions the run added, less the
# nodes' heartbeat puts; and with them), and the time from the last sale to every node's first
# "sold out" (each ticket-bench times from its own start; they start within milliseconds).
#
# Env: OUT (default bench/runs/<YYYY-MM-DD>-<host>-cluster), SERVER_CPU (1), CLIENT_CPU (0),
#      SKIP_BUILD=1 (else builds ticketd with --features cluster, and ticket-bench).
set -uo pipefail

DURATION=6 CONNS=192 WARMUP=0 ROUNDS=1 CLUSTER_STOCK=100000 WINDOW=1000
while (($#)); do
  case $1 in
    --duration) DURATION=${2%s}; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --stock) CLUSTER_STOCK=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

KIND=cluster
INITIAL_STOCK=$CLUSTER_STOCK
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  nice cargo build --release --locked -p ticketd -p ticket-bench --features ticketd/cluster || exit 1
fi
SKIP_BUILD=1
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null || { echo "etcd is not installed (Debian: etcd-server)" >&2; exit 2; }

# The etcd cluster, for the whole script: 3 members on loopback, pinned beside the nodes.
ETCD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ticketd-bench-etcd.XXXXXX")
ETCD_PIDS=()
stop_etcd() {
  ((${#ETCD_PIDS[@]})) && kill "${ETCD_PIDS[@]}" 2>/dev/null && wait "${ETCD_PIDS[@]}" 2>/dev/null
  rm -rf "$ETCD_DIR"
}
trap 'stop_all; stop_etcd' EXIT
trap 'stop_all; stop_etcd; exit 130' INT TERM
PEERS=() CLIENTS=() INITIAL=()
for i in 0 1 2; do
  PEERS+=("$(free_port)") CLIENTS+=("$(free_port)")
  INITIAL+=("m$i=http://127.0.0.1:${PEERS[i]}")
done
ENDPOINTS=$(printf 'http://127.0.0.1:%s,' "${CLIENTS[@]}")
ENDPOINTS=${ENDPOINTS%,}
for i in 0 1 2; do
  taskset -c "$SERVER_CPU" etcd --name "m$i" --data-dir "$ETCD_DIR/m$i" \
    --listen-client-urls "http://127.0.0.1:${CLIENTS[i]}" \
    --advertise-client-urls "http://127.0.0.1:${CLIENTS[i]}" \
    --listen-peer-urls "http://127.0.0.1:${PEERS[i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${PEERS[i]}" \
    --initial-cluster "$(IFS=,; echo "${INITIAL[*]}")" --initial-cluster-state new \
    --initial-cluster-token "ticketd-bench-$$" >"$ETCD_DIR/m$i.log" 2>&1 &
  ETCD_PIDS+=($!)
done

# The ledger's revision, read by the operator's tool (waits for etcd to answer).
revision() {
  "$TICKETD" cluster --cluster-etcd "$ENDPOINTS" --cluster-name "$1" status --json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])'
}

NAMES=(nodes-3 node-1 standalone)
declare -A SETUP=(
  [nodes-3]="3 ticketd cluster nodes (--shards 1 --durability sync --cluster-window $WINDOW, commit $COMMIT) and 3 etcd members, all taskset -c $SERVER_CPU; capacity $CLUSTER_STOCK"
  [node-1]="1 ticketd cluster node (--shards 1 --durability sync --cluster-window $WINDOW, commit $COMMIT) and 3 etcd members, taskset -c $SERVER_CPU; capacity $CLUSTER_STOCK"
  [standalone]="ticketd --shards 1 --durability sync (commit $COMMIT), no cluster, taskset -c $SERVER_CPU; stock $CLUSTER_STOCK"
)

# run NAME ROUND: one run; its ticket-bench folders are $OUT/NAME-ROUND-nI.
run() {
  local name=$1 round=$2 nodes sale=bench-$1-$2 ports=() i
  case $name in nodes-3) nodes=3 ;; *) nodes=1 ;; esac
  if [[ $name != standalone ]]; then
    "$TICKETD" cluster --cluster-etcd "$ENDPOINTS" --cluster-name "$sale" \
      --initial-stock "$CLUSTER_STOCK" init >"$OUT/$name-$round.init.log" 2>&1 || return 1
    revision "$sale" >"$OUT/$name-$round.rev-before"
  fi
  for ((i = 0; i < nodes; i++)); do
    ports+=("$(free_port)")
    local args=(--durability sync --data-dir "$OUT/data-$name-$round-n$i")
    [[ $name != standalone ]] && args+=(--cluster-etcd "$ENDPOINTS" --cluster-name "$sale"
      --node-id "n$i" --cluster-window "$WINDOW" --max-order-qty 1)
    SHARDS=1 start "$OUT/$name-$round-n$i.server.log" "${ports[i]}" "${args[@]}" || return 1
  done
  local started=$SECONDS benches=()
  echo ">> $name, round $round: flash sale of $CLUSTER_STOCK, ${DURATION}s x $CONNS connections" >&2
  for ((i = 0; i < nodes; i++)); do
    taskset -c "$CLIENT_CPU" "$TB" run --url "http://127.0.0.1:${ports[i]}" --scenario flash \
      --connections $((CONNS / nodes)) --duration "${DURATION}s" --warmup "${WARMUP}s" \
      --label "$name-$round-n$i" --server-options "${SETUP[$name]}" \
      --out "$OUT/$name-$round-n$i" >/dev/null 2>&1 &
    benches+=($!)
  done
  wait "${benches[@]}"
  echo $((SECONDS - started)) >"$OUT/$name-$round.seconds"
  if [[ $name != standalone ]]; then
    revision "$sale" >"$OUT/$name-$round.rev-after"
  fi
  stop_all
  rm -rf "$OUT/data-$name-$round"-n*
}

FAILED=()
for round in $(seq "$ROUNDS"); do
  for k in "${!NAMES[@]}"; do
    name=${NAMES[(k + round - 1) % ${#NAMES[@]}]}
    run "$name" "$round" || { FAILED+=("$name-$round"); stop_all; }
  done
done

TABLE=$(python3 - "$OUT" "$ROUNDS" "$DURATION" "${NAMES[@]}" <<'PY'
import glob, json, os, sys
out, rounds, duration, names = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
HEARTBEATS_PER_S = 10  # cluster::liveness::HEARTBEAT_EVERY is 100 ms: one put each
print("| run | round | tickets sold | sold/s to the last sale | p99 / p99.9 / max ms before (worst node) | ledger tx / 1,000 tickets | with heartbeats | last sale to every sold out, ms |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
for r in range(1, rounds + 1):
    for n in names:
        runs = sorted(glob.glob(os.path.join(out, f"{n}-{r}-n*", "summary.json")))
        if not runs:
            print(f"| {n} | {r} | failed | | | | | |"); continue
        flash = [json.load(open(p))["flash"] for p in runs]
        tickets = sum(f["tickets"] for f in flash)
        last = max((f["last_success_after_s"] or 0) for f in flash)
        outs = [f["sold_out_after_s"] for f in flash]
        rate = tickets / last if last else 0
        worst = lambda k: max(f["before"]["latency_ms"][k] for f in flash)
        lat = f"{worst('p99'):.2f} / {worst('p99_9'):.2f} / {worst('max'):.2f}"
        tx = hb = ""
        try:
            before = int(open(os.path.join(out, f"{n}-{r}.rev-before")).read())
            after = int(open(os.path.join(out, f"{n}-{r}.rev-after")).read())
            seconds = float(open(os.path.join(out, f"{n}-{r}.seconds")).read())
            beats = HEARTBEATS_PER_S * len(flash) * seconds
            if tickets:
                hb = f"{(after - before) * 1000 / tickets:.1f}"
                tx = f"{max(0, after - before - beats) * 1000 / tickets:.1f}"
        except (OSError, ValueError):
            pass
        sold_out = "not sold out" if None in outs else f"{(max(outs) - last) * 1000:.0f}"
        print(f"| {n} | {r} | {tickets:,} | {rate:,.0f} | {lat} | {tx} | {hb} | {sold_out} |")
PY
)

{
  echo "# A cluster sale: three ticketd nodes, one node, and a standalone ticketd"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname) ($(nproc) CPUs, kernel $(uname -r)), commit $COMMIT." \
       "Every ticketd --shards 1 --durability sync and the 3 etcd members on CPU $SERVER_CPU;" \
       "one ticket-bench per node on CPU $CLIENT_CPU (\`--scenario flash\`, qty 1, $CONNS connections in all)," \
       "${DURATION}s; capacity $CLUSTER_STOCK, window $WINDOW; $ROUNDS round(s), runs interleaved." \
       "Reproduce with \`bench/cluster.sh --duration $DURATION --conns $CONNS --stock $CLUSTER_STOCK --rounds $ROUNDS --window $WINDOW\`."
  echo
  echo "Ledger transactions are the etcd revisions a run added less the heartbeat puts (10 a" \
       "second per node, over the run's wall time); \"with heartbeats\" counts every revision." \
       "The sold-out time is from the last successful answer any node gave to the first \"sold" \
       "out\" of the last node to give one."
  echo
  echo "$TABLE"
  echo
  ((${#FAILED[@]})) && echo "Failed runs: ${FAILED[*]}" && echo
} >"$OUT/report.md"
cat "$OUT/report.md"
echo "report: $OUT/report.md" >&2
((${#FAILED[@]} == 0))
