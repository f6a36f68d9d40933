-- reply.lua: wrk script for POST /leads/:id/reply on WhatsApp (the simulation route) over the
-- leads of BENCH_LEADS_FILE ("ID PHONE" lines, helper.py seed-leads), from each lead's own
-- phone, round-robin, each thread starting at a different offset. Anything but 201 is an error.
EXPECT_STATUS = 201
dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "report.lua")

local reqs = {}
local i = 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  local path = os.getenv("BENCH_LEADS_FILE")
  local f = assert(io.open(path, "r"), "cannot open BENCH_LEADS_FILE")
  for line in f:lines() do
    local id, phone = line:match("^(%S+) (%S+)$")
    if id then
      table.insert(reqs, wrk.format("POST", "/leads/" .. id .. "/reply", headers, string.format(
        '{"channel":"whatsapp","messageContent":{"from":"%s","text":"Can we book a demo?"}}',
        phone)))
    end
  end
  f:close()
  assert(#reqs > 0, "BENCH_LEADS_FILE is empty")
  i = (tid * 7919) % #reqs
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
