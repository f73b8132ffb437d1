#!/usr/bin/env python3
"""Rebuild the seed corpora in fuzz/seeds/ from the repository's runbooks and the MM2 vectors.

Run from the repository root: python3 fuzz/seeds/make.py [path/to/shared/mm2]
"""
import json
import pathlib
import struct
import sys

root = pathlib.Path(__file__).resolve().parents[2]
vectors = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else root.parent / "shared" / "mm2")
seeds = root / "fuzz" / "seeds"

plans = seeds / "plan_loader"
plans.mkdir(parents=True, exist_ok=True)
for runbook in sorted((root / "runbooks").glob("*.yaml")):
    (plans / runbook.name).write_bytes(runbook.read_bytes())
# The starter plan with its secrets taken from the fuzz target's fixed environment and file.
starter = (root / "runbooks" / "starter.yaml").read_text()
(plans / "substitutions.yaml").write_text(
    starter.replace(
        '"primary-1.kafka.internal:9092,primary-2.kafka.internal:9092"',
        '"${env:KDR_FUZZ_BOOTSTRAP}"\n    client:\n'
        '      sasl.password: "${env:KDR_FUZZ_SECRET}"\n'
        '      ssl.key.password: "${file:secret}"\n'
        '      sasl.username: "$${env:literal}"',
    )
)


def frame(key, value):
    """One record in mm2_codec's framing: flags, u16 key length, key, u16 value length, value."""
    flags = (key is not None) | (value is not None) << 1
    key, value = key or b"", value or b""
    return bytes([flags]) + struct.pack(">H", len(key)) + key + struct.pack(">H", len(value)) + value


records = seeds / "mm2_codec"
records.mkdir(parents=True, exist_ok=True)
cases = json.loads((vectors / "vectors.json").read_text())
cases += json.loads((vectors / "vectors-decode-behaviour.json").read_text())["cases"]
framed = []
cases = [c for c in cases if c.get("key_hex") is not None or c.get("value_hex") is not None]
for i, case in enumerate(cases):
    key = bytes.fromhex(case["key_hex"]) if case.get("key_hex") is not None else None
    value = bytes.fromhex(case["value_hex"]) if case.get("value_hex") is not None else None
    framed.append(frame(key, value))
    (records / f"vector-{i:02}").write_bytes(framed[-1])
# All records in one run, then the first again as a tombstone: index, view and store together.
first_key = bytes.fromhex(cases[0]["key_hex"])
(records / "all-then-tombstone").write_bytes(b"".join(framed) + frame(first_key, None))
