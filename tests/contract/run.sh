#!/usr/bin/env bash
# The API contract test (issue 3): a battlepassd of its own (database it_contract with the
# sample season starting now, its own consumer group and HTTP port, a lowered XP grant
# limit) behind Stoplight Prism (`prism proxy --errors`, the version pinned in package.json)
# that validates every request and response against schemas/openapi/main.yaml; then
# tests/contract/scenario.py drives every operation through the proxy. Both processes are
# stopped at the end, whatever happens (SIGTERM; the daemon must exit 0).
# Needs the services of scripts/services (BP_PG_DSN, BP_KAFKA_BOOTSTRAP, BP_REDIS_URL,
# BP_JWT_HS256_SECRET, as scripts/test exports them) and BP_BATTLEPASSD; without them it
# exits 77 (skipped), or 1 when BP_REQUIRE_SERVICES=1.
# A second Prism (the control proxy) stands in front of a deliberately wrong upstream that
# the scenario serves, so that the scenario proves it detects Prism's violation reports.
# Ports: free ones, or BP_TEST_CONTRACT_PORT (the daemon) and the next three.
set -uo pipefail

src=${BP_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# Logs and the bundled document go to the working directory (ctest's: the build tree).
work=$(cd "${BP_TEST_CONTRACT_DIR:-.}" 2>/dev/null && pwd)
say() { echo "contract: $*"; }
unavailable() {
    say "$1"
    [ "${BP_REQUIRE_SERVICES:-}" = 1 ] && exit 1
    exit 77
}

for var in BP_PG_DSN BP_KAFKA_BOOTSTRAP BP_REDIS_URL BP_JWT_HS256_SECRET BP_BATTLEPASSD; do
    [ -n "${!var:-}" ] || unavailable "$var not set: services not configured (run through scripts/test)"
done
[ -x "$BP_BATTLEPASSD" ] || unavailable "BP_BATTLEPASSD=$BP_BATTLEPASSD is not executable"
for tool in node npm psql curl; do
    command -v "$tool" >/dev/null || unavailable "$tool not found (run scripts/bootstrap)"
done
/usr/bin/python3 -c 'import jwt' 2>/dev/null || unavailable "python3-jwt missing (run scripts/bootstrap)"

# The pinned npm tools, installed as scripts/lint-openapi does: npm ci when node_modules is
# missing or older than the lock file.
cd "$src" || exit 1
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ] ||
    [ ! -x node_modules/.bin/prism ] || [ ! -x node_modules/.bin/redocly ]; then
    say "installing the pinned npm tools (npm ci)"
    npm ci --no-audit --no-fund || exit 1
fi
prism_version=$(node -p 'require("./node_modules/@stoplight/prism-cli/package.json").version')

[ -n "$work" ] && [ -w "$work" ] || work=$(mktemp -d)
daemon_log=$work/contract-daemon.log
prism_log=$work/contract-prism.log
doc_json=$work/contract-openapi.json

# Four ports: the daemon, Prism, the control Prism, the scenario's wrong upstream. Fixed ones
# (BP_TEST_CONTRACT_PORT and the next three) or, by default, four the kernel has free now,
# so that test runs of several checkouts on one machine do not collide.
listening() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; }
if [ -n "${BP_TEST_CONTRACT_PORT:-}" ]; then
    port=$BP_TEST_CONTRACT_PORT
    pport=$((port + 1)) cport=$((port + 2)) fport=$((port + 3))
    for p in "$port" "$pport" "$cport" "$fport"; do
        if listening "$p"; then
            say "port $p is in use (BP_TEST_CONTRACT_PORT=$port: it and the next three are used)"
            exit 1
        fi
    done
else
    read -r port pport cport fport < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    [ -n "${fport:-}" ] || { say "no free ports found"; exit 1; }
fi

# Every process started here ends with the script, whatever happens.
daemon_pid=
prism_pid=
control_pid=
scenario_pid=
rc=1
stop() {
    local status
    for pid in $scenario_pid $prism_pid $control_pid; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    scenario_pid='' prism_pid='' control_pid=''
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null # the scenario may have stopped it already
        for _ in $(seq 1 150); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$daemon_pid" 2>/dev/null && {
            say "battlepassd did not stop within 15 s of SIGTERM: killed"
            kill -KILL "$daemon_pid" 2>/dev/null
            rc=1
        }
        wait "$daemon_pid"
        status=$?
        daemon_pid=
        if [ "$status" -ne 0 ]; then
            say "battlepassd exited with $status on SIGTERM (want 0); its log:"
            tail -n 30 "$daemon_log"
            rc=1
        fi
    fi
}
trap 'stop; exit $rc' EXIT
trap 'exit 1' INT TERM

# A database of its own, the sample season starting now.
db=it_contract
base=${BP_PG_DSN%/*}
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" ||
    exit 1
sample=$src/schemas/seasons/sample-season.json
season=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$sample")
xp_limit=4
export BP_PG_DSN=$base/$db
export BP_HTTP_LISTEN=127.0.0.1:$port
export BP_KAFKA_GROUP=it-contract-$$ BP_KAFKA_SESSION_TIMEOUT_MS=6000
export BP_XP_GRANTS_PER_MINUTE=$xp_limit
# The daemon warns about BP_ variables it does not know: leave the test's own out.
bpd() { env -u BP_BATTLEPASSD -u BP_REQUIRE_SERVICES -u BP_SOURCE_DIR "$BP_BATTLEPASSD" "$@"; }
bpd migrate >/dev/null || exit 1
bpd season import "$sample" --starts-now || exit 1

# The document as dereferenced JSON, for the scenario's list of operations and the
# schemas of the stream's events.
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true node_modules/.bin/redocly bundle \
    --dereferenced --ext json -o "$doc_json" schemas/openapi/main.yaml >/dev/null 2>&1 || {
    say "redocly bundle of schemas/openapi/main.yaml failed"
    exit 1
}

env -u BP_BATTLEPASSD -u BP_REQUIRE_SERVICES -u BP_SOURCE_DIR "$BP_BATTLEPASSD" serve >"$daemon_log" 2>&1 &
daemon_pid=$!
# node_modules/.bin/prism is what `npx prism` runs; called directly, npx cannot reach out to
# the registry for it.
node_modules/.bin/prism proxy --errors -h 127.0.0.1 -p "$pport" schemas/openapi/main.yaml \
    "http://127.0.0.1:$port" >"$prism_log" 2>&1 &
prism_pid=$!
node_modules/.bin/prism proxy --errors -h 127.0.0.1 -p "$cport" schemas/openapi/main.yaml \
    "http://127.0.0.1:$fport" >"$work/contract-prism-control.log" 2>&1 &
control_pid=$!

up() { curl -fsS -o /dev/null --max-time 1 "$1/health" 2>/dev/null; }
for _ in $(seq 1 300); do
    up "http://127.0.0.1:$port" && up "http://127.0.0.1:$pport" && listening "$cport" && break
    for pid in $daemon_pid $prism_pid $control_pid; do
        kill -0 "$pid" 2>/dev/null || break 2
    done
    sleep 0.1
done
if ! up "http://127.0.0.1:$port"; then
    say "battlepassd did not come up on port $port; its log:"
    tail -n 30 "$daemon_log"
    exit 1
fi
if ! up "http://127.0.0.1:$pport"; then
    say "prism $prism_version did not come up on port $pport; its log:"
    tail -n 30 "$prism_log"
    exit 1
fi
if ! listening "$cport"; then
    say "the control prism did not come up on port $cport; its log:"
    tail -n 30 "$work/contract-prism-control.log"
    exit 1
fi
say "battlepassd on :$port behind prism $prism_version proxy --errors on :$pport"

BP_TEST_CONTRACT_URL=http://127.0.0.1:$pport \
    BP_TEST_CONTRACT_DIRECT_URL=http://127.0.0.1:$port \
    BP_TEST_CONTRACT_CONTROL_URL=http://127.0.0.1:$cport \
    BP_TEST_CONTRACT_FAKE_PORT=$fport \
    BP_TEST_CONTRACT_DOC=$doc_json \
    BP_TEST_CONTRACT_DAEMON_PID=$daemon_pid \
    BP_TEST_CONTRACT_SEASON=$season \
    BP_TEST_CONTRACT_XP_LIMIT=$xp_limit \
    timeout 120 /usr/bin/python3 "$src/tests/contract/scenario.py" &
scenario_pid=$! # waited for in the background, so that a signal to this script stops it
wait "$scenario_pid"
rc=$?
scenario_pid=
if [ "$rc" -ne 0 ]; then
    say "prism's violations (from $prism_log):"
    grep -a 'VALIDATOR\|Violation' "$prism_log" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 40
fi
stop
exit $rc
