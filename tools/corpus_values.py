"""The values of the golden serde corpus (see tests/fixtures/corpus/README.md).

``values()`` returns ``[(case_id, value), ...]`` in a fixed order. Only stdlib and pendulum are
required. Cases that need an optional library (numpy, pandas+pyarrow, pydantic, attrs,
python-dateutil, kubernetes + apache-airflow-providers-cncf-kubernetes) are returned as
``(case_id, Skipped(reason))`` when the library is not importable, so case ids are the same in
every environment and the skip is recorded in the fixture.

No ``now()``, no random values: every value is fixed so re-recording gives the same bytes
(run with ``PYTHONHASHSEED=0`` and ``TZ=UTC``, which ``tools/record_corpus.py`` sets).

This module is imported as the top-level module ``corpus_values`` (``tools/`` on ``sys.path``),
so the user classes below serialize with classnames such as
``corpus_values.CorpusDataclass``. That namespace is deliberately outside 3.1.8's default
``[core] allowed_deserialization_classes`` (``airflow.*``).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib.util
import typing
import uuid
import zoneinfo
from decimal import Decimal

import pendulum

__all__ = ["Skipped", "values"]


class Skipped:
    """Placeholder for a case whose optional library is not importable here."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Skipped({self.reason!r})"


# --------------------------------------------------------------------------- user types


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 10


class Plain(enum.Enum):
    """Neither str nor int mixin: serde refuses it."""

    A = "a"


class TriggerFailureReason(str, enum.Enum):
    """Mirror of airflow's str-Enum used for next_kwargs["error"] (values as in 3.2.1)."""

    TRIGGER_TIMEOUT = "Trigger timeout"
    TRIGGER_FAILURE = "Trigger failure"


class Point(typing.NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class CorpusDataclass:
    name: str
    count: int
    tags: list = dataclasses.field(default_factory=list)


try:
    import attr

    @attr.define
    class CorpusAttrs:
        name: str
        size: int
        ratio: float = 0.5

except ImportError:  # pragma: no cover - attrs ships with airflow
    attr = None  # type: ignore[assignment]
    CorpusAttrs = None  # type: ignore[assignment,misc]

try:
    import pydantic

    class CorpusModel(pydantic.BaseModel):
        name: str
        count: int
        when: datetime.datetime

except ImportError:  # pragma: no cover - pydantic ships with airflow
    pydantic = None  # type: ignore[assignment]
    CorpusModel = None  # type: ignore[assignment,misc]


# --------------------------------------------------------------------------- fixed instants

# 2026-03-14T15:09:26.535897Z and a whole-second instant; never now().
_UTC = pendulum.timezone("UTC")
P_UTC = pendulum.datetime(2026, 3, 14, 15, 9, 26, 535897, tz="UTC")
P_UTC_WHOLE = pendulum.datetime(2030, 1, 1, 0, 0, 0, tz="UTC")
P_PARIS = pendulum.datetime(2026, 7, 1, 9, 30, 0, tz="Europe/Paris")
P_NY = pendulum.datetime(2030, 5, 6, 7, 8, 9, tz="America/New_York")
TRACEBACK = [
    "Traceback (most recent call last):\n",
    '  File "/opt/airflow/dags/my_trigger.py", line 42, in run\n    raise ValueError("boom")\n',
    "ValueError: boom\n",
]


def _optional(case_id: str, modules: list[str], build: typing.Callable[[], object]) -> tuple[str, object]:
    missing = []
    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    if missing:
        return case_id, Skipped(f"not importable here: {', '.join(missing)}")
    try:
        return case_id, build()
    except ImportError as exc:
        return case_id, Skipped(f"ImportError: {exc}")


def _numpy_cases() -> list[tuple[str, object]]:
    names = [
        ("int8", 3),
        ("int16", -300),
        ("int32", 70000),
        ("int64", 2**40),
        ("uint8", 200),
        ("uint16", 60000),
        ("uint32", 4000000000),
        ("uint64", 2**63 + 5),
        ("float16", 1.5),
        ("float32", 0.25),
        ("float64", 2.5),
        ("bool_", True),
        ("complex64", 1.5),
        ("complex128", complex(2.5, 0.5)),
    ]
    out = []
    for name, raw in names:

        def build(name=name, raw=raw):
            import numpy as np

            return getattr(np, name)(raw)

        out.append(_optional(f"numpy_{name}", ["numpy"], build))
    out.append(
        _optional(
            "numpy_in_dict",
            ["numpy"],
            lambda: {"n": __import__("numpy").int64(7), "f": __import__("numpy").float64(0.125)},
        )
    )
    return out


def _dataframe():
    import pandas as pd

    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, None]})


def _v1pod():
    from kubernetes.client import models as k8s

    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(name="corpus-pod", namespace="default", labels={"app": "corpus"}),
        spec=k8s.V1PodSpec(
            containers=[
                k8s.V1Container(
                    name="base",
                    image="busybox:1.36",
                    args=["echo", "hi"],
                    resources=k8s.V1ResourceRequirements(limits={"cpu": "500m", "memory": "128Mi"}),
                )
            ]
        ),
    )


def _resource_requirements():
    from kubernetes.client import models as k8s

    return k8s.V1ResourceRequirements(requests={"cpu": "250m"}, limits={"memory": "64Mi"})


def values() -> list[tuple[str, object]]:
    """All corpus cases, in a fixed order, as ``(case_id, value)`` (value may be ``Skipped``)."""
    cases: list[tuple[str, object]] = [
        # ---- primitives
        ("none", None),
        ("bool_true", True),
        ("bool_false", False),
        ("int_zero", 0),
        ("int_negative", -42),
        ("int_big_2_64", 2**64 + 1),
        ("int_big_10_30", -(10**30)),
        ("float_simple", 1.5),
        ("float_negative_zero", -0.0),
        ("float_nan", float("nan")),
        ("float_inf", float("inf")),
        ("float_ninf", float("-inf")),
        ("str_empty", ""),
        ("str_unicode", "héllo ✓ 日本 \U0001f680"),
        ("str_looks_like_date", "2026-03-14T15:09:26+00:00"),
        ("bytes_value", b"abc\x00"),
        # ---- dicts and lists
        ("dict_empty", {}),
        ("dict_flat", {"a": 1, "b": "two", "c": None, "d": True, "e": 2.5}),
        ("dict_nested", {"outer": {"inner": {"deep": [1, 2, {"x": None}]}}, "empty": {}}),
        ("dict_int_keys", {1: "one", 2: "two"}),
        # note: True == 1, so a bool key would collapse into the int key
        ("dict_mixed_keys", {1: "int", "s": "str", None: "none", 2.5: "float", False: "bool"}),
        ("dict_unicode_keys", {"ключ": 1, "日本": [1, 2], "émoji \U0001f680": {"ü": None}}),
        ("dict_legacy_lookalike_dict", {"__type": "dict", "__var": {"a": 1}}),
        ("dict_legacy_lookalike_tuple", {"__type": "tuple", "__var": [1, 2]}),
        ("dict_legacy_lookalike_unknown", {"__type": "foo", "__var": 1}),
        ("dict_legacy_lookalike_extra_key", {"__type": "dict", "__var": {}, "other": 1}),
        ("dict_reserved_classname_key", {"__classname__": "x", "v": 1}),
        ("dict_serde_lookalike_version", {"__version__": 1, "__data__": [1]}),
        ("list_empty", []),
        ("list_mixed", [1, "a", None, 2.5, True, {"k": "v"}, [1, [2, [3]]]]),
        ("list_of_dicts", [{}, {"a": 1}, {"b": {"c": 2}}]),
        # ---- tuples, namedtuples, sets
        ("tuple_empty", ()),
        ("tuple_pair", (1, 2)),
        ("tuple_mixed", (1, "a", None, 2.5, [3, 4], {"k": "v"})),
        ("tuple_nested", ((1, (2, 3)), ())),
        ("namedtuple_point", Point(1, 2)),
        ("set_int", {3, 1, 2}),
        ("set_str", {"b", "a", "c"}),
        ("set_empty", set()),
        ("set_mixed_unsortable", {1, "a"}),
        ("set_of_tuples", {(1, 2), (0, 5)}),
        ("frozenset_int", frozenset({2, 1})),
        ("frozenset_empty", frozenset()),
        ("dict_in_tuple_in_list", {"a": [(1, 2), {"b": (3, {4}), "c": frozenset({5})}], "t": ((1,), [2])}),
        # ---- datetimes
        ("datetime_naive", datetime.datetime(2026, 3, 14, 15, 9, 26, 535897)),
        ("datetime_utc", datetime.datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=datetime.timezone.utc)),
        (
            "datetime_fixed_offset",
            datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
        ),
        (
            "datetime_zoneinfo_new_york",
            datetime.datetime(2026, 11, 1, 1, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        ),
        ("datetime_pre_epoch_utc", datetime.datetime(1969, 7, 20, 20, 17, 40, tzinfo=datetime.timezone.utc)),
        ("pendulum_utc", P_UTC),
        ("pendulum_utc_whole_second", P_UTC_WHOLE),
        ("pendulum_paris", P_PARIS),
        ("pendulum_new_york", P_NY),
        ("pendulum_naive", pendulum.naive(2026, 3, 14, 15, 9, 26)),
        ("pendulum_fixed_offset", pendulum.datetime(2026, 3, 14, 15, 9, 26, tz=pendulum.FixedTimezone(-7200))),
        ("date_std", datetime.date(2026, 3, 14)),
        ("pendulum_date", pendulum.date(2026, 3, 14)),
        ("time_std", datetime.time(12, 30, 15)),
        # ---- durations
        ("timedelta_hours", datetime.timedelta(hours=2)),
        ("timedelta_microseconds", datetime.timedelta(days=1, seconds=3, microseconds=7)),
        ("timedelta_negative", -datetime.timedelta(minutes=90, microseconds=1)),
        ("timedelta_zero", datetime.timedelta(0)),
        ("timedelta_large", datetime.timedelta(days=365 * 100, microseconds=1)),
        ("pendulum_duration", pendulum.duration(hours=5, minutes=3)),
        # ---- timezones
        ("pendulum_timezone_utc", pendulum.timezone("UTC")),
        ("pendulum_timezone_paris", pendulum.timezone("Europe/Paris")),
        ("pendulum_fixed_timezone", pendulum.FixedTimezone(3600)),
        ("pendulum_fixed_timezone_zero", pendulum.FixedTimezone(0)),
        ("stdlib_timezone_utc", datetime.timezone.utc),
        ("stdlib_timezone_offset", datetime.timezone(datetime.timedelta(hours=-3))),
        ("zoneinfo_new_york", zoneinfo.ZoneInfo("America/New_York")),
        # ---- numbers and ids
        ("decimal_int_valued", Decimal("10")),
        ("decimal_fractional", Decimal("3.14159")),
        ("decimal_trailing_zero", Decimal("1.50")),
        ("decimal_negative_small", Decimal("-0.001")),
        ("decimal_nan", Decimal("NaN")),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("uuid_in_dict", {"id": uuid.UUID("00000000-0000-4000-8000-000000000001")}),
        # ---- enums
        ("enum_str_member", Color.RED),
        ("enum_int_member", Priority.HIGH),
        ("enum_plain_member", Plain.A),
        ("enum_values_in_dict", {"color": Color.GREEN, "prio": Priority.LOW, Color.RED: 1}),
        # ---- user classes outside airflow.*
        ("dataclass_user", CorpusDataclass(name="dc", count=2, tags=["a", "b"])),
    ]
    cases.append(
        _optional("attrs_user", ["attr"], lambda: CorpusAttrs(name="at", size=3))
        if CorpusAttrs is not None
        else ("attrs_user", Skipped("attrs not importable"))
    )
    cases.append(
        _optional("pydantic_user", ["pydantic"], lambda: CorpusModel(name="pm", count=1, when=P_UTC))
        if CorpusModel is not None
        else ("pydantic_user", Skipped("pydantic not importable"))
    )
    cases.append(
        _optional(
            "relativedelta",
            ["dateutil"],
            lambda: __import__("dateutil.relativedelta", fromlist=["relativedelta"]).relativedelta(
                months=1, days=2, hours=3
            ),
        )
    )
    cases += _numpy_cases()
    cases.append(_optional("pandas_dataframe", ["pandas", "pyarrow"], _dataframe))
    cases.append(_optional("k8s_v1pod", ["kubernetes", "airflow.providers.cncf.kubernetes"], _v1pod))
    cases.append(
        _optional(
            "k8s_v1resource_requirements",
            ["kubernetes", "airflow.providers.cncf.kubernetes"],
            _resource_requirements,
        )
    )
    cases += [
        # ---- shapes Airflow itself produces (next_kwargs / trigger.kwargs / event payloads)
        ("next_kwargs_empty", {}),
        ("trigger_kwargs_datetime_trigger", {"moment": P_UTC_WHOLE, "end_from_trigger": False}),
        (
            "trigger_kwargs_file_trigger",
            {"filepath": "/data/in/*.csv", "recursive": False, "poke_interval": 5.0},
        ),
        (
            "next_kwargs_trigger_failure",
            {"error": TriggerFailureReason.TRIGGER_FAILURE, "traceback": TRACEBACK},
        ),
        ("next_kwargs_trigger_timeout", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}),
        (
            "next_kwargs_defer_kwargs",
            {"started": P_UTC, "budget": datetime.timedelta(hours=2), "coords": (1, 2)},
        ),
        (
            "next_kwargs_with_event",
            {
                "d": datetime.timedelta(seconds=180),
                "s": {3},
                "t": (1, 2),
                "when": P_NY,
                "plain": {"a": [1, {"b": None}]},
                "event": {"n": (1, 2), "fired_at": P_UTC},
            },
        ),
        ("next_kwargs_event_none", {"event": None}),
        (
            "event_payload",
            {
                "status": "success",
                "moment": P_UTC,
                "count": 3,
                "ratio": 0.5,
                "files": ["a.csv", "b.csv"],
                "elapsed": datetime.timedelta(seconds=5400),
            },
        ),
    ]
    ids = [c for c, _ in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases
