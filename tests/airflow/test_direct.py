"""The one-walk decode (``_direct``) against the two-walk path it short-cuts: same objects, same counts.

Whenever :mod:`airflow_serde_compat._direct` returns a value, the translator followed by 3.1.8's
own ``deserialize`` must return the same (``describe``-equal) value with the same counts, and
whenever the two-walk path fails, the direct one must not return anything. Checked on the golden
corpus (where it must also really be used, not fall back) and on generated hostile JSON.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_corpus import ALL
from typed import describe

from airflow_serde_compat import _direct, translate


@pytest.fixture(scope="module")
def decode():
    from airflow.serialization import serialized_objects

    from airflow_serde_compat import _patching, patch

    original = _patching.original_of(serialized_objects.BaseSerialization, "deserialize")
    # The wrapper uses the direct decode under exactly these two conditions.
    assert patch._branches_inlinable(original)
    found = patch._direct_decoder(serialized_objects, original)
    assert found is not None, "3.1.8's deserialize no longer matches the branches direct builds"
    return found


def two_walks(payload, enum_keys):
    """The path without ``direct``: translate, then 3.1.8 decodes (no bridge in between)."""
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import patch

    assert not airflow_serde_compat.is_active()
    counts: dict[str, int] = {}
    legacy = translate.to_legacy(payload, resolve=patch._resolve_with_airflow, counts=counts, enum_keys=enum_keys)
    return BaseSerialization.deserialize(legacy), counts


def compare(decode, payload, enum_keys=False):
    """True if direct decided the payload; asserts it decided it as the two walks do."""
    try:
        expected, expected_counts = two_walks(payload, enum_keys)
    except Exception:
        expected = failed = True
    else:
        failed = False
    counts: dict[str, int] = {}
    try:
        got = decode(payload, enum_keys, counts)
    except Exception:
        assert counts == {}, "counted before it succeeded"
        return False
    assert not failed, "direct decoded a payload the translator or 3.1.8 refuses"
    assert describe(got) == describe(expected)
    assert counts == expected_counts
    return True


SERDE_TOPS = [
    p for p in ALL
    if "serde_json" in p.values[0]
    and json.loads(p.values[0]["serde_json"]).__class__ is dict
    and not translate.is_legacy_envelope(json.loads(p.values[0]["serde_json"]))
]


def test_direct_decides_most_of_the_corpus_as_the_two_walks_do(decode):
    decided = [p.id for p in SERDE_TOPS if compare(decode, json.loads(p.values[0]["serde_json"]))]
    # Plain values are most of it; the rest (library classes, pods, refusals) fall back.
    assert len(decided) >= len(SERDE_TOPS) // 2, (len(decided), len(SERDE_TOPS))


CLASSNAMES = sorted(translate.SERDE_VERSIONS) + ["corpus_values.Thing", "airflow.sdk.definitions.param.Param"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Nowhere/Atlantis", "", "+05:00"]
LEGACY_TYPES = sorted(translate.LEGACY_TYPES) + ["foo"]

numbers = st.one_of(
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([translate.MAX_TIMESTAMP, translate.MIN_TIMESTAMP, translate.MAX_TIMEDELTA_SECONDS,
                     translate.MAX_TIMESTAMP + 1, -translate.MAX_TIMEDELTA_SECONDS - 1, 86399, 86400, -86400]),
)
leaves = st.one_of(
    st.none(), st.booleans(), numbers, st.text(max_size=6), st.sampled_from(ZONES),
    st.sampled_from(["30", "nan", "1e3", " 7 ", "12345678-1234-5678-1234-567812345678", "2026-03-14"]),
)


def containers(children):
    envelope = st.fixed_dictionaries(
        {"__classname__": st.sampled_from(CLASSNAMES),
         "__version__": st.sampled_from([1, 1, 1, 2, 2, 0, 3, True, "1"]),
         "__data__": st.one_of(children, st.fixed_dictionaries({"timestamp": numbers, "tz": children}))},
        optional={"__type": st.just("dict")},
    )
    legacy = st.fixed_dictionaries({"__type": st.one_of(st.sampled_from(LEGACY_TYPES), st.integers()),
                                    "__var": children})
    enum = st.fixed_dictionaries({"Encoding.TYPE": st.sampled_from(LEGACY_TYPES), "Encoding.VAR": children})
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "__var", "__type", "__classname__"]), children, max_size=3),
        envelope, legacy, enum,
    )


values = st.recursive(leaves, containers, max_leaves=12)
tops = st.dictionaries(st.text(max_size=3), values, max_size=4) | containers(values).filter(
    lambda v: v.__class__ is dict and not translate.is_legacy_envelope(v)
)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(tops, st.booleans())
def test_direct_never_differs_from_the_two_walks(decode, payload, enum_keys):
    compare(decode, payload, enum_keys)


def test_deep_payloads_are_left_to_the_translator(decode):
    payload = leaf = {}
    for _ in range(translate.MAX_DEPTH + 5):
        leaf["a"] = leaf = {}
    with pytest.raises(_direct.Fallback):
        decode(payload, False, {})
    with pytest.raises(translate.UnsupportedPayload, match="nested deeper"):
        two_walks(payload, False)
