"""The pure translator: golden shapes from real 3.2.1 rows, refusals, and properties."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_serde_compat import translate
from airflow_serde_compat.translate import UnsupportedPayload, is_legacy_envelope, to_legacy


def env(classname, data, version=1):
    return {"__classname__": classname, "__version__": version, "__data__": data}


# A task_instance.next_kwargs row as PostgreSQL returned it from a real 3.2.1 deferral.
REAL_321_NEXT_KWARGS = {
    "d": {"__data__": 180.0, "__version__": 2, "__classname__": "datetime.timedelta"},
    "s": {"__data__": [3], "__version__": 1, "__classname__": "builtins.set"},
    "t": {"__data__": [1, 2], "__version__": 1, "__classname__": "builtins.tuple"},
    "when": {
        "__data__": {
            "tz": env("builtins.tuple", ["America/New_York", "pendulum.tz.timezone.Timezone", 1, True]),
            "timestamp": 1904296089.0,
        },
        "__version__": 2,
        "__classname__": "pendulum.datetime.DateTime",
    },
    "plain": {"a": [1, {"b": None}]},
}


def test_real_321_row_becomes_the_legacy_3_1_8_would_have_written():
    assert to_legacy(REAL_321_NEXT_KWARGS) == {
        "__type": "dict",
        "__var": {
            "d": {"__type": "timedelta", "__var": 180.0},
            "s": {"__type": "set", "__var": [3]},
            "t": {"__type": "tuple", "__var": [1, 2]},
            "when": {"__type": "datetime", "__var": 1904296089.0},
            "plain": {"__type": "dict", "__var": {"a": [1, {"__type": "dict", "__var": {"b": None}}]}},
        },
    }


def test_empty_dict_is_an_empty_legacy_dict():
    # 3.2.1 stores {} for a deferral without kwargs; bare {} crashes 3.1.8 with KeyError.
    assert to_legacy({}) == {"__type": "dict", "__var": {}}


@pytest.mark.parametrize(
    ("serde", "legacy"),
    [
        (env("builtins.frozenset", [1]), "frozenset({1})"),
        (env("datetime.date", "2024-02-29", 2), "2024-02-29"),
        (env("pendulum.date.Date", "2024-02-29", 2), "2024-02-29"),
        (env("datetime.datetime", {"timestamp": 1.5, "tz": None}, 2), {"__type": "datetime", "__var": 1.5}),
        (env("datetime.datetime", {"timestamp": 1.5, "tz": "EDT"}, 1), {"__type": "datetime", "__var": 1.5}),
        (env("pendulum.tz.timezone.Timezone", "Europe/Paris"), {"__type": "timezone", "__var": "Europe/Paris"}),
        (env("pendulum.tz.timezone.FixedTimezone", 3600), {"__type": "timezone", "__var": 3600}),
        (env("zoneinfo.ZoneInfo", "Asia/Tokyo"), "Asia/Tokyo"),
        (env("decimal.Decimal", 3), "3"),
        (env("decimal.Decimal", 1.5), "1.5"),
        (env("uuid.UUID", "12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (env("numpy.int64", 7), "7"),
        (env("numpy.bool_", True), "True"),
        (env("numpy.float64", 2.5), 2.5),
        (env("kubernetes.client.models.v1_pod.V1Pod", {"metadata": {"name": "p"}}),
         {"__type": "k8s.V1Pod", "__var": {"metadata": {"name": "p"}}}),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_each_classname_becomes_what_3_1_8_stored(serde, legacy):
    assert to_legacy(serde) == legacy


def test_container_envelopes_inside_serde_are_read_as_3_2_reads_them():
    # Airflow 3.2.1's serde unwraps a nested legacy dict and decodes tuple/set/timedelta there.
    mixed = {"old": {"__type": "tuple", "__var": [env("builtins.set", [1])]}, "td": {"__type": "timedelta", "__var": 2}}
    assert to_legacy(mixed) == {
        "__type": "dict",
        "__var": {
            "old": {"__type": "tuple", "__var": [{"__type": "set", "__var": [1]}]},
            "td": {"__type": "timedelta", "__var": 2.0},
        },
    }


def test_a_legacy_row_keeps_its_legacy_envelopes_and_translates_what_is_below_a_bare_dict():
    # A row 3.1 (or an old worker) wrote is 3.1's own data: 3.1 decodes it as without the bridge.
    row = {"__type": "dict", "__var": {"dt": {"__type": "datetime", "__var": 2.0}, "new": {"t": env("builtins.tuple", [1])}}}
    assert to_legacy(row) == {
        "__type": "dict",
        "__var": {
            "dt": {"__type": "datetime", "__var": 2.0},
            "new": {"__type": "dict", "__var": {"t": {"__type": "tuple", "__var": [1]}}},
        },
    }


@pytest.mark.parametrize(
    "legacy_type",
    sorted(translate.LEGACY_TYPES - translate.NESTED_LEGACY_TYPES),
)
def test_other_legacy_envelopes_inside_a_3_2_payload_are_refused(legacy_type):
    # 3.1 would import/construct what they name; 3.2.1 refuses them there too.
    payload = {"event": {"payload": {"__type": legacy_type, "__var": {"x": 1}}}}
    with pytest.raises(UnsupportedPayload, match=f"legacy '{legacy_type}' envelope inside an Airflow 3.2 payload") as info:
        to_legacy(payload)
    assert info.value.path == "$.event.payload"


def test_a_user_dict_that_only_looks_like_an_envelope_stays_a_dict():
    # 3.1.8 would have stored {"__type": "foo", "__var": 1} as a wrapped dict.
    assert to_legacy({"x": {"__type": "foo", "__var": 1}})["__var"]["x"] == {
        "__type": "dict",
        "__var": {"__type": "foo", "__var": 1},
    }


def test_encoding_enum_keys_of_asset_watchers_are_repaired():
    # apache/airflow#65973: what 3.2.0-3.3.0 stored for a Kafka watcher's kwargs.
    row = {
        "topics": ["t"],
        "apply_function_kwargs": {
            "Encoding.VAR": {
                "action_filter": ["create"],
                "data_filter": {"Encoding.VAR": {"BatchId": None}, "Encoding.TYPE": "dict"},
            },
            "Encoding.TYPE": "dict",
        },
        "args": {"Encoding.VAR": [1, 2], "Encoding.TYPE": "tuple"},
        "since": {"Encoding.VAR": 1893456000.0, "Encoding.TYPE": "datetime"},
    }
    counts: dict[str, int] = {}
    assert to_legacy(row, counts=counts, enum_keys=True)["__var"] == {
        "topics": ["t"],
        "apply_function_kwargs": {
            "__type": "dict",
            "__var": {
                "action_filter": ["create"],
                "data_filter": {"__type": "dict", "__var": {"BatchId": None}},
            },
        },
        "args": {"__type": "tuple", "__var": [1, 2]},
        "since": {"__type": "datetime", "__var": 1893456000.0},
    }
    assert counts["Encoding.TYPE"] == 4
    # Elsewhere (next_kwargs, event payloads) such a dict is user data, as 3.1.8 and 3.2.1 read it.
    assert to_legacy(row)["__var"]["args"] == {"__type": "dict", "__var": {"Encoding.VAR": [1, 2], "Encoding.TYPE": "tuple"}}


def test_watcher_kwargs_keep_their_plain_legacy_values_in_trigger_kwargs_only():
    # 3.3.x's encode_trigger wrote one legacy envelope per asset-watcher kwarg, with real keys.
    row = {"since": {"__type": "datetime", "__var": 1.5}, "zone": {"__type": "timezone", "__var": "UTC"}}
    assert to_legacy(row, enum_keys=True)["__var"] == row
    with pytest.raises(UnsupportedPayload, match="legacy 'datetime' envelope inside an Airflow 3.2 payload"):
        to_legacy(row)
    with pytest.raises(UnsupportedPayload, match="legacy 'base_trigger' envelope"):
        to_legacy({"t": {"__type": "base_trigger", "__var": ["os.system", {}]}}, enum_keys=True)


@pytest.mark.parametrize("legacy_type", ["base_trigger", "airflow_exc_ser", "param", "relativedelta", "k8s.V1Pod"])
def test_the_encoding_key_repair_only_builds_plain_values(legacy_type):
    row = {"x": {"Encoding.VAR": {"a": 1}, "Encoding.TYPE": legacy_type}}
    with pytest.raises(UnsupportedPayload, match="only datetime, dict, set, timedelta, timezone, tuple are repaired"):
        to_legacy(row, enum_keys=True)


@pytest.mark.parametrize(
    ("payload", "path", "classname", "words"),
    [
        ({"x": env("my.Thing", {})}, "$.x", "my.Thing", "only be decoded inside a patched"),
        ({"x": env("builtins.tuple", [1], version=2)}, "$.x", "builtins.tuple", "newer serializer"),
        ({"x": [env("datetime.timedelta", "soon", 2)]}, "$.x[0]", "datetime.timedelta", "seconds"),
        ({"x": env("datetime.datetime", {"tz": None}, 2)}, "$.x", "datetime.datetime", "timestamp"),
        ({"x": env("uuid.UUID", "not-a-uuid")}, "$.x", "uuid.UUID", "not a UUID"),
        ({"x": {"__classname__": 3, "__version__": 1}}, "$.x", "<not a class name>", "must be a string"),
        ({"x": {"__classname__": ["a"], "__version__": 1}}, "$.x", "<not a class name>", "must be a string"),
        ({"x": {"__classname__": "a.B", "__version__": "1"}}, "$.x", "a.B", "must be an integer"),
        ({"x": {"__classname__": "a.B"}}, "$.x", None, "needs '__version__'"),
        ({"x": {"__classname__": "a.B", "__version__": 1, "__type": "dict"}}, "$.x", None, "and no '__type'"),
        ({"x": env("datetime.timedelta", True, 2)}, "$.x", "datetime.timedelta", "seconds"),
    ],
)
def test_what_cannot_be_translated_is_refused_naming_classname_version_and_path(payload, path, classname, words):
    with pytest.raises(UnsupportedPayload) as info:
        to_legacy(payload)
    err = info.value
    assert (err.path, err.classname) == (path, classname)
    assert words in str(err)
    assert path in str(err)


def test_hostile_depth_is_a_clear_error_not_a_recursion_error():
    node: object = 1
    for _ in range(100_000):
        node = {"k": node}
    with pytest.raises(UnsupportedPayload, match="nested deeper than"):
        to_legacy(node)


def test_a_huge_flat_payload_translates():
    payload = {f"k{i}": [i, env("builtins.tuple", [i])] for i in range(200_000)}
    assert len(to_legacy(payload)["__var"]) == 200_000


@pytest.mark.parametrize(
    "payload",
    [
        {"x": env("datetime.datetime", {"timestamp": 1e300, "tz": None}, 2)},
        {"x": env("pendulum.datetime.DateTime", {"timestamp": -1e20, "tz": None}, 2)},
        {"x": env("datetime.timedelta", 1e300, 2)},
        {"x": env("datetime.timedelta", "1e300", 2)},
        {"x": {"__type": "timedelta", "__var": 1e300}},
        {"x": env("pendulum.tz.timezone.FixedTimezone", 10**12)},
        {"x": env("pendulum.tz.timezone.Timezone", "x" * 1000)},
    ],
)
def test_values_out_of_3_1s_range_are_refused_not_overflowed(payload):
    with pytest.raises(UnsupportedPayload, match=r"\$\.x"):
        to_legacy(payload)


def test_only_unsupported_payload_escapes_whatever_the_input():
    class Evil(dict):
        def items(self):
            raise OSError("boom")

    class BadKey:
        def __str__(self):
            raise OSError("boom")

    bad_inputs = (
        {BadKey(): 1},
        {"x": Evil(a=1)},
        {"x": [object()]},
        {"x": {"__classname__": {}, "__version__": 1}},
        {"x": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": {"a": 1}}},
    )
    for bad in bad_inputs:
        with pytest.raises(UnsupportedPayload):
            to_legacy(bad)


def test_error_texts_hold_no_row_values():
    secret = "s3cr3t-value"
    payloads = [
        {f"{secret} key": env("builtins.tuple", "x")},
        {"k": env(f"{secret}.Cls(", {})},
        {"k": {"__classname__": "a.B", "__version__": secret}},
        {"k": env("pendulum.tz.timezone.Timezone", ["x", secret])},
    ]
    for payload in payloads:
        with pytest.raises(UnsupportedPayload) as info:
            to_legacy(payload)
        assert secret not in str(info.value), str(info.value)


def test_non_json_values_are_refused():
    with pytest.raises(UnsupportedPayload, match="not a JSON value"):
        to_legacy({"x": object()})


def test_the_resolver_receives_foreign_envelopes_with_their_path():
    seen = []

    def resolve(envelope, path):
        seen.append((envelope["__classname__"], path))
        return "resolved"

    assert to_legacy({"a": [env("my.Model", {"x": 1})]}, resolve=resolve) == {
        "__type": "dict",
        "__var": {"a": ["resolved"]},
    }
    assert seen == [("my.Model", "$.a[0]")]


# --- properties --------------------------------------------------------------------------

# Legacy JSON never holds NaN/inf numbers: 3.1 writes them as strings.
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
legacy_tree = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4).map(lambda d: {"__type": "dict", "__var": d}),
        st.lists(children, max_size=4).map(lambda v: {"__type": "tuple", "__var": v}),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda ts: {"__type": "datetime", "__var": ts}),
    ),
    max_leaves=30,
)


@settings(max_examples=2000)
@given(legacy_tree)
def test_legacy_payloads_pass_through_unchanged(tree):
    assert to_legacy(tree) == tree


serde_tree = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5).filter(lambda k: not k.startswith("__")), children, max_size=4),
        st.lists(children, max_size=4).map(lambda v: env("builtins.tuple", v)),
        st.lists(children, max_size=4).map(lambda v: env("builtins.set", v)),
        # timedelta's own range: beyond it 3.1's decoder overflows, so the bridge refuses (below).
        st.floats(-2.0**46, 2.0**46, width=32).map(lambda s: env("datetime.timedelta", s, 2)),
    ),
    max_leaves=30,
)


def _no_serde_left(node) -> bool:
    if isinstance(node, list):
        return all(_no_serde_left(v) for v in node)
    if isinstance(node, dict):
        if not is_legacy_envelope(node):
            return False
        var = node["__var"]
        return _no_serde_left(list(var.values()) if node["__type"] == "dict" else var)
    return True


@settings(max_examples=2000)
@given(serde_tree)
def test_translation_is_idempotent_json_and_leaves_no_serde_node(tree):
    legacy = to_legacy(tree)
    assert to_legacy(legacy) == legacy
    assert _no_serde_left(legacy)
    json.loads(json.dumps(legacy, allow_nan=False))


def test_supported_versions_are_declared_for_every_converter():
    assert translate.SERDE_VERSIONS["pendulum.datetime.DateTime"] == 2
    assert all(isinstance(v, int) and v >= 1 for v in translate.SERDE_VERSIONS.values())
    assert not math.isnan(0.0)


@pytest.mark.parametrize("kind", ["tuple", "set"])
def test_a_tuple_or_set_envelope_is_one_level_whichever_walk_reads_it(kind):
    """Legacy tuples 101-200 deep were refused by the legacy walks (two levels each) though the
    3.2 walk translated them to exactly that (one level): rewrite then left the row, naming the
    bridge."""
    from airflow_serde_compat.translate import MAX_DEPTH, legacy_throughout

    def nested(n, wrap):
        value: object = [1]
        for _ in range(n):
            value = wrap([value])
        return value

    def legacy(v):
        return {"__type": kind, "__var": v}

    def serde(v):
        return env(f"builtins.{kind}", v)

    within, beyond = MAX_DEPTH - 10, MAX_DEPTH + 10
    counts: dict = {}
    assert legacy_throughout(nested(within, legacy))
    assert to_legacy(nested(within, legacy), counts=counts) == nested(within, legacy) and not counts
    assert legacy_throughout(to_legacy(nested(within, serde)))  # rewrite's check of what it writes
    assert not legacy_throughout(nested(beyond, legacy))
    with pytest.raises(UnsupportedPayload, match="nested deeper than"):
        to_legacy(nested(beyond, legacy))
    with pytest.raises(UnsupportedPayload, match="nested (deeper than|too deeply)"):
        to_legacy(nested(beyond, serde))  # a serde level costs more frames: the recursion limit may come first
