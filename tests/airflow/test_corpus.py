"""Golden corpus: what the bridge returns for real 3.2.x/3.3.x serde equals the native 3.1.x reader.

Fixtures are recorded by ``tools/record_corpus.py`` from the real task-sdk writers and a real
3.1.8 reader: ``serde_json`` is the text a 3.2 writer stored, ``legacy`` what 3.1.8 stores for the
same value, ``native`` the description of what 3.1.8 returns for it. ``make test`` runs this file
under several 3.1.x readers, and they do not all agree with 3.1.8 (the 3.1.0-3.1.5 venvs, with an
older kubernetes client, describe the same V1Pod differently), so the oracle is computed live: this
reader's own decode of ``legacy`` with the bridge off. Each 3.1.x tested decodes its own encoding of
every corpus value exactly as it decodes 3.1.8's ``legacy`` (checked when the readers were added,
from ``tools/corpus_values.py``); on the recording reader the live oracle must equal ``native``.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from typed import describe

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "corpus").glob("sdk-*.json"))

#: Values whose 3.2 encoding lost what 3.1.8 kept: the bridge cannot recover it. Each entry is
#: asserted to still differ, so the list cannot silently go stale.
LOSSY = {
    "decimal_trailing_zero": "serde stores Decimal('1.50') as the float 1.5; 3.1.8 stored '1.50'",
    "numpy_complex128": "serde stores complex as float(value), dropping the imaginary part",
    # A user dict whose keys are exactly __type/__var is read as a legacy envelope, as 3.2
    # itself reads it (serde's _convert): parity with 3.2, not with 3.1.8's str keys.
    "dict_legacy_lookalike_dict": "user dict shaped like a legacy envelope is unwrapped (3.2 does the same)",
    "dict_legacy_lookalike_tuple": "user dict shaped like a legacy envelope is decoded (3.2 does the same)",
}

#: Values the bridge refuses with UnsupportedPayload (3.1.8's allow-list, or no decoder).
REFUSED = {
    "dataclass_user": "corpus_values.* is outside 3.1.8's default allow-list (airflow.*)",
    "attrs_user": "corpus_values.* is outside 3.1.8's default allow-list (airflow.*)",
    "pydantic_user": "corpus_values.* is outside 3.1.8's default allow-list (airflow.*)",
    "k8s_v1resource_requirements": "3.1.8's serde has no kubernetes deserializer",
}


def _cases():
    for path in FIXTURES:
        data = json.loads(path.read_text())
        writer = data["writer"]["task_sdk"]
        for case in data["cases"]:
            case = {**case, "_writer": writer}
            yield pytest.param(case, id=_id(case))


def _id(case):
    return f"sdk{case['_writer']}-{case['id']}"


ALL = list(_cases())
CORE = metadata.version("apache-airflow-core")


def _native_here(legacy):
    """What a never-upgraded copy of this reader returns for the value: its own decode, no bridge."""
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    assert not airflow_serde_compat.is_active()
    return describe(BaseSerialization.deserialize(legacy))


@pytest.fixture(scope="module")
def native():
    """case id (with writer) -> this reader's native description, computed before any bridge test."""
    return {p.id: _native_here(p.values[0]["legacy"]) for p in ALL if "legacy" in p.values[0]}


def test_live_oracle_is_the_recording_on_the_recording_reader(native):
    recorded_by = {json.loads(p.read_text())["reader"]["airflow_core"] for p in FIXTURES}
    differ = sorted(i for i, p in ((p.id, p) for p in ALL) if i in native and native[i] != p.values[0]["native"])
    if CORE in recorded_by:
        assert differ == [], differ
    else:
        # Another 3.1.x may describe a value differently, never decode it to another type.
        types = {p.id: p.values[0]["native"]["t"] for p in ALL if p.id in native}
        assert {i: native[i]["t"] for i in differ} == {i: types[i] for i in differ}


def test_corpus_is_recorded_from_both_writer_lines():
    writers = {json.loads(p.read_text())["writer"]["task_sdk"][:3] for p in FIXTURES}
    assert {"1.2", "1.3"} <= writers
    assert len(ALL) >= 200


@pytest.mark.parametrize("case", ALL)
def test_bridge_reads_3_2_payload_as_native_3_1_x(case, native, bridge):
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    assert "skipped" not in case, f"re-record the corpus with every library: {case['skipped']}"
    if "serde_error" in case or "legacy_error" in case:
        assert "serde_json" not in case or "native" not in case
        return  # the 3.2 writer or 3.1.x itself refused the value: there is nothing to bridge
    payload = json.loads(case["serde_json"])
    if case["id"] in REFUSED:
        with pytest.raises(UnsupportedPayload) as info:
            BaseSerialization.deserialize(payload)
        assert "$" in str(info.value)
        return
    got = describe(BaseSerialization.deserialize(payload))
    expected = native[_id(case)]
    if case["id"] in LOSSY:
        assert got != expected, f"{case['id']} now matches native: remove it from LOSSY"
    else:
        assert got == expected


LEGACY = [p for p in ALL if "legacy" in p.values[0]]


@pytest.mark.parametrize("case", LEGACY)
def test_legacy_payloads_decode_exactly_as_without_the_bridge(case, native, bridge):
    from airflow.serialization.serialized_objects import BaseSerialization

    assert describe(BaseSerialization.deserialize(case["legacy"])) == native[_id(case)]


def test_every_lossy_or_refused_case_exists():
    ids = {p.values[0]["id"] for p in ALL}
    assert set(LOSSY) <= ids and set(REFUSED) <= ids


@pytest.mark.parametrize("case", [p for p in ALL if "serde_json" in p.values[0] and p.values[0]["id"] not in REFUSED])
def test_rewrite_writes_what_3_1_x_writes_for_every_bridged_corpus_value(case, bridge):
    """rewrite's plain serializer on the bridge's objects equals this reader's own serialize."""
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.rewrite.plain_serialize import plain_serializer

    plain = plain_serializer(BaseSerialization.serialize)
    assert plain is not BaseSerialization.serialize
    value = BaseSerialization.deserialize(json.loads(case["serde_json"]))
    assert json.dumps(plain(value)) == json.dumps(BaseSerialization.serialize(value))


def _long_way(payload, trigger_kwargs):
    """What rewrite stores without stored_by_31: the bridge's decode, then this reader's writer."""
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.patch import reading_trigger_kwargs

    if trigger_kwargs:
        with reading_trigger_kwargs():
            value = BaseSerialization.deserialize(payload)
    else:
        value = BaseSerialization.deserialize(payload)
    return json.dumps(BaseSerialization.serialize(value))


#: Corpus values stored_by_31 must decide itself (as the top's one kwarg): the kinds 3.2 rows hold
#: most. Asserted, so that "it stepped aside" cannot quietly become the answer for everything.
DECIDED = {
    "none", "bool_true", "int_big_10_30", "float_negative_zero", "float_nan", "float_ninf", "str_unicode",
    "dict_empty", "dict_nested", "dict_int_keys", "dict_legacy_lookalike_unknown", "dict_serde_lookalike_version",
    "list_of_dicts", "tuple_empty", "tuple_nested", "namedtuple_point", "set_int", "set_str", "set_empty",
    "dict_in_tuple_in_list", "datetime_naive", "datetime_utc", "datetime_fixed_offset", "datetime_zoneinfo_new_york",
    "datetime_pre_epoch_utc", "pendulum_utc", "pendulum_paris", "pendulum_naive", "date_std", "timedelta_hours",
    "timedelta_microseconds", "timedelta_negative", "timedelta_large", "zoneinfo_new_york",
    "decimal_fractional", "uuid", "uuid_in_dict", "numpy_int64", "numpy_float64", "next_kwargs_empty",
    "trigger_kwargs_datetime_trigger", "next_kwargs_trigger_timeout", "next_kwargs_with_event", "event_payload",
}


@pytest.mark.parametrize("trigger_kwargs", [False, True], ids=["next_kwargs", "trigger_kwargs"])
@pytest.mark.parametrize("case", [p for p in ALL if "serde_json" in p.values[0] and p.values[0]["id"] not in REFUSED])
def test_stored_by_31_is_this_readers_writer_on_the_bridged_value(case, trigger_kwargs, bridge):
    """rewrite's shortcut (JSON to JSON) stores what the long way stores, or steps aside."""
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_by_31

    payload = {"value": json.loads(case["serde_json"])}
    long_way = _long_way(payload, trigger_kwargs)
    try:
        written = stored_by_31(payload, enum_keys=trigger_kwargs)
    except Fallback:
        assert case["id"] not in DECIDED
        return
    assert json.dumps(written) == long_way
    if case["id"].startswith(("next_kwargs", "trigger_kwargs", "event")):
        # the real rows are kwargs themselves: as the top, too
        top = json.loads(case["serde_json"])
        if top.__class__ is dict:
            assert json.dumps(stored_by_31(top, enum_keys=trigger_kwargs)) == _long_way(top, trigger_kwargs)


def test_stored_by_31_decides_the_common_kinds():
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_by_31

    decided = set()
    for param in ALL:
        case = param.values[0]
        if "serde_json" in case:
            try:
                stored_by_31({"value": json.loads(case["serde_json"])})
                decided.add(case["id"])
            except Fallback:
                pass
    assert DECIDED <= decided, sorted(DECIDED - decided)


def test_rewrite_takes_stored_by_31_only_where_it_agrees_with_this_reader(bridge, monkeypatch):
    from airflow_serde_compat.rewrite import writers

    assert writers.Airflow31Writer()._direct, "stored_by_31 disagrees with this reader on the writer's sample"
    monkeypatch.setattr(writers, "stored_by_31", lambda payload, **kw: {"__var": {}, "__type": "dict"})
    assert not writers.Airflow31Writer()._direct


@pytest.mark.parametrize("read_back", [False, True])
def test_a_trigger_kwarg_with_a_type_key_stays_under_the_bridge_either_way(bridge, read_back):
    from airflow_serde_compat.rewrite.writers import Airflow31Writer, CannotRewrite
    from airflow_serde_compat.scan.columns import COLUMNS

    column = next(c for c in COLUMNS if c.name == "trigger.kwargs")
    writer = Airflow31Writer()
    with pytest.raises(CannotRewrite, match="__type key"):
        writer.new_values(column, {"k": {"__type": "x", "v": 1}}, {}, read_back=read_back)
    # kwargs that are not a dict: the same reason both ways (found by an attack on the short way)
    for top, kind in (({"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1]}, "tuple"),
                      ({"Encoding.TYPE": "set", "Encoding.VAR": ["a"]}, "set"),
                      ({"__classname__": "uuid.UUID", "__version__": 1,
                        "__data__": "12345678-1234-5678-1234-567812345678"}, "str")):
        with pytest.raises(CannotRewrite, match=f"trigger kwargs decode to {kind}, not a dict"):
            writer.new_values(column, top, {}, read_back=read_back)
    # and its neighbour without one is rewritten, the short way when it may
    new, parsed = writer.new_values(column, {"k": {"x": "__type", "v": 1}}, {}, read_back=read_back)
    assert json.loads(new["kwargs"]) == {"__var": {"k": {"__var": {"x": "__type", "v": 1}, "__type": "dict"}},
                                         "__type": "dict"}
