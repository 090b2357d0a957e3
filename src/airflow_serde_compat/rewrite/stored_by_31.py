"""The JSON Airflow 3.1 stores for a 3.2 payload, computed on the JSON, without building objects.

``rewrite`` stores what the installed 3.1.x writes for the value the bridge reads:
``serialize(deserialize(payload))``, 3.1's writer on the bridge's objects. For the payloads
3.2 writes most (bare dicts, lists, JSON scalars, tuples, sets, datetimes, durations), that is a
function of the translator's legacy JSON alone: 3.1 decodes those envelopes into plain objects
and writes them back as the same envelopes, ``"__var"`` first, with two changes only --
datetimes and durations pass through microsecond resolution (``from_timestamp(x).timestamp()``,
``timedelta(seconds=x).total_seconds()``) and sets come back deduplicated and sorted.

:func:`stored_by_31` computes that directly: the translator (no resolver, so nothing is imported
or called, whatever the row names), then one walk over its output. Anything outside that
domain -- a classname that needs its library, a timezone, a pod, a set that does not sort, a
datetime near the calendar's ends, any error -- raises :class:`Fallback`, and the caller takes
the long way (the bridge, then 3.1's own writer), which decides every hard case and its error.

Equality with the long way is a claim about the installed Airflow. Tests check it on the golden
corpus and generated values under every 3.1.x reader the suite runs; the writer that uses this
compares both on a fixed sample first and does without it on any difference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_serde_compat.translate import MAX_TIMESTAMP, MIN_TIMESTAMP, TYPE, VAR, UnsupportedPayload, to_legacy

__all__ = ["Fallback", "stored_by_31"]

_UTC = dt.timezone.utc
_fromtimestamp = dt.datetime.fromtimestamp
_timedelta = dt.timedelta


class Fallback(Exception):
    """Not decided here: the bridge's decode and 3.1's writer decide (errors included)."""


def stored_by_31(payload: Any, *, enum_keys: bool = False, legacy: Any = None) -> Any:
    """What 3.1's ``serialize`` returns for the value the bridge reads from ``payload``.

    ``payload`` is the top of a 3.2 ``next_kwargs`` or trigger kwargs (``enum_keys``): a dict
    that is not itself a legacy envelope. Raises :class:`Fallback` for anything else.
    ``legacy``: ``to_legacy(payload, enum_keys=enum_keys)``, where the caller has it already."""
    if payload.__class__ is not dict or (len(payload) == 2 and TYPE in payload and VAR in payload):
        raise Fallback
    if legacy is None:
        try:
            legacy = to_legacy(payload, enum_keys=enum_keys)
        except UnsupportedPayload:
            raise Fallback from None
    try:
        return _written(legacy)
    except Fallback:
        raise
    except Exception:  # noqa: BLE001 - RecursionError, OverflowError...: the long way decides
        raise Fallback from None


def _written(node: Any) -> Any:
    cls = node.__class__
    if cls is str or cls is int or cls is bool or node is None:
        return node
    if cls is float:
        return node if node - node == 0.0 else str(node)
    if cls is list:
        return [_written(v) for v in node]
    if cls is not dict or len(node) != 2:
        raise Fallback
    type_ = node.get(TYPE)
    var = node.get(VAR)
    if type_ == "dict":
        if var.__class__ is dict:
            out = {}
            for k, v in var.items():
                out[k] = v if v.__class__ is str else _written(v)
            return {VAR: out, TYPE: "dict"}
    elif type_ == "datetime":
        if (var.__class__ is float or var.__class__ is int) and MIN_TIMESTAMP <= var <= MAX_TIMESTAMP:
            return {VAR: _fromtimestamp(var, _UTC).timestamp(), TYPE: "datetime"}
    elif type_ == "timedelta":
        if var.__class__ is float or var.__class__ is int:
            return {VAR: _timedelta(seconds=var).total_seconds(), TYPE: "timedelta"}
    elif type_ == "tuple":
        if var.__class__ is list:
            return {VAR: [_written(v) for v in var], TYPE: "tuple"}
    elif type_ == "set":
        if var.__class__ is list:
            return {VAR: _sorted_set(var), TYPE: "set"}
    raise Fallback


def _sorted_set(items: list) -> list:
    # 3.1 builds a set and writes it sorted. Only all-str or all-int sets are decided here:
    # 1 == 1.0 == True and -0.0 == 0.0 make the survivor of a mixed set depend on order.
    first = items[0].__class__ if items else str
    if first is not str and first is not int:
        raise Fallback
    for v in items:
        if v.__class__ is not first:
            raise Fallback
    return sorted(set(items))
