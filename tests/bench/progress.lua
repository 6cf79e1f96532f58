-- wrk script of scripts/bench: GET BENCH_PATH_PREFIX<n> for random n in [0, BENCH_PLAYERS)
-- (or the fixed BENCH_PATH when set) with a bearer token; prints one JSON line at the end.
local token = os.getenv("BENCH_TOKEN")
local fixed = os.getenv("BENCH_PATH")
local path_prefix = os.getenv("BENCH_PATH_PREFIX") or "/progress/p"
local players = tonumber(os.getenv("BENCH_PLAYERS") or "1000000")
local headers = { ["Authorization"] = "Bearer " .. token }

function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
    local path = fixed or (path_prefix .. math.random(0, players - 1))
    return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
    io.write(string.format(
        '{"requests":%d,"seconds":%.3f,"rps":%.0f,"non2xx":%d,"socket_errors":%d,' ..
        '"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
