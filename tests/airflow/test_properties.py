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
from hypothesis import HealthCheck, event, given, settings
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


# --- rewrite's stored_by_31: 3.1's writer on the bridge's value, computed on the JSON --------------


def _env(classname, data, version=1):
    return {"__classname__": classname, "__version__": version, "__data__": data}


_utc_tz = ["UTC", "pendulum.tz.timezone.Timezone", 1, True]
# Timestamps with every digit a float holds: what rounds to microseconds, and at the half.
timestamps = st.one_of(
    st.floats(-62135596800.0, 253402300799.0),
    st.integers(-(10**12), 10**12).map(lambda n: n / 2_000_000),  # exact halves of a microsecond
    st.integers(-(10**11), 10**11),
    st.sampled_from([float("nan"), float("inf"), 1e300, -1e300]),
)
seconds = st.one_of(
    st.floats(-1e15, 1e15), st.integers(-(10**14), 10**14).map(lambda n: n / 2_000_000),
    st.sampled_from([float("nan"), 1e300, True, "1.5", "x", None]),
)
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
    st.builds(lambda t, tz: _env("pendulum.datetime.DateTime", {"timestamp": t, "tz": tz}, 2),
              timestamps, st.sampled_from([None, _env("builtins.tuple", _utc_tz)])),
    st.builds(lambda t: _env("datetime.datetime", {"timestamp": t, "tz": None}, 2), timestamps),
    st.builds(lambda s: _env("datetime.timedelta", s, 2), seconds),
    st.builds(lambda s: {"__type": "timedelta", "__var": s}, seconds),
    st.builds(lambda u: _env("uuid.UUID", str(u)), st.uuids()),
    st.builds(lambda d: _env("datetime.date", d.isoformat(), 2), st.dates()),
    st.sampled_from([_env("builtins.tuple", "not a list"), _env("datetime.datetime", {}, 9),
                     {"__classname__": "os.system", "__version__": 1, "__data__": "true"},
                     {"__type": "base_trigger", "__var": {"classpath": "os.system", "kwargs": {}}},
                     {"Encoding.TYPE": "datetime", "Encoding.VAR": 1.0000005}, {"__type": "dict", "__var": 1}]),
)
set_items = st.one_of(st.lists(st.text(max_size=2), max_size=5), st.lists(st.integers(-3, 3), max_size=5),
                      st.lists(st.one_of(st.integers(-2, 2), st.floats(-2, 2), st.booleans(), st.text(max_size=1)),
                               max_size=4))
json_payloads = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.lists(children, max_size=3).map(lambda v: _env("builtins.tuple", v)),
        set_items.map(lambda v: _env("builtins.set", v)),
        set_items.map(lambda v: _env("builtins.frozenset", v)),
        st.lists(children, max_size=3).map(lambda v: {"__type": "tuple", "__var": v}),
        st.dictionaries(st.text(max_size=5), children, max_size=3).map(lambda v: {"__type": "dict", "__var": v}),
        set_items.map(lambda v: {"Encoding.TYPE": "set", "Encoding.VAR": v}),
    ),
    max_leaves=12,
)


def _stored_both_ways(payload, trigger_kwargs):
    """(the long way's text or its exception type, stored_by_31's text or None if it stepped aside).
    The bridge is active (the ``bridge`` fixture: once per test, not per example)."""
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.patch import reading_trigger_kwargs
    from airflow_serde_compat.rewrite.backup import canonical_value
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_and_canonical
    from airflow_serde_compat.scan.classify import kwargs_translation
    from airflow_serde_compat.translate import legacy_throughout

    assert airflow_serde_compat.is_active()
    with reading_trigger_kwargs() if trigger_kwargs else _nothing():
        try:
            long_way = json.dumps(BaseSerialization.serialize(BaseSerialization.deserialize(payload)))
        except Exception as err:  # noqa: BLE001 - the long way's refusal is the expected result
            long_way = type(err)
    verdict, legacy = kwargs_translation(payload, enum_keys=trigger_kwargs)
    results = set()
    for given_legacy in (None, legacy):  # as rewrite calls it, with the scan's translation, and without
        try:
            written, canonical = stored_and_canonical(payload, enum_keys=trigger_kwargs, legacy=given_legacy)
        except Fallback:
            results.add(None)
            continue
        # What the backup fingerprints, built in the same walk; and legacy throughout, so that
        # a scan after the rewrite finds the row legacy (the depth limit included).
        assert canonical == canonical_value(written) and legacy_throughout(written)
        results.add(json.dumps(written))
    assert len(results) == 1
    return long_way, results.pop()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@given(st.dictionaries(st.text(max_size=5), json_payloads, max_size=4), st.booleans())
def test_stored_by_31_stores_what_the_long_way_stores_or_steps_aside(bridge, payload, trigger_kwargs):
    """Generated 3.2-shaped JSON, hostile and malformed parts included: where the bridge and 3.1's
    writer refuse, stored_by_31 steps aside; where it decides, its text is theirs."""
    long_way, short = _stored_both_ways(payload, trigger_kwargs)
    event("decided" if short is not None else "stepped aside")
    if short is not None:
        assert short == long_way


@settings(max_examples=min(settings().max_examples, 1_000))  # the 3.2.1 writer is a pipe away
@given(kwargs)
def test_stored_by_31_on_real_3_2_1_rows(writer_321, bridge, value):
    payload = json.loads(writer_321(pickle.loads(pickle.dumps(value))))
    for trigger_kwargs in (False, True):
        long_way, short = _stored_both_ways(payload, trigger_kwargs)
        event("decided" if short is not None else "stepped aside")
        if short is not None:
            assert short == long_way
