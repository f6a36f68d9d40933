-- webhook.lua: wrk script for POST /webhooks/whatsapp over pre-signed deliveries (wrk's Lua has
-- no HMAC): BENCH_BODIES_FILE holds "SIGNATURE LEAD_ID BODY" lines (helper.py wa-bodies).
-- Thread TID of BENCH_WRK_THREADS takes lines TID+1, TID+1+T, ... so no two threads send the
-- same delivery, and sends each of its lines once, in order.
-- BENCH_EXPECT=new: each answer must be 200 {"received":1,"duplicates":0,...} (a new message);
-- BENCH_EXPECT=dup: the deliveries were taken in before, each answer must be 200
-- {"received":0,"duplicates":1,...}; the thread cycles over its lines.
-- A 200 with another body counts as an error under the pseudo status code 1. A "new" thread that
-- runs out of lines starts over (those answers are duplicates, so errors) and reports it on a
-- "WHBENCH exhausted=..." line (bench.sh then asks for more bodies).
EXPECT_STATUS = 200
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local reqs = {}
local i = 0
local expect = os.getenv("BENCH_EXPECT") or "new"
local want = expect == "dup" and '"received":0,"duplicates":1,' or '"received":1,"duplicates":0,'
wrapped = 0
nlines = 0
local mine = {}
local base_setup = setup
function setup(thread)
  base_setup(thread)
  table.insert(mine, thread)
end
local headers_base = {["Content-Type"] = "application/json"}

function init(args)
  local path = os.getenv("BENCH_BODIES_FILE")
  local nthreads = tonumber(os.getenv("BENCH_WRK_THREADS") or "")
  assert(nthreads and nthreads >= 1, "BENCH_WRK_THREADS not set")
  local f = assert(io.open(path, "r"), "cannot open BENCH_BODIES_FILE")
  local n = 0
  for line in f:lines() do
    if n % nthreads == tid then
      local sig, body = line:match("^(%S+) %S+ (.*)$")
      assert(sig, "BENCH_BODIES_FILE: bad line " .. (n + 1))
      local h = {["X-Hub-Signature-256"] = sig}
      for k, v in pairs(headers_base) do h[k] = v end
      table.insert(reqs, wrk.format("POST", "/webhooks/whatsapp", h, body))
    end
    n = n + 1
  end
  f:close()
  assert(#reqs > 0, "BENCH_BODIES_FILE: no line for thread " .. tid)
  nlines = #reqs
end

function request()
  i = i + 1
  if i > #reqs then
    i = 1
    wrapped = wrapped + 1
  end
  return reqs[i]
end

local base_response = response
function response(status, headers, body)
  if status == 200 and not (body and body:find(want, 1, true)) then
    status = 1
  end
  base_response(status, headers, body)
end

local base_done = done
function done(summary, latency, requests)
  local ex, lines = 0, 0
  for _, t in ipairs(mine) do
    if expect ~= "dup" and (t:get("wrapped") or 0) > 0 then ex = ex + 1 end
    lines = lines + (t:get("nlines") or 0)
  end
  io.write(string.format("WHBENCH expect=%s exhausted_threads=%d lines=%d\n", expect, ex, lines))
  base_done(summary, latency, requests)
end
