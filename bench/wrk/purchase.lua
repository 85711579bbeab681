-- wrk script: POST /api/v1/purchase {"qty":QTY} (QTY env, default 1) on every request, with
-- Content-Type: application/json; prints the latency spectrum in .hgrm form at the end.
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/purchase.lua http://127.0.0.1:8000/api/v1/purchase
-- wrk only counts statuses >= 400 as errors; a 200 with "success":false (sold out) is a success
-- to wrk. ticket-bench checks every body; use it when the stock may run out.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local hgrm = dofile(dir .. "hgrm.lua")

wrk.method = "POST"
wrk.body = string.format('{"qty":%d}', tonumber(os.getenv("QTY") or "1") or 1)
wrk.headers["Content-Type"] = "application/json"

done = hgrm.done
