# Shared by bench/tiers.sh, bench/durability.sh and bench/flash.sh (sourced, not run): builds,
# picks the run folder, starts pinned servers and runs ticket-bench purchase runs. Binaries come
# from CARGO_TARGET_DIR when it is set, as cargo puts them there.
# The caller sets DURATION, CONNS, WARMUP and KIND (the run folder's suffix) first.
# shellcheck shell=bash
# shellcheck disable=SC2034 # TB, COMMIT... are used by the scripts that source this file

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  nice cargo build --release --locked -p ticketd -p ticket-bench || exit 1
fi
TB=${CARGO_TARGET_DIR:-$REPO/target}/release/ticket-bench
TICKETD=${CARGO_TARGET_DIR:-$REPO/target}/release/ticketd
SHARDS=${SHARDS:-1} SERVER_CPU=${SERVER_CPU:-1} CLIENT_CPU=${CLIENT_CPU:-0}
STOCK=${INITIAL_STOCK:-1000000000}
OUT=${OUT:-bench/runs/$(date -u +%F)-$(hostname)-$KIND}
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

# start LOG PORT ARGS...: one ticketd pinned to SERVER_CPU; waits until it answers /health.
start() {
  local log=$1 port=$2; shift 2
  start_cmd "$log" "$port" "$TICKETD" --host 127.0.0.1 --port "$port" --shards "$SHARDS" \
    --initial-stock "$STOCK" "$@"
}

# start_cmd LOG PORT CMD...: any server pinned to SERVER_CPU, listening on PORT; waits (10 s at
# most) until it answers /api/v1/health.
start_cmd() {
  local log=$1 port=$2; shift 2
  taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && return 0
    sleep 0.05
  done
  echo "$* did not start (see $log)" >&2
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

