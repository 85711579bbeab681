#!/bin/bash
# usage: run.sh OUTDIR rounds shards dur
R=$1; ROUNDS=$2; SH=$3; DUR=$4; BIN=${BIN:-/work/main/target/release}
mkdir -p $R; port=${PORT:-25100}
one() { local name=$1; shift; port=$((port+1)); rm -rf /tmp/ldk
  taskset -c 1 $BIN/ticketd --host 127.0.0.1 --port $port --shards $SH --initial-stock 1000000000 --durability $DUR --data-dir /tmp/ldk >/dev/null 2>&1 & pid=$!
  for i in $(seq 100); do curl -sf http://127.0.0.1:$port/api/v1/health >/dev/null && break; sleep 0.05; done
  taskset -c 0 $BIN/ticket-bench run --url http://127.0.0.1:$port --scenario purchase -c 64 -d 4s --warmup 1s "$@" --label $name --out $R/$name >/dev/null 2>&1
  hops=$(curl -s http://127.0.0.1:$port/metrics | grep -E '^ticketd_idempotency_hops_total\{shard="all"\}' | awk '{print $2}')
  kill $pid; wait $pid 2>/dev/null
  python3 - $R/$name $name ${hops:-x} <<'PY'
import json,sys
d=json.load(open(sys.argv[1]+"/summary.json")); l=d["latency_ms"]
print(f"{sys.argv[2]:16} {d['rps']:9,.0f} req/s  p50 {l['p50']:.2f} p99 {l['p99']:.2f} p99.9 {l['p99_9']:.2f} max {l['max']:.2f}  hops {sys.argv[3]}")
PY
}
for r in $(seq $ROUNDS); do
  if [ $((r%2)) = 1 ]; then one plain-$r; one keyed-$r --idempotency-keys; else one keyed-$r --idempotency-keys; one plain-$r; fi
done
