-- Shared by the scripts beside it: a done() that prints wrk's latency distribution as an
-- HdrHistogram percentile spectrum (.hgrm), the text the HdrHistogram plotter and
-- `ticket-bench compare` read. The rows step like HdrHistogram's (5 ticks per half distance to
-- 100 %: 0, 10, ... 50, 55, ... 75, 77.5 ...); values in ms.
--
-- wrk keeps exact microsecond latencies (a linear histogram up to its timeout), so each distinct
-- value is its own bucket here: the rows are exact where HdrHistogram's would be rounded to 3
-- significant digits. The Buckets/SubBuckets footer names the HdrHistogram a .hgrm of ours uses
-- (1 us..60 s, 3 digits) so that parsers expecting the line find it.
-- The spectrum goes between the lines "#[hgrm begin]" and "#[hgrm end]" on stdout:
--   wrk ... -s bench/wrk/purchase.lua URL | sed -n '/^#\[hgrm begin\]/,/^#\[hgrm end\]/p' | sed '1d;$d' > wrk.hgrm

local hgrm = {}

-- Java HdrHistogram's PercentileIterator step: 100 / (ticks * 2^(floor(log2(100/(100-level)))+1)).
local function next_level(level, ticks)
  local halvings = math.floor(math.log(100 / (100 - level)) / math.log(2)) + 1
  return level + 100 / (ticks * 2 ^ halvings)
end

function hgrm.print(latency)
  -- #latency is the number of distinct values wrk recorded; latency(i) the i-th (us) and its
  -- count. Each call scans wrk's histogram from its minimum, which is quick enough for an
  -- end-of-run report (well under a second for a run with a long tail).
  local values, counts, total = {}, {}, 0
  for i = 1, #latency do
    local v, n = latency(i)
    values[i], counts[i] = v, n
    total = total + n
  end
  local out = {}
  local function row(v, level, count, last)
    local p = level / 100
    if last then
      out[#out + 1] = string.format("%12.3f %2.12f %10d\n", v / 1000, p, count)
    else
      out[#out + 1] = string.format("%12.3f %2.12f %10d %14.2f\n", v / 1000, p, count, 1 / (1 - p))
    end
  end
  out[#out + 1] = string.format("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
  local level, seen = 0, 0
  for k = 1, #values do
    seen = seen + counts[k]
    if seen == total then
      row(values[k], level, seen, false)
      row(values[k], 100, seen, true)
      break
    end
    while 100 * seen / total >= level do
      row(values[k], level, seen, false)
      level = next_level(level, 5)
    end
  end
  out[#out + 1] = string.format("#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", latency.mean / 1000, latency.stdev / 1000)
  out[#out + 1] = string.format("#[Max     = %12.3f, Total count    = %12d]\n", latency.max / 1000, total)
  out[#out + 1] = string.format("#[Buckets = %12d, SubBuckets     = %12d]\n", 16, 2048)
  io.write("#[hgrm begin]\n", table.concat(out), "#[hgrm end]\n")
end

-- A done() for scripts that want nothing else: a one-line summary, then the spectrum.
function hgrm.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "requests=%d duration_s=%.3f rps=%.1f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect, e.read, e.write, e.timeout))
  hgrm.print(latency)
end

return hgrm
