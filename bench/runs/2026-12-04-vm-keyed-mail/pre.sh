#!/bin/bash
# usage: pre.sh OUTDIR rounds shards dur : unkeyed purchase, pre-17 (/work/tgt-old) against now
R=$1; ROUNDS=$2; SH=$3; DUR=$4; mkdir -p $R; port=${PORT:-25500}
one() { local name=$1 bin=$2; shift 2; port=$((port+1)); rm -rf /tmp/ldk
  taskset -c 1 $bin/ticketd --host 127.0.0.1 --port $port --shards $SH --initial-stock 1000000000 --durability $DUR --data-dir /tmp/ldk >/dev/null 2>&1 & pid=$!
  for i in $(seq 100); do curl -sf http://127.0.0.1:$port/api/v1/health >/dev/null && break; sleep 0.05; done
  taskset -c 0 /work/main/target/release/ticket-bench run --url http://127.0.0.1:$port --scenario purchase -c 64 -d 4s --warmup 1s "$@" --label $name --out $R/$name >/dev/null 2>&1
  kill $pid; wait $pid 2>/dev/null
  python3 - $R/$name $name <<'PY'
import json,sys
d=json.load(open(sys.argv[1]+"/summary.json")); l=d["latency_ms"]
print(f"{sys.argv[2]:16} {d['rps']:9,.0f} req/s  p50 {l['p50']:.2f} p99 {l['p99']:.2f} p99.9 {l['p99_9']:.2f} max {l['max']:.2f}", flush=True)
PY
}
O=/work/tgt-old/release; N=/work/main/target/release
for r in $(seq $ROUNDS); do
  if [ $((r%2)) = 1 ]; then one pre17-$r $O; one now-$r $N; else one now-$r $N; one pre17-$r $O; fi
done
