"""Airflow 3.1's ``BaseSerialization.serialize`` for plain values, without its type ladder.

``rewrite`` stores exactly what the installed 3.1.x writes for a value, and most rewritten rows
hold plain values only: dicts, lists, tuples, sets, datetimes, durations and JSON scalars. 3.1's
``serialize`` reaches a datetime after some twenty ``isinstance`` checks per node, which made it
a third of the rewrite's time. :func:`plain_serializer` returns a function that encodes those
classes (exact classes only, never subclasses) the way 3.1.8's ``serialize`` does, node for
node, and hands every other node to 3.1's own ``serialize`` unchanged: the result is 3.1's.

That equality is a claim about the installed Airflow, so it is checked twice: by tests (the
golden corpus and generated values, under every 3.1.x reader the suite runs) and, cheaply, in
the process that uses it: :func:`plain_serializer` compares both on a fixed sample first and,
on any difference, returns 3.1's ``serialize`` itself.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable

__all__ = ["plain_serializer"]


def _encoder(serialize: Callable[[Any], Any], datetime_classes: tuple[type, ...]) -> Callable[[Any], Any]:
    timedelta = dt.timedelta

    def plain(var: Any) -> Any:
        cls = var.__class__
        if cls is str or cls is int or cls is bool or var is None:
            return var
        if cls is float:
            return var if var - var == 0.0 else str(var)  # NaN and infinities: 3.1 stores str(value)
        if cls is dict:
            out = {}
            for k, v in var.items():
                kc = k.__class__
                if kc is not str:
                    if not (kc is int or kc is float or kc is bool or k is None):
                        return serialize(var)  # str() of any other key is that class's code
                    k = str(k)
                out[k] = plain(v)
            return {"__var": out, "__type": "dict"}
        if cls is list:
            return [plain(v) for v in var]
        if cls in datetime_classes:
            return {"__var": var.timestamp(), "__type": "datetime"}
        if cls is timedelta:
            return {"__var": var.total_seconds(), "__type": "timedelta"}
        if cls is tuple:
            return {"__var": [plain(v) for v in var], "__type": "tuple"}
        if cls is set:
            try:
                return {"__var": sorted(plain(v) for v in var), "__type": "set"}
            except TypeError:
                return {"__var": [plain(v) for v in var], "__type": "set"}
        return serialize(var)

    return plain


def _sample() -> list[Any]:
    import pendulum

    utc = dt.timezone.utc
    moment = pendulum.datetime(2026, 3, 29, 1, 30, 15, 123457, tz="Europe/Berlin")
    return [
        {},
        {"event": None},
        {"a": 1, "b": 2.5, "c": "x", "d": True, "e": None, "f": float("nan"), "g": float("-inf"), "h": -0.0},
        {"moment": moment, "naive": dt.datetime(2026, 1, 1, 12, 0, 0, 1), "aware": dt.datetime(2051, 1, 1, tzinfo=utc)},
        {"d": dt.timedelta(days=-3, seconds=7, microseconds=11), "big": dt.timedelta(days=999_999_999)},
        {"t": (1, (2, "x"), [3, {"k": (4,)}]), "s": {3, 1, 2}, "mixed": {1, "a"}, "nested": [{"x": {2.5, -1}}]},
        {1: "int key", 2.5: "float key", False: "bool key", None: "none key", "2": "str key"},
        {"frozen": frozenset({1}), "tz": pendulum.timezone("Asia/Kolkata"), "dur": pendulum.duration(hours=2)},
        [moment, (), set(), [], {"": ""}],
    ]


def plain_serializer(serialize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``serialize`` (3.1's ``BaseSerialization.serialize``) for any value, faster for plain ones.

    Returns ``serialize`` itself if the two differ on the sample (another 3.1.x than the ones
    this was checked against, a patched Airflow): exactness is worth more than the speed."""
    import pendulum

    plain = _encoder(serialize, (dt.datetime, pendulum.DateTime))
    try:
        same = all(json.dumps(plain(v)) == json.dumps(serialize(v)) for v in _sample())
    except Exception:  # noqa: BLE001 - an Airflow that cannot serialize the sample gets its own code
        same = False
    return plain if same else serialize
