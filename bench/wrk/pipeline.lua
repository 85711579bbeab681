-- wrk script: HTTP/1.1 pipelining, WRK_PIPELINE requests per write (env, default 16, the depth of
-- TechEmpower's plaintext test), so the client stops being the bottleneck. A POST when WRK_BODY is
-- set (e.g. WRK_BODY='{"qty":1}' for /api/v1/purchase), else a GET. Prints the spectrum at the end.
--   WRK_PIPELINE=16 wrk -t1 -c64 -d10s -s bench/wrk/pipeline.lua http://127.0.0.1:8000/api/v1/available
-- As in the anchors' wrk-report.lua: wrk records one latency per batch (the time until the
-- batch's last response), while its request count is per response.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local hgrm = dofile(dir .. "hgrm.lua")

local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

local depth = tonumber(os.getenv("WRK_PIPELINE") or "16") or 16
local batch

init = function(args)
  local one = wrk.format()
  local t = {}
  for i = 1, depth do t[i] = one end
  batch = table.concat(t)
end

request = function()
  return batch
end

done = hgrm.done
