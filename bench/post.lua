-- wrk script for bench/run.sh: POST the chat body in $BODY_FILE (made by
-- bench/out/genbody) and print one machine-readable RESULT line at the end.
-- No request()/response() callbacks: wrk builds the request once and keeps
-- its C fast path, so the client costs the same on both sides.

local path = os.getenv("BODY_FILE")
if path == nil or path == "" then
    error("BODY_FILE is not set")
end

local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer client-key-not-forwarded"

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d " ..
        "write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d " ..
        "p999_us=%d max_us=%d mean_us=%.1f\n",
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9),
        latency.max, latency.mean))
end
