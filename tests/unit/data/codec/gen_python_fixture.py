#!/usr/bin/python3
"""Write xp_event_python.bin: an XpEvent encoded by Apache Avro's Python library (not
avro-c) with schemas/avro/xp_event.avsc, in the Confluent framing, for the interop check of
tests/unit/test_codec_avro.c. Run by hand with Debian's python3-avro:
    /usr/bin/python3 tests/unit/data/codec/gen_python_fixture.py
"""
import datetime
import io
import os
import struct

import avro.io
import avro.schema

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "..", "..", "..")
with open(os.path.join(root, "schemas", "avro", "xp_event.avsc")) as f:
    schema = avro.schema.parse(f.read())

event = {
    "eventId": "evt-python-0001",
    "playerId": "player-42",
    "amount": 1250,
    "reason": "mission_complete",
    # timestamp-millis: Python's avro wants a datetime; 2024-03-01T12:34:56.789Z
    "occurredAt": datetime.datetime(2024, 3, 1, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc),
    "seasonId": "season-2024-1",
    "metadata": {"missionId": "m-7", "matchId": "x\u00e9"},
}
buf = io.BytesIO()
avro.io.DatumWriter(schema).write(event, avro.io.BinaryEncoder(buf))
with open(os.path.join(here, "xp_event_python.bin"), "wb") as f:
    f.write(b"\x00" + struct.pack(">i", 1) + buf.getvalue())
