-- request.lua - wrk script: POSTs the body in $BODY_FILE (or GETs when unset) and prints one
-- machine-readable line: requests/s, p50 and p99 latency in ms, and the count of non-2xx answers.
local body_file = os.getenv("BODY_FILE")
if body_file and body_file ~= "" then
    local f = assert(io.open(body_file, "rb"))
    wrk.method = "POST"
    wrk.body = f:read("*a")
    f:close()
    wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
    local seconds = summary.duration / 1e6
    local bad = summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, summary.requests))
end
