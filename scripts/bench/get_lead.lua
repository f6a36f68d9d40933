-- get_lead.lua: wrk script for GET /leads/:id round-robin over the ids in BENCH_IDS_FILE
-- (one per line), each thread starting at a different offset. Anything but 200 is an error.
EXPECT_STATUS = 200
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local reqs = {}
local i = 0

function init(args)
  local path = os.getenv("BENCH_IDS_FILE")
  local f = assert(io.open(path, "r"), "cannot open BENCH_IDS_FILE")
  for line in f:lines() do
    if #line > 0 then
      table.insert(reqs, wrk.format("GET", "/leads/" .. line))
    end
  end
  f:close()
  assert(#reqs > 0, "BENCH_IDS_FILE is empty")
  i = (tid * 7919) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
