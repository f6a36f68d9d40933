-- post_lead.lua: wrk script for POST /leads with a unique lead per request (run tag + thread id
-- + counter in the email; a hash of the run tag + thread id + counter in the phone's digits, as
-- one lead per person compares phones by their digits). Anything but 201 counts as an error.
-- BENCH_RUN: tag for the emails; BENCH_POST_PHONE=0: email only (one welcome message per lead
-- instead of two); BENCH_MAX_PER_THREAD: stop each thread after that many responses.
EXPECT_STATUS = 201
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local run = os.getenv("BENCH_RUN") or "run"
local with_phone = (os.getenv("BENCH_POST_PHONE") or "1") ~= "0"
local counter = 0
local headers = {["Content-Type"] = "application/json"}
-- 7 digits from the run tag (a polynomial hash, exact in doubles), so that the runs of one
-- database (the enqueue loop) do not repeat a phone (two tags share them about once in 10^7).
local run_digits = 0
for k = 1, #run do
  run_digits = (run_digits * 31 + run:byte(k)) % 9999991
end

function request()
  counter = counter + 1
  local body
  if with_phone then
    body = string.format(
      '{"name":"Bench %d","email":"b-%s-%d-%d@bench.test","phone":"+1%07d%03d%08d"}',
      counter, run, tid, counter, run_digits, tid, counter % 100000000)
  else
    body = string.format('{"name":"Bench %d","email":"b-%s-%d-%d@bench.test"}',
      counter, run, tid, counter)
  end
  return wrk.format("POST", "/leads", headers, body)
end
