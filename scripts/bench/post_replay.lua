-- post_replay.lua: wrk script for POST /leads replayed with Idempotency-Key: every request sends
-- BENCH_REPLAY_KEY with BENCH_REPLAY_BODY, whose first answer helper.py idem-prime stored. Each
-- answer must be the stored 201 with "Idempotent-Replayed: true"; a 201 without it (a second
-- lead) is counted as an error with code 2010.
EXPECT_STATUS = 201
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local key = assert(os.getenv("BENCH_REPLAY_KEY"), "BENCH_REPLAY_KEY is not set")
local body = assert(os.getenv("BENCH_REPLAY_BODY"), "BENCH_REPLAY_BODY is not set")
local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = key}
local count_response = response

function request()
  return wrk.format("POST", "/leads", headers, body)
end

function response(status, hdrs, b)
  local replayed = hdrs["Idempotent-Replayed"] or hdrs["idempotent-replayed"]
  if status == 201 and replayed ~= "true" then
    status = 2010
  end
  count_response(status, hdrs, b)
end
