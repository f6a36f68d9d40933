-- get_lead_paced.lua: get_lead.lua at a paced rate: each connection waits BENCH_PAUSE_MS
-- (default 16) after each response before its next request, the "normal load" of
-- docs/performance.md (16 connections, 16 ms: about 900 requests/s at most).
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "get_lead.lua")

local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "16") or 16

function delay()
  return pause
end
