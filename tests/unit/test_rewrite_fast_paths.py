"""rewrite's shortcuts decide nothing themselves: each is exactly the slow path it replaces."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_serde_compat.rewrite.backup import fingerprint, fingerprint_of_dumped
from airflow_serde_compat.rewrite.plain_serialize import _encoder, plain_serializer
from airflow_serde_compat.scan.classify import has_19_digits

numbers = st.one_of(
    st.integers(),  # beyond 64 bits too: orjson reads those as floats
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 10**30).map(lambda n: f"{n}e{n % 700 - 350}"),
    st.integers(0, 10**25).map(lambda n: f"-{n}.{n % 997}"),
)
def _as_text(value):
    # numbers given as spellings go into the text unquoted
    return json.dumps(value).replace('"\\u0000', "").replace('\\u0000"', "")


spelled = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=8), numbers.map(lambda n: f"\x00{n}\x00" if isinstance(n, str) else n)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)),
    max_leaves=12,
).map(_as_text)


@settings(max_examples=3_000)
@given(spelled)
def test_orjson_reads_what_json_reads_unless_19_digits_are_in_a_row(text):
    try:
        fast = orjson.loads(text)
    except orjson.JSONDecodeError:
        return  # rewrite then parses with json, as before
    if has_19_digits(text):
        return
    slow = json.loads(text)
    assert fast == slow and repr(fast) == repr(slow)


def test_the_19_digit_rule_catches_what_orjson_reads_otherwise():
    for text in ('{"n": 18446744073709551616}', '[-9223372036854775809]', '{"x": "ok", "n": 10000000000000000000000}'):
        assert orjson.loads(text) != json.loads(text) or repr(orjson.loads(text)) != repr(json.loads(text))
        assert has_19_digits(text)
    assert not has_19_digits('{"when": 1904296089.0, "n": 922337203685477580}')


def test_a_serialize_that_differs_on_the_sample_is_used_as_it_is():
    def reordered(value):  # an Airflow whose envelopes put __type first
        if isinstance(value, dict):
            return {"__type": "dict", "__var": {str(k): reordered(v) for k, v in value.items()}}
        return str(value) if not isinstance(value, (int, float, str, type(None), list)) else value

    assert plain_serializer(reordered) is reordered


def test_a_serialize_that_fails_on_the_sample_is_used_as_it_is():
    def failing(value):
        raise RuntimeError("not this one")

    assert plain_serializer(failing) is failing


def test_unknown_classes_go_to_the_given_serialize():
    seen = []

    def serialize(value):
        seen.append(type(value).__name__)
        return "delegated"

    plain = _encoder(serialize, (dt.datetime,))
    assert plain({"a": frozenset({1}), 1: (b"x",)}) == {
        "__var": {"a": "delegated", "1": {"__var": ["delegated"], "__type": "tuple"}}, "__type": "dict"}
    assert plain({object(): 1}) == "delegated"
    assert seen == ["frozenset", "bytes", "dict"]


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "nan"), (float("-inf"), "-inf"), ({1, "a"}, None), ({3, 1, 2}, [1, 2, 3]),
])
def test_what_3_1_does_for_odd_leaves(value, expected):
    out = _encoder(lambda v: pytest.fail("delegated"), (dt.datetime,))(value)
    if isinstance(value, set):
        assert out["__type"] == "set"
        assert out["__var"] == (expected if expected is not None else list(value))
    else:
        assert out == expected


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)),
    max_leaves=16,
)


@settings(max_examples=3_000)
@given(json_values)
def test_the_fingerprint_of_a_dumped_value_is_the_fingerprint_of_its_text(value):
    text = json.dumps(value)
    parsed = json.loads(text) if has_19_digits(text) else orjson.loads(text)
    assert fingerprint_of_dumped(text, parsed) == fingerprint(text, json_text=True)


def test_a_fingerprint_it_cannot_vouch_for_comes_from_the_text():
    assert fingerprint_of_dumped("[NaN]", [float("nan")]) == fingerprint("[NaN]", json_text=True)
    assert fingerprint_of_dumped('{"a": 1}', {"a": (1,)}) == fingerprint('{"a": 1}', json_text=True)


def test_stored_by_31_steps_aside_for_every_gadget_wherever_it_sits(tmp_path):
    """Gadget envelopes (3.1 would import or call what they name) inside a 3.2 payload are never
    turned into legacy JSON here: the long way refuses them with its reason."""
    import sys

    import gadgets
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_by_31

    def serde(classname, data):
        return {"__classname__": classname, "__version__": 1, "__data__": data}

    hostile = {**gadgets.legacy_gadgets(str(tmp_path)),
               "serde_os_system": serde("os.system", "true"),
               "serde_gadget": serde(f"{gadgets.GADGET_MODULE}.Boom", {}),
               "serde_exec": serde("builtins.exec", f"import {gadgets.GADGET_MODULE}")}
    for name, gadget in hostile.items():
        for payload in ({"k": gadget}, {"k": {"inner": gadget}}, {"k": serde("builtins.tuple", [1, gadget])},
                        {"k": {"__type": "dict", "__var": {"x": gadget}}},
                        {"k": {"Encoding.TYPE": "tuple", "Encoding.VAR": [gadget]}}, gadget):
            for enum_keys in (False, True):
                with pytest.raises(Fallback):
                    stored_by_31(payload, enum_keys=enum_keys)
    assert gadgets.GADGET_MODULE not in sys.modules
    assert not list(tmp_path.iterdir())


def test_stored_by_31_steps_aside_for_what_it_does_not_decide():
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_by_31

    def serde(classname, data, version=1):
        return {"__classname__": classname, "__version__": version, "__data__": data}

    for payload in (
        [1], "x", None, {"__type": "dict", "__var": {}},  # not a 3.2 kwargs top
        {"s": serde("builtins.set", [1, "a"])},  # unsortable: 3.1 writes it in hash order
        {"s": serde("builtins.set", [1, 1.0, True])},  # which of the equal ones survives depends on order
        {"z": serde("pendulum.tz.timezone.Timezone", "Europe/Paris")},  # 3.1's own encode_timezone decides
        {"t": serde("datetime.datetime", {"timestamp": 253402300799.0, "tz": None}, 2)},  # year 9999
        {"d": serde("datetime.timedelta", 1e300, 2)},
        {"deep": _nested(300)},  # deeper than the translator's MAX_DEPTH
    ):
        with pytest.raises(Fallback):
            stored_by_31(payload)


def test_what_stored_by_31_decides_is_legacy_throughout_at_any_depth():
    """Its depth limit counts at least as high as the scan's: a row it writes is never one a
    later scan would call 3.2 format for its depth. Past the limit the long way decides."""
    from airflow_serde_compat.rewrite.backup import canonical_value
    from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_and_canonical
    from airflow_serde_compat.translate import MAX_DEPTH, legacy_throughout

    def tuples(depth):
        node = []
        for _ in range(depth):
            node = {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [node, 1.5]}
        return node

    decided = set()
    for depth in [*range(MAX_DEPTH - 12, MAX_DEPTH + 3), *range(MAX_DEPTH // 2 - 3, MAX_DEPTH // 2 + 3)]:
        for inner in (_nested(depth), tuples(depth)):
            try:
                written, canonical = stored_and_canonical({"k": inner})
            except Fallback:
                continue
            assert legacy_throughout(written) and canonical == canonical_value(written)
            decided.add(depth)
    assert MAX_DEPTH // 2 - 3 in decided and MAX_DEPTH - 12 in decided


def _nested(depth):
    node = []
    for _ in range(depth):
        node = [node]
    return node


_tricky = st.sampled_from(["\x00", "\n", "\x1f", " ", '"', "\\", "/", "~", "\x7f", "\x80", "\u00e9", "\u2028",
                           "\ud800", "\udfff", "\U0001f600"])
canonical_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.text(_tricky, max_size=4),
              st.sampled_from(["\x00n1.5", "\x00n-1E+30", "\x00cNaN"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=4), st.text(_tricky, max_size=3)), children,
                                               max_size=4)),
    max_leaves=16,
)


@settings(max_examples=3_000)
@given(canonical_values)
def test_a_fingerprint_hashes_the_bytes_json_writes_whoever_writes_them(value):
    """Backups of earlier versions hold fingerprints of json's bytes: orjson's are only taken where equal."""
    from airflow_serde_compat.rewrite.backup import _sorted_compact

    assert _sorted_compact(value) == json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def test_a_fingerprint_is_sha256_of_the_sorted_compact_json_with_numbers_by_value():
    import hashlib

    text = '{"b": 1.50, "a": ["\\u00e9", "\\u007f", "x"], "c": {"z": 1e2, "y": [true, null]}}'
    canonical = {"a": ["\u00e9", "\x7f", "x"], "b": "\x00n1.5", "c": {"y": [True, None], "z": "\x00n1E+2"}}
    expected = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert fingerprint(text, json_text=True) == expected
    deep = "[" * 300 + "]" * 300  # beyond orjson's depth: json writes it
    assert fingerprint(deep, json_text=True) == hashlib.sha256(deep.encode()).hexdigest()


written_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.text(_tricky, max_size=4), st.integers(),
              st.floats(), st.sampled_from([10**30, -0.0, 1e16, 1e-7, float("nan"), float("-inf")])),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=4), st.text(_tricky, max_size=3), st.integers(), st.floats(),
                                  st.booleans(), st.none()), children, max_size=4)),
    max_leaves=16,
)


@settings(max_examples=3_000)
@given(written_values)
def test_the_writers_json_is_json_dumps(value):
    """What rewrite stores must be the text 3.1 stores: json.dumps' own, byte for byte."""
    from airflow_serde_compat.rewrite.writers import _dumps

    assert _dumps(value) == json.dumps(value)


def test_the_writers_json_refuses_what_json_dumps_refuses():
    from airflow_serde_compat.rewrite.writers import _dumps

    for value in ({"a": object()}, {(1,): 2}, {1, 2}):
        with pytest.raises(TypeError):
            json.dumps(value)
        with pytest.raises(TypeError):
            _dumps(value)


json_number_texts = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?\Z"),
    # How PostgreSQL and MySQL spell what Python wrote as 1e-07 or 1.2e+16, and other edges.
    st.sampled_from(["0.0000001", "-0.00000012", "0.000001", "-0.000001", "12345678901234568", "1.50", "100",
                     "-0", "0", "0.0", "1E2", "1e-07", "-1.0", "10.5"]),
)


@settings(max_examples=5_000)
@given(json_number_texts)
def test_a_number_s_fingerprint_form_is_its_normalized_decimal(text):
    """The shortcut for numbers already in normal form gives Decimal's own answer."""
    from decimal import Decimal

    from airflow_serde_compat.rewrite.backup import _EXACT, _number

    assert _number(text) == "\x00n" + str(Decimal(text).normalize(_EXACT))


@settings(max_examples=5_000)
@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.sampled_from([0.0, -0.0, 1.0, 10.0, 180.0, 1904296089.0, 1e15, 1e16, 1e-7, 0.5, -0.5])))
def test_a_python_number_s_fingerprint_form_is_that_of_its_json_text(value):
    from airflow_serde_compat.rewrite.backup import _number, canonical_value

    assert canonical_value([value]) == [_number(json.dumps(value))]
