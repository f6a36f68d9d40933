-- health.lua: wrk script for GET /health, the latency of a request that touches no database
-- (scripts/bench.sh measures it without and with the SSE streams open). Anything but 200 is an
-- error.
EXPECT_STATUS = 200
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

wrk.method = "GET"
wrk.path = "/health"
