-- post_lead.lua: wrk script for POST /leads with a unique-ish lead per request
-- (run tag + thread id + counter in the email). Anything but 201 counts as an error.
-- BENCH_RUN: tag for the emails; BENCH_POST_PHONE=0: email only (one welcome message per lead
-- instead of two); BENCH_MAX_PER_THREAD: stop each thread after that many responses.
EXPECT_STATUS = 201
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local run = os.getenv("BENCH_RUN") or "run"
local with_phone = (os.getenv("BENCH_POST_PHONE") or "1") ~= "0"
local counter = 0
local headers = {["Content-Type"] = "application/json"}

function request()
  counter = counter + 1
  local body
  if with_phone then
    body = string.format(
      '{"name":"Bench %d","email":"b-%s-%d-%d@bench.test","phone":"+1%d%08d"}',
      counter, run, tid, counter, 200 + tid, counter % 100000000)
  else
    body = string.format('{"name":"Bench %d","email":"b-%s-%d-%d@bench.test"}',
      counter, run, tid, counter)
  end
  return wrk.format("POST", "/leads", headers, body)
end
