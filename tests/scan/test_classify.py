"""Row verdicts without a database (pure, fast)."""

from __future__ import annotations

import zlib

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_serde_compat.scan import classify as sc
from airflow_serde_compat.translate import LEGACY_TYPES, UnsupportedPayload, legacy_throughout, to_legacy

TUPLE = {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}


@pytest.mark.parametrize(
    "payload, fmt, bridge",
    [
        ({"__type": "dict", "__var": {"t": {"__type": "tuple", "__var": [1, 2]}}}, "legacy", None),
        ([1, {"__type": "datetime", "__var": 1.0}], "legacy", None),
        ({}, "serde", "translatable"),
        ({"error": "Trigger timeout"}, "serde", "translatable"),
        ({"t": TUPLE}, "serde", "translatable"),
        # an old worker's legacy payload with a 3.2 value nested inside
        ({"__type": "dict", "__var": {"t": TUPLE}}, "serde", "translatable"),
        ({"p": {"__classname__": "my.Point", "__version__": 0, "__data__": {"x": 1}}}, "serde", "needs_patched_process"),
        ({"t": {**TUPLE, "__version__": 7}}, "serde", "untranslatable"),
        ({"__classname__": "builtins.tuple", "__data__": [1]}, "undecodable", None),
        (None, "null", None),
    ],
)
def test_kwargs_verdict(payload: object, fmt: str, bridge: str | None) -> None:
    verdict = sc.kwargs_verdict(payload)
    assert verdict.format.value == fmt
    assert (verdict.bridge.value if verdict.bridge else None) == bridge


def test_needs_patched_process_names_the_classnames_and_keeps_walking() -> None:
    verdict = sc.kwargs_verdict({"a": {"__classname__": "my.A", "__version__": 0}, "b": {"__classname__": "my.B", "__version__": 0}})
    assert verdict.resolver_classnames == ("my.A", "my.B")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3))
_envelope_type = st.sampled_from(["dict", "tuple", "set", "datetime", "timedelta", "unknown_type", "k8s.V1Pod"])


def _trees(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=3), children, max_size=3),
        st.builds(lambda t, v: {"__type": t, "__var": v}, _envelope_type, children),
        st.builds(lambda v: {"__type": "dict", "__var": v}, st.dictionaries(st.text(max_size=3), children, max_size=3)),
        st.builds(lambda v: {"__classname__": "builtins.tuple", "__version__": 1, "__data__": v}, st.lists(children, max_size=3)),
    )


@settings(max_examples=400, deadline=None)
@given(st.recursive(_leaf, _trees, max_leaves=12))
def test_legacy_fast_path_agrees_with_the_translator(payload: object) -> None:
    """The scan's allocation-free legacy check must say "legacy" exactly when to_legacy
    translates nothing (the definition the bridge uses)."""
    kinds: dict[str, int] = {}
    try:
        to_legacy(payload, resolve=lambda env, path: None, counts=kinds)
        translator_says_legacy = not kinds
    except UnsupportedPayload:
        translator_says_legacy = False
    assert legacy_throughout(payload) == translator_says_legacy
    assert "unknown_type" not in LEGACY_TYPES


def test_trigger_kwargs_reader_plaintext_rotation_and_wrong_key() -> None:
    old, new, other = (Fernet.generate_key().decode() for _ in range(3))
    reader = sc.TriggerKwargsReader([new, old])
    assert reader.text('{"a": 1}') == ('{"a": 1}', None)
    assert reader.text(Fernet(old.encode()).encrypt(b'{"b": 2}').decode()) == (b'{"b": 2}', None)
    text, verdict = reader.text(Fernet(other.encode()).encrypt(b"{}").decode())
    assert text is None and verdict.format is sc.Format.UNDECODABLE
    assert (reader.plaintext, reader.encrypted, reader.decrypted) == (1, 2, 1)
    with pytest.raises(ValueError, match="Fernet key #2 is not") as err:
        sc.TriggerKwargsReader([new, "short"])
    assert "short" not in str(err.value)


def test_deadline_callback_verdicts() -> None:
    native = {"__classname__": "airflow.sdk.definitions.deadline.AsyncCallback", "__version__": 0,
              "__data__": {"path": "m.cb", "kwargs": {"t": TUPLE}}}
    assert sc.deadline_callback_verdict(native).format is sc.Format.LEGACY
    downgraded = {**native, "__data__": {"path": "m.cb", "kwargs": {"__type": "dict", "__var": {"t": {"__type": "tuple", "__var": [1]}}}}}
    verdict = sc.deadline_callback_verdict(downgraded)
    assert (verdict.format, verdict.bridge, verdict.classnames) == (sc.Format.SERDE, sc.Bridge.TRANSLATABLE, ("legacy tuple",))
    assert sc.deadline_callback_verdict({**native, "__data__": {"path": "m.cb", "kwargs": {"__type": "dict", "__var": {"n": 1}}}}).format is sc.Format.LEGACY


def test_serialized_dag_verdicts() -> None:
    legacy = '{"dag": {"timetable": {"__type": "airflow.timetables.simple.NullTimetable", "__var": {}}}}'
    assert sc.serialized_dag_verdict(legacy).format is sc.Format.LEGACY
    alias = '{"dag": {"deadline": [{"__type": "deadline_alert", "__var": {"callback": "{\\"__classname__\\": \\"airflow.sdk.definitions.callback.AsyncCallback\\"}"}}]}}'
    verdict = sc.serialized_dag_verdict(alias)  # SQLite's downgrade stores the parts as JSON strings
    assert (verdict.format, verdict.bridge) == (sc.Format.SERDE, sc.Bridge.TRANSLATABLE)
    doc = '{"dag": {"doc_md": "mapped_argument and airflow.sdk.definitions.callback.X are 3.2 names"}}'
    assert sc.serialized_dag_verdict(doc).format is sc.Format.LEGACY
    text, failed = sc.serialized_dag_payload(None, zlib.compress(legacy.encode()))
    assert failed is None and sc.serialized_dag_verdict(text).format is sc.Format.LEGACY


def test_xcom_verdict_and_json_fallback() -> None:
    assert sc.xcom_verdict('{"__classname__": "uuid.UUID", "__version__": 1, "__data__": "x"}').bridge is sc.Bridge.TRANSLATABLE
    assert sc.xcom_verdict('"uuid.UUID as a plain string"').format is sc.Format.LEGACY
    assert sc.loads_json('{"a": NaN}')["a"] != sc.loads_json('{"a": NaN}')["a"]  # orjson refuses NaN


BIG = 2**64 + 1  # beyond 64 bits: orjson reads it as a float, Airflow's json.loads as the integer


@pytest.mark.parametrize("text", [
    '{"t": {"__classname__": "builtins.tuple", "__version__": %d, "__data__": [1]}}' % BIG,
    '{"s": {"__classname__": "builtins.set", "__version__": 1, "__data__": [%d, %d.0]}}' % (BIG, BIG),
    '{"n": %d, "t": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": []}}' % BIG,
    '{"t": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [-%d]}}' % BIG,
])
@pytest.mark.parametrize("name", ["task_instance.next_kwargs", "trigger.kwargs"])
def test_a_3_2_row_with_an_integer_beyond_64_bits_gets_the_verdict_of_airflows_parse(text, name):
    """What the scan says of such a row (its reason too) and what rewrite converts are what the
    bridge in a component says and converts: it reads Airflow's json.loads parse."""
    import json

    import orjson

    from airflow_serde_compat.scan.columns import COLUMNS

    column = next(c for c in COLUMNS if c.name == name)
    airflows = json.loads(text)
    expected, legacy = sc.kwargs_translation(airflows, enum_keys=name == "trigger.kwargs")
    assert sc.kwargs_translation(orjson.loads(text), enum_keys=name == "trigger.kwargs") != (expected, legacy)
    for given_as in (text, text.encode()):
        verdict, payload = column.classify(given_as)
        assert (verdict, repr(payload)) == (expected, repr(airflows))
        verdict, payload, got = column.translate(given_as)
        assert (verdict, repr(payload), repr(got)) == (expected, repr(airflows), repr(legacy))
