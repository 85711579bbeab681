-- wrk script for bench/tail.sh: GET by default, or POST /api/v1/purchase {"qty":QTY} when
-- METHOD=POST (QTY env, default 1); prints one machine-readable line at the end:
--   TAIL <requests> <req/s> <p50 ms> <p99 ms> <p99.9 ms> <max ms> <errors>
-- (errors: connect, read, write, timeout and status >= 400 together).
--   METHOD=POST wrk -t1 -c64 -d4s -s bench/wrk/tail.lua http://127.0.0.1:8000/api/v1/purchase
if os.getenv("METHOD") == "POST" then
  wrk.method = "POST"
  wrk.body = string.format('{"qty":%d}', tonumber(os.getenv("QTY") or "1") or 1)
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  local seconds = summary.duration / 1e6
  io.write(string.format("TAIL %d %.0f %.3f %.3f %.3f %.3f %d\n", summary.requests,
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000, errors))
end
