"""Property: for generated values v, bridge(serde_3.2.1(v)) == native_3.1.x(legacy(v)).

The 3.2 side is the real task-sdk 1.2.1 ``serialize``, run in its own venv behind a pipe; the
3.1.x side is this process's real Airflow (3.1.8, or another reader under ``make test-readers``)
with the bridge off. Profile ``ci`` runs 10,000 examples (``HYPOTHESIS_PROFILE=ci``, set by
``make test`` for 3.1.8), ``readers`` 200 for each other reader.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import hashables, kwargs, leaves
from typed import describe

settings.register_profile("ci", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("readers", max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("dev", max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ROOT = Path(__file__).resolve().parents[2]


class Writer:
    def __init__(self) -> None:
        venv = subprocess.run(
            [str(ROOT / "tools" / "venvs.sh"), "321"], check=True, capture_output=True, text=True
        ).stdout.strip()
        env = {**os.environ, "TZ": os.environ.get("TZ", "UTC")}
        env.pop("AIRFLOW_SERDE_COMPAT", None)
        self.proc = subprocess.Popen(
            [f"{venv}/bin/python", str(Path(__file__).with_name("serde_writer.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def __call__(self, value):
        data = pickle.dumps(value)
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()
        status = self.proc.stdout.read(1)
        size = struct.unpack(">I", self.proc.stdout.read(4))[0]
        text = self.proc.stdout.read(size).decode()
        if status != b"O":
            raise ValueError(text)
        return text

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def writer_321():
    os.environ.setdefault("TZ", "UTC")
    writer = Writer()
    yield writer
    writer.close()


def native_31x(value):
    """What a never-upgraded copy of this reader returns: its own encoding, through JSON, decoded unbridged."""
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    assert not airflow_serde_compat.is_active()
    stored = json.loads(json.dumps(BaseSerialization.serialize(value)))
    return describe(BaseSerialization.deserialize(stored))


def bridged(stored_text):
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    airflow_serde_compat.activate()
    try:
        return describe(BaseSerialization.deserialize(json.loads(stored_text)))
    finally:
        airflow_serde_compat.deactivate()


@given(kwargs)
def test_bridge_of_3_2_1_serde_equals_native_3_1_x(writer_321, value):
    # The writer gets the value as a pickle, and pendulum's pickle drops fold=1 (the second
    # 01:30 of a DST end, found by hypothesis on Australia/Lord_Howe): both sides take that value.
    value = pickle.loads(pickle.dumps(value))
    expected = native_31x(value)
    assert bridged(writer_321(value)) == expected


@given(kwargs)
def test_legacy_payloads_read_identically_with_the_bridge(value):
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    stored = json.loads(json.dumps(BaseSerialization.serialize(value)))
    expected = describe(BaseSerialization.deserialize(stored))
    airflow_serde_compat.activate()
    try:
        assert describe(BaseSerialization.deserialize(stored)) == expected
    finally:
        airflow_serde_compat.deactivate()


# --- rewrite's plain serializer: 3.1's own serialize, node for node ------------------------------

keyed_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        # Non-str keys too: 3.1 stores str(key), and a key class it does not know goes to its code.
        st.dictionaries(st.one_of(hashables, st.floats(), st.dates(), st.uuids()), children, max_size=4),
        st.sets(st.one_of(hashables, st.floats(allow_nan=False)), max_size=4),
        st.frozensets(st.integers(0, 7), max_size=4),
    ),
    max_leaves=20,
)


def _plain():
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.rewrite.plain_serialize import plain_serializer

    plain = plain_serializer(BaseSerialization.serialize)
    assert plain is not BaseSerialization.serialize, "the plain serializer's self-check failed on this 3.1.x"
    return plain, BaseSerialization.serialize


@given(keyed_values)
def test_plain_serializer_writes_what_3_1_x_serialize_writes(value):
    plain, serialize = _plain()
    assert json.dumps(plain(value)) == json.dumps(serialize(value))


@settings(max_examples=min(settings().max_examples, 1_000))  # the 3.2.1 writer is a pipe away: 15 ms each
@given(kwargs)
def test_plain_serializer_on_what_the_bridge_decodes_from_3_2_1(writer_321, value):
    """What rewrite serializes: the bridge's objects for a real 3.2.1 row."""
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    plain, serialize = _plain()
    airflow_serde_compat.activate()
    try:
        decoded = BaseSerialization.deserialize(json.loads(writer_321(pickle.loads(pickle.dumps(value)))))
    finally:
        airflow_serde_compat.deactivate()
    assert json.dumps(plain(decoded)) == json.dumps(serialize(decoded))
