-- wrk script for the OFREP load runs (see benches/README.md, "Server load").
-- Environment: OFREP_TOKEN (evaluate token), OFREP_CONTEXT (JSON context; set in common.sh).
-- Every request is the same POST, so wrk builds it once and replays it.

local token = os.getenv("OFREP_TOKEN") or error("OFREP_TOKEN is not set")
local context = os.getenv("OFREP_CONTEXT") or error("OFREP_CONTEXT is not set")

wrk.method = "POST"
wrk.body = '{"context":' .. context .. '}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

-- One machine-readable line for run.sh. wrk counts a response as a status error when its
-- code is 400 or above; this load sends no If-None-Match, so nothing legitimate is 3xx
-- and "non2xx" below is exactly the failed answers. Latencies are in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
