#!/usr/bin/env bash
# Runs e2e_independent.py (a client this project did not write) against a battlepassd of
# its own: a fresh database with the sample season, its own consumer group and HTTP port.
# Needs the services of scripts/services (their env exported) and BP_BATTLEPASSD.
set -uo pipefail

src=${BP_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
if [ -z "${BP_PG_DSN:-}" ] || [ -z "${BP_KAFKA_BOOTSTRAP:-}" ] || [ -z "${BP_BATTLEPASSD:-}" ]; then
    echo "e2e: services not configured (run through scripts/test)"
    [ "${BP_REQUIRE_SERVICES:-}" = 1 ] && exit 1
    exit 77
fi

db=it_e2e
port=${BP_E2E_HTTP_PORT:-23183}
base=${BP_PG_DSN%/*}
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" || exit 1
export BP_PG_DSN=$base/$db
export BP_HTTP_LISTEN=127.0.0.1:$port BP_HTTP_URL=http://127.0.0.1:$port
export BP_KAFKA_GROUP=it-e2e-$$ BP_KAFKA_SESSION_TIMEOUT_MS=6000
sample=$src/schemas/seasons/sample-season.json
"$BP_BATTLEPASSD" migrate >/dev/null || exit 1
"$BP_BATTLEPASSD" season import "$sample" --starts-now || exit 1
BP_SAMPLE_SEASON=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$sample")
export BP_SAMPLE_SEASON

"$BP_BATTLEPASSD" serve >e2e-daemon.log 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null' EXIT
for _ in $(seq 1 100); do
    curl -fsS "$BP_HTTP_URL/health" >/dev/null 2>&1 && break
    sleep 0.1
done

/usr/bin/python3 "$src/tests/integration/e2e_independent.py"
rc=$?

kill -TERM $pid
wait $pid
status=$?
if [ $status -ne 0 ]; then
    echo "e2e: battlepassd exited with $status on SIGTERM (want 0); see e2e-daemon.log"
    rc=1
fi
exit $rc
