-- bench.lua - wrk script for tests/scale/bench_scale.sh: POSTs the body in $BODY_FILE to
-- $LAYER_PREFIX<NN>/$OP for NN over $LAYER_COUNT layers (00, 01, ...), round robin from a random
-- start per thread, so that a router hashing on the layer name spreads the load; prints one
-- machine-readable line: requests/s, p50 and p99 latency in ms, non-2xx and socket errors, and
-- the request count.
local body_file = assert(os.getenv("BODY_FILE"), "BODY_FILE")
local count = tonumber(os.getenv("LAYER_COUNT") or "1")
local prefix = os.getenv("LAYER_PREFIX") or "/v1/layers/b"
local op = os.getenv("OP") or "train-step"

local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()
local headers = { ["Content-Type"] = "application/json" }
local paths = {}
for i = 0, count - 1 do
    paths[#paths + 1] = string.format("%s%02d/%s", prefix, i, op)
end
local next_i = 0

init = function(args)
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
    next_i = math.random(count) - 1
end

request = function()
    next_i = (next_i + 1) % count
    return wrk.format("POST", paths[next_i + 1], headers, body)
end

done = function(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local bad = summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, summary.requests))
end
