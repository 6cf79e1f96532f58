#!/usr/bin/python3
"""End-to-end test with a Kafka client and an Avro implementation this project did not write.

What it proves: a producer outside the project that knows only the published contract
(design §3: topics, `schemas/avro/*.avsc`, `subjects.json`, Confluent wire format; §5: the
HTTP API and its JWT auth) can drive a running Battle Pass Service and read its results:

  * XP events encoded by Apache Avro's Python implementation (`python3-avro`, 1.11 API),
    framed as 0x00 + 4-byte big-endian schema id + datum and produced with librdkafka's
    Python client (`python3-confluent-kafka`) are applied exactly once per eventId
    (about 10% of the events are sent twice, some in the same burst, some after a flush);
  * `GET /progress/{playerId}` converges to the oracle computed here from the season's
    level curve (`GET /seasons/current`): totalXp, currentLevel, currentXp, xpToNextLevel;
  * auth: service token → 200, player token for himself → 200, for someone else → 403,
    no/expired/wrongly-signed/exp-less token → 401, errors are application/problem+json;
  * `battlepass.level-ups` carries, per player, exactly the LevelUp eventIds
    `levelup:<seasonId>:<playerId>:<n>` for n = 2..final level (redelivery allowed),
    Confluent-framed with the id of `battlepass.level-ups-value`, decodable by Apache
    Avro, consistent (previousLevel, seasonId, totalXp, causeEventId, occurredAt);
  * every malformed message (garbage, wrong magic byte, unknown or foreign schema id,
    truncated datum, too short, empty, amount 0, amount < 0, empty playerId, playerId with a
    space) lands in `battlepass.dlq` with its original key and bytes and the headers
    `error`, `source-topic`, `source-partition`, `source-offset` (matching where the broker
    stored it), and no valid event of the run does; malformed events add no XP.

Run it against a running service (needs Debian's Python packages, hence /usr/bin/python3):

    scripts/run &                      # or any deployment; wait for BP_SAMPLE_SEASON in env
    set -a; . .run/env; set +a
    tests/integration/e2e_independent.py

Environment: BP_KAFKA_BOOTSTRAP, BP_HTTP_URL, BP_JWT_HS256_SECRET, BP_SAMPLE_SEASON (id of
the active season; defaults to whatever /seasons/current says), BP_SCHEMAS_DIR (default
<repo>/schemas/avro), topic names BP_TOPIC_XP_EVENTS / BP_TOPIC_LEVEL_UPS / BP_TOPIC_DLQ
(defaults battlepass.*), BP_E2E_TIMEOUT (seconds per wait, default 90), BP_E2E_SEED (random
seed). Without BP_KAFKA_BOOTSTRAP/BP_HTTP_URL it exits 77 (skipped), or 1 when
BP_REQUIRE_SERVICES=1. Every run uses fresh player ids, so runs do not disturb each other.
Output ends with `N passed, M failed`; exit status 0 only when nothing failed.
"""

import datetime
import io
import json
import os
import random
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77

# ---- check bookkeeping -------------------------------------------------------------------

passed = 0
failed = 0


def check(name, ok, detail=""):
    """Count one check; print failures (and passes briefly)."""
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok   {name}")
    else:
        failed += 1
        print(f"  FAIL {name}" + (f": {detail}" if detail else ""))
    return ok


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)


def skip_or_fail(why):
    if os.environ.get("BP_REQUIRE_SERVICES") == "1":
        print(f"e2e_independent: {why} (BP_REQUIRE_SERVICES=1: failing)")
        sys.exit(1)
    print(f"e2e_independent: {why}; skipping")
    sys.exit(SKIP)


# ---- environment -------------------------------------------------------------------------

BOOTSTRAP = os.environ.get("BP_KAFKA_BOOTSTRAP", "")
HTTP_URL = os.environ.get("BP_HTTP_URL", "").rstrip("/")
if not BOOTSTRAP or not HTTP_URL:
    missing = [n for n, v in (("BP_KAFKA_BOOTSTRAP", BOOTSTRAP), ("BP_HTTP_URL", HTTP_URL)) if not v]
    skip_or_fail(f"{' and '.join(missing)} not set (source the service's env file)")

try:
    import avro.io
    import avro.schema
    import confluent_kafka
    import jwt
    from confluent_kafka import Consumer, Producer, TopicPartition
except ImportError as e:  # wrong interpreter or packages missing
    skip_or_fail(f"cannot import {e.name} ({sys.executable}); needs Debian's python3-confluent-kafka, "
                 "python3-avro, python3-jwt and /usr/bin/python3")

SECRET = os.environ.get("BP_JWT_HS256_SECRET", "")
SAMPLE_SEASON = os.environ.get("BP_SAMPLE_SEASON", "")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS_DIR = os.environ.get("BP_SCHEMAS_DIR") or os.path.join(REPO, "schemas", "avro")
TOPIC_XP = os.environ.get("BP_TOPIC_XP_EVENTS", "battlepass.xp-events")
TOPIC_LEVELUP = os.environ.get("BP_TOPIC_LEVEL_UPS", "battlepass.level-ups")
TOPIC_DLQ = os.environ.get("BP_TOPIC_DLQ", "battlepass.dlq")
TIMEOUT = float(os.environ.get("BP_E2E_TIMEOUT", "90"))

N_PLAYERS = 40
N_EVENTS = 600
DUP_FRACTION = 0.10
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

seed = os.environ.get("BP_E2E_SEED")
rng = random.Random(int(seed) if seed else None)
RUN_HEX = "%012x" % random.SystemRandom().getrandbits(48)
PREFIX = f"e2e-{RUN_HEX}-"


def now_ms():
    return int(time.time() * 1000)


def ms_to_dt(ms):
    return EPOCH + datetime.timedelta(milliseconds=ms)


def dt_to_ms(v):
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    return v


# ---- HTTP --------------------------------------------------------------------------------


def token(sub, scope, exp_in=300, secret=None, with_exp=True):
    claims = {"sub": sub, "scope": scope}
    if with_exp:
        claims["exp"] = int(time.time()) + exp_in
    t = jwt.encode(claims, secret if secret is not None else SECRET, algorithm="HS256")
    return t.decode() if isinstance(t, bytes) else t


def http_get(path, tok=None, timeout=10):
    """GET; returns (status or None on connection error, content-type, body bytes)."""
    req = urllib.request.Request(HTTP_URL + path, method="GET")
    if tok is not None:
        req.add_header("Authorization", "Bearer " + tok)
    req.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, e.headers.get("Content-Type", ""), body
    except (urllib.error.URLError, OSError) as e:
        return None, "", str(e).encode()


def json_body(body):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def media_type(ct):
    return ct.split(";")[0].strip().lower()


def is_problem(status, ct, body, want):
    """True when the reply is an RFC 7807 problem with the wanted status."""
    if status != want or media_type(ct) != "application/problem+json":
        return False
    p = json_body(body)
    return isinstance(p, dict) and p.get("status", want) == want


def progress_path(pid):
    return "/progress/" + urllib.parse.quote(pid, safe="")


# ---- Avro + Confluent framing ------------------------------------------------------------


def load_schemas():
    with open(os.path.join(SCHEMAS_DIR, "subjects.json"), encoding="utf-8") as f:
        subjects = json.load(f)
    out = {}
    for subject in (TOPIC_XP + "-value", TOPIC_LEVELUP + "-value"):
        entry = subjects[subject]
        with open(os.path.join(SCHEMAS_DIR, entry["schema"]), encoding="utf-8") as f:
            out[subject] = (int(entry["id"]), avro.schema.parse(f.read()))
    return subjects, out


def avro_encode(schema, datum):
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def avro_decode(schema, data):
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data)))


def frame(schema_id, datum_bytes, magic=0):
    return bytes([magic]) + struct.pack(">I", schema_id) + datum_bytes


def raw_xp_datum(event_id, player_id, amount, occurred_ms):
    """An XpEvent datum encoded by hand, for values Apache Avro itself would refuse to write
    (it validates): only used for malformed messages."""

    def zz(n):
        n = (n << 1) ^ (n >> 63)
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out.append(b | 0x80)
            else:
                out.append(b)
                return bytes(out)

    def s(v):
        b = v.encode()
        return zz(len(b)) + b

    return (s(event_id) + s(player_id) + zz(amount) + s("match_complete") + zz(occurred_ms)
            + zz(0) + zz(0))  # seasonId: union branch 0 (null); metadata: empty map


# ---- season / oracle ---------------------------------------------------------------------


class Curve:
    def __init__(self, season):
        levels = sorted(season["levels"], key=lambda lv: lv["level"])
        self.max_level = int(season.get("maxLevel") or len(levels))
        self.xp_total = {int(lv["level"]): int(lv["xpTotal"]) for lv in levels}

    def level(self, total):
        lvl = 1
        for n in range(1, self.max_level + 1):
            if n in self.xp_total and self.xp_total[n] <= total:
                lvl = n
            else:
                break
        return lvl

    def progress(self, total):
        lvl = self.level(total)
        cur = total - self.xp_total[lvl]
        span = self.xp_total[lvl + 1] - self.xp_total[lvl] if lvl < self.max_level else 0
        return {"totalXp": total, "currentLevel": lvl, "currentXp": cur, "xpToNextLevel": span}


def fetch_season(svc_token):
    """GET /seasons/current, retrying while the service is still coming up."""
    deadline = time.time() + 30
    while True:
        status, ct, body = http_get("/seasons/current", svc_token)
        if status not in (None, 502, 503, 504) or time.time() > deadline:
            return status, ct, body
        time.sleep(1)


# ---- main --------------------------------------------------------------------------------


def main():
    print(f"e2e_independent: run prefix {PREFIX}, confluent-kafka {confluent_kafka.version()[0]} "
          f"(librdkafka {confluent_kafka.libversion()[0]}), avro {getattr(avro, '__version__', '?')}, "
          f"PyJWT {jwt.__version__}")
    print(f"  kafka {BOOTSTRAP}, http {HTTP_URL}, schemas {SCHEMAS_DIR}")
    if not SECRET:
        check("BP_JWT_HS256_SECRET is set", False, "no secret: cannot make tokens")
        finish()

    # -- contract files
    try:
        subjects, schemas = load_schemas()
    except (OSError, KeyError, ValueError, avro.errors.AvroException) as e:
        check("subjects.json and schemas load with Apache Avro", False, repr(e))
        finish()
    xp_id, xp_schema = schemas[TOPIC_XP + "-value"]
    lu_id, lu_schema = schemas[TOPIC_LEVELUP + "-value"]
    check("subjects.json and .avsc files parse with Apache Avro", True)

    # -- season and oracle curve
    svc = token(PREFIX + "gameplay-service", "service")
    status, ct, body = fetch_season(svc)
    season = json_body(body) if status == 200 else None
    if not check("GET /seasons/current → 200 JSON season", isinstance(season, dict) and "levels" in season,
                 f"status {status}, body {body[:300]!r}"):
        finish()
    season_id = season.get("id")
    if SAMPLE_SEASON:
        check("current season is BP_SAMPLE_SEASON and active",
              season_id == SAMPLE_SEASON and season.get("status") == "active",
              f"id {season_id!r}, status {season.get('status')!r}, BP_SAMPLE_SEASON {SAMPLE_SEASON!r}")
    else:
        print(f"  note: BP_SAMPLE_SEASON not set, using current season {season_id}")
    try:
        curve = Curve(season)
        lv_ok = (curve.xp_total.get(1) == 0 and len(curve.xp_total) == curve.max_level
                 and all(curve.xp_total[n] < curve.xp_total[n + 1] for n in range(1, curve.max_level)))
    except (KeyError, TypeError, ValueError) as e:
        lv_ok, curve = False, None
        print(f"    {e!r}")
    if not check("season curve: level 1 at 0 XP, cumulative and increasing up to maxLevel", lv_ok):
        finish()
    season_id = season_id or SAMPLE_SEASON
    explicit_season = SAMPLE_SEASON or season_id

    # -- build the scenario
    players = [f"{PREFIX}p{i:02d}" for i in range(N_PLAYERS)]
    weights = [6 if i < 4 else 1 for i in range(N_PLAYERS)]  # a few heavy players: many levels
    reasons = ["match_complete", "mission_complete", "achievement"]
    events = []  # (eventId, playerId, datum dict)
    for n in range(N_EVENTS):
        pid = rng.choices(players, weights)[0] if n >= N_PLAYERS else players[n]  # all play
        ms = now_ms()
        meta = {}
        r = rng.random()
        if r < 0.3:
            meta = {"matchId": f"m-{rng.getrandbits(32):08x}", "mode": rng.choice(["ranked", "casual"])}
        elif r < 0.4:
            meta = {"missionId": f"mission-{rng.randint(1, 50)}", "map": "Köln ☃ — Ω"}
        ev = {
            "eventId": f"{PREFIX}ev-{n:04d}",
            "playerId": pid,
            "amount": rng.randint(1, 400),
            "reason": rng.choice(reasons),
            "occurredAt": ms_to_dt(ms),
            "seasonId": explicit_season if rng.random() < 0.05 or n == 7 else None,
            "metadata": meta,
        }
        events.append((ev["eventId"], pid, ev, ms, frame(xp_id, avro_encode(xp_schema, ev))))

    # Sending order: the events, ~half of the duplicates mixed in later in the same burst,
    # the malformed messages at random places; the rest of the duplicates after a flush.
    dup_idx = rng.sample(range(N_EVENTS), int(N_EVENTS * DUP_FRACTION))
    phase1 = [("ev", e) for e in events]
    phase2 = []
    for k, i in enumerate(dup_idx):
        if k % 2 == 0:
            pos = rng.randint(i + 1, len(phase1))  # after the original (its own partition order)
            phase1.insert(pos, ("dup", events[i]))
        else:
            phase2.append(("dup", events[i]))

    t0 = now_ms()
    good = {"eventId": PREFIX + "x", "playerId": PREFIX + "x", "amount": 10, "reason": "achievement",
            "occurredAt": ms_to_dt(t0), "seasonId": None, "metadata": {}}

    def valid_datum(**kw):
        d = dict(good, playerId=kw.get("eventId", good["playerId"]))  # the player is the key
        d.update(kw)
        return avro_encode(xp_schema, d)

    def truncated(b):
        return b[: len(b) // 2]

    bad_specs = [
        ("random bytes", b"\xff" + os.urandom(47)),
        ("wrong magic byte", frame(xp_id, valid_datum(eventId=PREFIX + "bad-1"), magic=1)),
        ("unknown schema id", frame(999983, valid_datum(eventId=PREFIX + "bad-2"))),
        ("truncated datum", frame(xp_id, truncated(valid_datum(eventId=PREFIX + "bad-3",
                                                               metadata={"k": "v" * 20})))),
        ("amount 0", frame(xp_id, raw_xp_datum(PREFIX + "bad-4", PREFIX + "bad-4", 0, t0))),
        ("amount negative", frame(xp_id, raw_xp_datum(PREFIX + "bad-5", PREFIX + "bad-5", -50, t0))),
        ("empty playerId", frame(xp_id, valid_datum(eventId=PREFIX + "bad-6", playerId=""))),
        ("playerId with a space", frame(xp_id, valid_datum(eventId=PREFIX + "bad-7",
                                                           playerId=PREFIX + "bad 7"))),
        ("shorter than the 5-byte header", b"\x00\x00\x00"),
        ("empty value", b""),
        ("schema id of another subject (LevelUp)", frame(lu_id, valid_datum(eventId=PREFIX + "bad-10"))),
    ]
    bad = []  # (key, description, bytes)
    for n, (desc, value) in enumerate(bad_specs):
        bad.append((f"{PREFIX}bad-{n}", desc, value))
    for b in bad:
        phase1.insert(rng.randint(0, len(phase1)), ("bad", b))

    # -- oracle: per player, unique eventIds in partition (= sending) order
    seen = set()
    total = {p: 0 for p in players}
    expected_lu = {p: {} for p in players}  # level -> (causeEventId, totalXp after, occurredAt)
    for kind, item in phase1 + phase2:
        if kind == "bad":
            continue
        eid, pid, ev, ms, _ = item
        if eid in seen:
            continue
        seen.add(eid)
        before = curve.level(total[pid])
        total[pid] += ev["amount"]
        after = curve.level(total[pid])
        for lvl in range(before + 1, after + 1):
            expected_lu[pid][lvl] = (eid, total[pid], ms)
    final = {p: curve.progress(total[p]) for p in players}
    n_levelups = sum(len(v) for v in expected_lu.values())

    # -- produce
    delivered = {}  # tag -> (partition, offset) ; tag = key for bad, eventId+kind otherwise
    errors = []

    def on_delivery(tag):
        def cb(err, msg):
            if err is not None:
                errors.append((tag, str(err)))
            else:
                delivered[tag] = (msg.partition(), msg.offset())
        return cb

    producer = Producer({
        "bootstrap.servers": BOOTSTRAP,
        "client.id": "bp-e2e-independent",
        "acks": "all",
        "linger.ms": 5,
        # keeps each player's (= partition's) order even when librdkafka retries
        "max.in.flight.requests.per.connection": 1,
    })

    def send(batch):
        for kind, item in batch:
            if kind == "bad":
                key, _, value = item
                tag = key
            else:
                eid, pid, _, _, value = item
                key = pid
                tag = f"{kind}:{eid}"
            while True:
                try:
                    producer.produce(TOPIC_XP, key=key.encode(), value=value, on_delivery=on_delivery(tag))
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)

    t_start = time.time()
    send(phase1)
    left = producer.flush(30)
    time.sleep(1.0)
    send(phase2)
    left += producer.flush(30)
    t_produced = time.time()
    n_msgs = len(phase1) + len(phase2)
    check(f"produced {n_msgs} messages to {TOPIC_XP} with confluent-kafka",
          left == 0 and not errors and len(delivered) == n_msgs,
          f"{left} undelivered, errors {errors[:3]}, delivered {len(delivered)}")
    if left or len(delivered) < n_msgs - len(bad):
        finish()

    # -- auth and error shape (independent of processing)
    p0 = players[0]
    status, ct, body = http_get(progress_path(p0))
    check("no token → 401 application/problem+json", is_problem(status, ct, body, 401),
          f"{status} {ct} {body[:200]!r}")
    status, ct, body = http_get(progress_path(p0), token(p0, "player", secret=SECRET + "-wrong"))
    check("token signed with another secret → 401 problem", is_problem(status, ct, body, 401),
          f"{status} {ct} {body[:200]!r}")
    status, ct, body = http_get(progress_path(p0), token(p0, "player", exp_in=-120))
    check("expired token → 401 problem", is_problem(status, ct, body, 401), f"{status} {ct} {body[:200]!r}")
    status, ct, body = http_get(progress_path(p0), token(p0, "player", with_exp=False))
    check("token without exp → 401 problem", is_problem(status, ct, body, 401), f"{status} {ct} {body[:200]!r}")
    status, ct, body = http_get(progress_path(players[1]), token(p0, "player"))
    check("player token for another player → 403 problem", is_problem(status, ct, body, 403),
          f"{status} {ct} {body[:200]!r}")

    # -- poll progress until every player's totalXp matches the oracle
    print(f"  waiting up to {TIMEOUT:.0f}s for {N_PLAYERS} players' totals to converge")
    deadline = time.time() + TIMEOUT
    pending = set(players)
    over = {}
    last = {}
    t_conv = None
    while True:
        for pid in sorted(pending):
            status, ct, body = http_get(progress_path(pid), svc)
            got = json_body(body) if status == 200 else None
            last[pid] = (status, ct, got if got is not None else body[:200])
            if isinstance(got, dict) and got.get("totalXp") == total[pid]:
                pending.discard(pid)
            elif isinstance(got, dict) and isinstance(got.get("totalXp"), int) and got["totalXp"] > total[pid]:
                over[pid] = got["totalXp"]
        if not pending:
            t_conv = time.time()
            break
        if time.time() > deadline:
            break
        time.sleep(0.5)
    conv_s = (t_conv - t_start) if t_conv else None
    check("no player's totalXp ever exceeded the oracle (no double counting)", not over,
          ", ".join(f"{p}: {v} > {total[p]}" for p, v in sorted(over.items())[:5]))
    check(f"all {N_PLAYERS} players' totalXp converged within {TIMEOUT:.0f}s", not pending,
          f"{len(pending)} pending, e.g. " + "; ".join(
              f"{p}: want {total[p]}, got {last.get(p)}" for p in sorted(pending)[:3]))

    # settle, then read everything once more: nothing late (e.g. a duplicate) may change it
    time.sleep(2.0)
    wrong = []
    ctype_bad = []
    for pid in players:
        status, ct, body = http_get(progress_path(pid), svc)
        got = json_body(body) if status == 200 else None
        if status == 200 and media_type(ct) != "application/json":
            ctype_bad.append(f"{pid}: {ct}")
        want = dict(final[pid], playerId=pid, seasonId=season_id)
        if not isinstance(got, dict):
            wrong.append(f"{pid}: status {status} {body[:120]!r}")
            continue
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if diff:
            wrong.append(f"{pid}: " + ", ".join(f"{k} got {g!r} want {w!r}" for k, (g, w) in diff.items()))
    check(f"progress of all {N_PLAYERS} players (totalXp, currentLevel, currentXp, xpToNextLevel, "
          "playerId, seasonId) equals the oracle", not wrong, "; ".join(wrong[:5]))
    check("progress replies are application/json", not ctype_bad, "; ".join(ctype_bad[:3]))
    heavy = max(players, key=lambda p: total[p])
    status, ct, body = http_get(progress_path(heavy), token(heavy, "player"))
    got = json_body(body) if status == 200 else None
    check("player token for himself → 200 with his progress",
          isinstance(got, dict) and got.get("totalXp") == total[heavy]
          and got.get("currentLevel") == final[heavy]["currentLevel"], f"{status} {body[:200]!r}")
    # malformed events with a well-formed playerId must not have added XP
    for key in (f"{PREFIX}bad-{n}" for n in (1, 2, 3, 4, 5, 10)):
        status, ct, body = http_get(progress_path(key), svc)
        got = json_body(body)
        ok = (status == 200 and isinstance(got, dict) and got.get("totalXp") == 0
              and got.get("currentLevel") == 1) or is_problem(status, ct, body, 404)
        check(f"no XP for rejected events of {key}", ok, f"{status} {body[:200]!r}")

    # -- consume level-ups and the DLQ from the beginning
    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": f"bp-e2e-independent-{RUN_HEX}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "client.id": "bp-e2e-independent",
    })
    md = consumer.list_topics(timeout=10)
    tps = []
    for t in (TOPIC_LEVELUP, TOPIC_DLQ):
        tm = md.topics.get(t)
        if not check(f"topic {t} exists", tm is not None and tm.error is None and tm.partitions,
                     f"{tm.error if tm else 'missing'}"):
            continue
        tps += [TopicPartition(t, p, confluent_kafka.OFFSET_BEGINNING) for p in sorted(tm.partitions)]
    consumer.assign(tps)

    lu_ids = {p: set() for p in players}
    lu_msgs = 0
    lu_framing_bad, lu_decode_bad, lu_field_bad, lu_strict_bad, lu_foreign = [], [], [], [], []
    dlq = {}  # key -> list of (value, headers dict)
    dlq_valid = []
    bad_keys = {k for k, _, _ in bad}
    player_set = set(players)
    want_ids = {p: {f"levelup:{season_id}:{p}:{n}" for n in expected_lu[p]} for p in players}

    def satisfied():
        return (all(lu_ids[p] >= want_ids[p] for p in players) and bad_keys <= set(dlq))

    print(f"  consuming {TOPIC_LEVELUP} and {TOPIC_DLQ} (up to {TIMEOUT:.0f}s)")
    deadline = time.time() + TIMEOUT
    done_at = None
    while time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            if done_at is None and satisfied():
                done_at = time.time()
            if done_at is not None and time.time() - done_at > 3:  # drained quietly for 3 s
                break
            continue
        if msg.error():
            if msg.error().code() != confluent_kafka.KafkaError._PARTITION_EOF:
                print(f"    consumer error: {msg.error()}")
            continue
        key = (msg.key() or b"").decode("utf-8", "replace")
        value = msg.value() or b""
        if msg.topic() == TOPIC_DLQ:
            if key in bad_keys:
                dlq.setdefault(key, []).append((value, {k: (v or b"") for k, v in (msg.headers() or [])}))
            elif key in player_set:
                dlq_valid.append((key, msg.partition(), msg.offset(),
                                  dict(msg.headers() or []).get("error", b"")[:200]))
            continue
        # level-ups: strict for our players, tolerant with other runs' messages
        mine = key.startswith(PREFIX)
        if len(value) < 5 or value[0] != 0 or struct.unpack(">I", value[1:5])[0] != lu_id:
            if mine:
                lu_framing_bad.append(f"{key}@{msg.partition()}:{msg.offset()} {value[:8].hex()}")
            continue
        try:
            lu = avro_decode(lu_schema, value[5:])
        except Exception as e:  # noqa: BLE001 - any decoder failure is the finding
            if mine:
                lu_decode_bad.append(f"{key}@{msg.partition()}:{msg.offset()}: {e!r}")
            continue
        pid = lu.get("playerId", "")
        if not mine and not str(pid).startswith(PREFIX):
            continue
        if pid not in player_set or key != pid:
            lu_foreign.append(f"key {key!r}, playerId {pid!r}, eventId {lu.get('eventId')!r}")
            continue
        lu_msgs += 1
        lu_ids[pid].add(lu["eventId"])
        nl = lu["newLevel"]
        problems = []
        if lu["eventId"] != f"levelup:{season_id}:{pid}:{nl}":
            problems.append(f"eventId {lu['eventId']!r} for newLevel {nl}")
        if lu["previousLevel"] != nl - 1:
            problems.append(f"previousLevel {lu['previousLevel']} newLevel {nl}")
        if lu["seasonId"] != season_id:
            problems.append(f"seasonId {lu['seasonId']!r}")
        if not (curve.xp_total.get(nl, 1 << 62) <= lu["totalXp"] <= total[pid]):
            problems.append(f"totalXp {lu['totalXp']} for level {nl} (final total {total[pid]})")
        if problems:
            lu_field_bad.append(f"{pid}: " + ", ".join(problems))
        exp = expected_lu[pid].get(nl)
        if exp is not None:
            got = (lu["causeEventId"], lu["totalXp"], dt_to_ms(lu["occurredAt"]))
            if got != exp:
                lu_strict_bad.append(f"{pid} level {nl}: (causeEventId, totalXp, occurredAt) "
                                     f"got {got} want {exp}")
    consumer.close()

    check(f"level-ups framed 0x00 + schema id {lu_id} (battlepass.level-ups-value)", not lu_framing_bad,
          "; ".join(lu_framing_bad[:3]))
    check("level-ups decode with Apache Avro's DatumReader", not lu_decode_bad, "; ".join(lu_decode_bad[:3]))
    check("level-ups are keyed by their playerId and belong to this run's players", not lu_foreign,
          "; ".join(lu_foreign[:3]))
    missing = {p: sorted(want_ids[p] - lu_ids[p]) for p in players if want_ids[p] - lu_ids[p]}
    extra = {p: sorted(lu_ids[p] - want_ids[p]) for p in players if lu_ids[p] - want_ids[p]}
    check(f"each player's distinct LevelUp eventIds are exactly levelup:<season>:<player>:2..final "
          f"({n_levelups} expected)", not missing and not extra,
          f"missing {sum(map(len, missing.values()))} (of {len(missing)} players) e.g. "
          f"{[i for v in missing.values() for i in v][:3]}; unexpected {sum(map(len, extra.values()))} e.g. "
          f"{[i for v in extra.values() for i in v][:3]}")
    check("level-ups: previousLevel = newLevel-1, seasonId, xpTotal[newLevel] <= totalXp <= final total",
          not lu_field_bad, "; ".join(lu_field_bad[:3]))
    check("level-ups: causeEventId, totalXp and occurredAt are those of the event that crossed the level",
          not lu_strict_bad, "; ".join(lu_strict_bad[:3]))

    # -- DLQ
    for key, desc, value in bad:
        got = dlq.get(key)
        if not got:
            check(f"DLQ has {desc} ({key})", False, "not found")
            continue
        part, off = delivered.get(key, (None, None))
        problems = []
        v, h = got[0]
        if v != value:
            problems.append(f"value differs from the original bytes ({len(v)} vs {len(value)} bytes)")
        err = h.get("error", b"").decode("utf-8", "replace")
        if not err:
            problems.append("header error missing or empty")
        if h.get("source-topic", b"").decode("utf-8", "replace") != TOPIC_XP:
            problems.append(f"source-topic {h.get('source-topic')!r}")
        if h.get("source-partition", b"").decode("ascii", "replace").strip() != str(part):
            problems.append(f"source-partition {h.get('source-partition')!r}, broker said {part}")
        if h.get("source-offset", b"").decode("ascii", "replace").strip() != str(off):
            problems.append(f"source-offset {h.get('source-offset')!r}, broker said {off}")
        check(f"DLQ has {desc} ({key}) with original bytes and headers [error: {err[:60]}]",
              not problems, "; ".join(problems))
    check("no valid event of this run is in the DLQ", not dlq_valid,
          "; ".join(f"{k}@{p}:{o} error {e!r}" for k, p, o, e in dlq_valid[:3]))

    # -- summary
    n_unique = N_EVENTS
    n_dups = len(dup_idx)
    print("summary:")
    print(f"  events sent: {n_unique} unique + {n_dups} duplicates + {len(bad)} malformed "
          f"= {n_msgs} messages, {N_PLAYERS} players, {sum(total.values())} XP in all, "
          f"max level {max(f['currentLevel'] for f in final.values())}")
    print(f"  produce took {t_produced - t_start:.2f}s (incl. 1 s pause before the late duplicates)")
    if conv_s is not None:
        print(f"  totals converged {conv_s:.2f}s after the first message was produced, "
              f"{t_conv - t_produced:.2f}s after the last ({n_unique / conv_s:.0f} events/s end to end, "
              "incl. the 1 s pause and HTTP polling)")
    else:
        print(f"  totals did not converge within {TIMEOUT:.0f}s")
    print(f"  level-ups: {n_levelups} expected, {sum(len(s) for s in lu_ids.values())} distinct seen "
          f"in {lu_msgs} messages; DLQ: {sum(1 for k in bad_keys if k in dlq)}/{len(bad)} malformed found")
    finish()


if __name__ == "__main__":
    main()
