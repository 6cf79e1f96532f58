-- wrk script of scripts/bench: POST /rewards/<BENCH_CLAIM_PREFIX><thread>-<n>/claim of the
-- level-1 free reward, a new player each time (every claim is a first claim); counts the
-- answers by status and prints one JSON line at the end.
local token = os.getenv("BENCH_TOKEN")
local prefix = os.getenv("BENCH_CLAIM_PREFIX")
local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
local body = '{"level":1,"tier":"free"}'
local threads = {}
local counter = 0
-- globals: set by setup() (id) and read back by done() through thread:get()
id = 0
ok, conflict, other = 0, 0, 0

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function request()
    counter = counter + 1
    return wrk.format("POST", "/rewards/" .. prefix .. id .. "-" .. counter .. "/claim", headers, body)
end

function response(status, hdrs, resp_body)
    if status == 200 then ok = ok + 1 elseif status == 409 then conflict = conflict + 1 else other = other + 1 end
end

function done(summary, latency, requests)
    local t_ok, t_conflict, t_other = 0, 0, 0
    for _, t in ipairs(threads) do
        t_ok = t_ok + t:get("ok")
        t_conflict = t_conflict + t:get("conflict")
        t_other = t_other + t:get("other")
    end
    io.write(string.format(
        '{"requests":%d,"seconds":%.3f,"rps":%.0f,"ok":%d,"conflict":%d,"other":%d,' ..
        '"socket_errors":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
        summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
        t_ok, t_conflict, t_other,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
