-- get_paths.lua: wrk script for GET requests round-robin over the paths in BENCH_PATHS_FILE (one
-- per line, query strings included), each thread starting at a different offset. Anything but
-- 200 is an error.
EXPECT_STATUS = 200
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local reqs = {}
local i = 0

function init(args)
  local path = os.getenv("BENCH_PATHS_FILE")
  local f = assert(io.open(path, "r"), "cannot open BENCH_PATHS_FILE")
  for line in f:lines() do
    if #line > 0 then
      table.insert(reqs, wrk.format("GET", line))
    end
  end
  f:close()
  assert(#reqs > 0, "BENCH_PATHS_FILE is empty")
  i = (tid * 7) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
