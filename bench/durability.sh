#!/usr/bin/env bash
# usage: bench/durability.sh [--duration S] [--conns C] [--warmup S] [--rounds N]
#
# Purchase with `--durability sync` (every sale's journal record written, O_DSYNC, before its
# answer; group commit) versus `--durability none` (memory only), same harness, same window:
# rounds alternate none, then sync (a fresh data directory under the run folder, so on the disk
# the run folder is on), the server pinned to SERVER_CPU (1), ticket-bench pinned to CLIENT_CPU
# (0), POST /api/v1/purchase {"qty":1} on 64 connections. First measures the disk: 4 KiB O_DIRECT
# writes to a file opened O_DSYNC, as the journal writes, 1,000 times (p50/p99). Writes a run
# folder per round, report.md with every round's req/s and p99 and the ratio sync / none.
#
# Env: OUT (default bench/runs/<YYYY-MM-DD>-<host>-durability, -2... if taken), SHARDS (1),
#      SERVER_CPU (1), CLIENT_CPU (0), INITIAL_STOCK (1e9: never sells out), SKIP_BUILD=1.
set -uo pipefail

DURATION=8 CONNS=64 WARMUP=2 ROUNDS=3
while (($#)); do
  case $1 in
    --duration) DURATION=${2%s}; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --warmup) WARMUP=${2%s}; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

KIND=durability
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

# The disk under the run folder: what one group commit costs at least.
FSYNC=$(python3 - "$OUT" <<'PY'
import mmap, os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_DIRECT | os.O_DSYNC, 0o600)
block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
block.write(b"x" * 4096)
times = []
for i in range(1000):
    began = time.perf_counter()
    os.pwrite(fd, block, (i % 16) * 4096)
    times.append(time.perf_counter() - began)
os.close(fd)
os.unlink(path)
times.sort()
print(f"p50 {times[500] * 1e3:.3f} ms, p99 {times[990] * 1e3:.3f} ms, max {times[-1] * 1e3:.3f} ms")
PY
)
echo ">> disk: 4 KiB O_DIRECT + O_DSYNC write: $FSYNC" >&2

ROWS=()
for round in $(seq "$ROUNDS"); do
  for mode in none sync; do
    port=$(free_port)
    start "$OUT/$mode-$round.server.log" "$port" --durability "$mode" \
      --data-dir "$OUT/data-$round" || exit 1
    bench "$mode-$round" "http://127.0.0.1:$port" \
      "ticketd --durability $mode --shards $SHARDS (commit $COMMIT), taskset -c $SERVER_CPU" || exit 1
    stop_all
  done
  rm -rf "$OUT/data-$round"
  n=$(rps "$OUT/none-$round") y=$(rps "$OUT/sync-$round")
  ROWS+=("| $round | $n | $(p99 "$OUT/none-$round") | $y | $(p99 "$OUT/sync-$round") | $(python3 -c "print(f'{$y/$n:.2f}')") |")
done

"$TB" compare "$OUT"/none-1 "$OUT"/sync-1 --out "$OUT/compare" >/dev/null

{
  echo "# Purchase: --durability sync vs none"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname) ($(nproc) CPUs, kernel $(uname -r)), commit $COMMIT." \
       "Server ($SHARDS shard) on CPU $SERVER_CPU, ticket-bench on CPU $CLIENT_CPU: closed loop," \
       "$CONNS connections, ${WARMUP}s warm-up, ${DURATION}s measured, rounds alternating." \
       "Reproduce with \`bench/durability.sh --duration $DURATION --conns $CONNS --warmup $WARMUP --rounds $ROUNDS\`."
  echo
  echo "The disk (filesystem of the run folder: $(df -T "$OUT" | awk 'NR==2 {print $2}')), 4 KiB O_DIRECT write to an O_DSYNC file (as the journal writes), 1,000 times: $FSYNC."
  echo
  echo "| round | none req/s | p99 ms | sync req/s | p99 ms | sync / none |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Latency spectra of round 1: [compare/compare.md](compare/compare.md)."
} >"$OUT/report.md"
cat "$OUT/report.md"
