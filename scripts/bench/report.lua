-- report.lua: shared by the wrk scripts in this directory (loaded with dofile).
-- Gives each thread an id, counts responses whose status is not EXPECT_STATUS, and prints one
-- machine-readable "BENCH key=value ..." line from done() for scripts/bench.sh to parse.
-- The caller sets EXPECT_STATUS before loading this file.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

tid = 0
bad = 0
codes = {}
responses = 0
-- Optional cap on responses per thread (BENCH_MAX_PER_THREAD): the thread stops once reached.
local max_per_thread = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "0") or 0

function response(status, headers, body)
  responses = responses + 1
  if status ~= EXPECT_STATUS then
    bad = bad + 1
    codes[status] = (codes[status] or 0) + 1
  end
  if max_per_thread > 0 and responses >= max_per_thread then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local nbad, all, ok = 0, {}, 0
  for _, t in ipairs(threads) do
    nbad = nbad + (t:get("bad") or 0)
    for code, n in pairs(t:get("codes") or {}) do
      all[code] = (all[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(all) do
    table.insert(parts, string.format("%d:%d", code, n))
  end
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  ok = summary.requests - nbad
  io.write(string.format(
    "BENCH requests=%d ok=%d duration_s=%.3f rps=%.1f ok_rps=%.1f p50_ms=%.3f p90_ms=%.3f " ..
    "p99_ms=%.3f max_ms=%.3f bad_status=%d socket_errors=%d connect=%d read=%d write=%d " ..
    "timeout=%d codes=%s\n",
    summary.requests, ok, secs, summary.requests / secs, ok / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, nbad, sock,
    e.connect, e.read, e.write, e.timeout, #parts > 0 and table.concat(parts, ",") or "-"))
end
