-- post_known.lua: wrk script for POST /leads of a person already stored (one lead per person):
-- the email of BENCH_KNOWN_EMAIL, its case changed every other request (the match is
-- case-insensitive), and a new phone each time. Anything but 409 is an error.
EXPECT_STATUS = 409
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local email = assert(os.getenv("BENCH_KNOWN_EMAIL"), "BENCH_KNOWN_EMAIL is not set")
local counter = 0
local headers = {["Content-Type"] = "application/json"}

function request()
  counter = counter + 1
  local e = counter % 2 == 0 and email or string.upper(email)
  local body = string.format('{"name":"Known %d","email":"%s","phone":"+9%02d%09d"}',
    counter, e, tid, counter)
  return wrk.format("POST", "/leads", headers, body)
end
