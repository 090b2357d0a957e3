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

from airflow_serde_compat.rewrite.backup import canonical_number
from airflow_serde_compat.translate import (
    MAX_DEPTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    TYPE,
    VAR,
    UnsupportedPayload,
    to_legacy,
)

__all__ = ["Fallback", "stored_and_canonical", "stored_by_31"]

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
    return stored_and_canonical(payload, enum_keys=enum_keys, legacy=legacy)[0]


def stored_and_canonical(payload: Any, *, enum_keys: bool = False, legacy: Any = None) -> tuple[Any, Any]:
    """:func:`stored_by_31`'s value, and its canonical form (what a backup fingerprint hashes:
    :func:`~airflow_serde_compat.rewrite.backup.canonical_value` of it), built in the same walk.

    The value is legacy throughout by construction: only legacy envelopes are built, and past
    :data:`~airflow_serde_compat.translate.MAX_DEPTH` levels (counted so that the scan's own
    count is never higher) it steps aside, so a scan after the rewrite finds the row legacy."""
    if payload.__class__ is not dict or (len(payload) == 2 and TYPE in payload and VAR in payload):
        raise Fallback
    if legacy is None:
        try:
            legacy = to_legacy(payload, enum_keys=enum_keys)
        except UnsupportedPayload:
            raise Fallback from None
    try:
        return _written(legacy, 0)
    except Fallback:
        raise
    except Exception:  # noqa: BLE001 - RecursionError, OverflowError...: the long way decides
        raise Fallback from None


def _written(node: Any, depth: int) -> tuple[Any, Any]:
    cls = node.__class__
    if cls is str or cls is bool or node is None:
        return node, node
    if cls is int:
        return node, canonical_number(node)
    if cls is float:
        if node - node == 0.0:
            return node, canonical_number(node)
        text = str(node)  # 3.1 writes NaN and infinities as their str
        return text, text
    if depth >= MAX_DEPTH:
        raise Fallback
    depth += 1
    if cls is list:
        written, canonical = [], []
        for v in node:
            w, c = _written(v, depth)
            written.append(w)
            canonical.append(c)
        return written, canonical
    if cls is not dict or len(node) != 2:
        raise Fallback
    type_ = node.get(TYPE)
    var = node.get(VAR)
    if type_ == "dict":
        if var.__class__ is dict:
            written, canonical = {}, {}
            for k, v in var.items():
                if v.__class__ is str:
                    written[k] = canonical[k] = v
                else:
                    written[k], canonical[k] = _written(v, depth)
            return {VAR: written, TYPE: "dict"}, {VAR: canonical, TYPE: "dict"}
    elif type_ == "datetime":
        if (var.__class__ is float or var.__class__ is int) and MIN_TIMESTAMP <= var <= MAX_TIMESTAMP:
            stamp = _fromtimestamp(var, _UTC).timestamp()
            return {VAR: stamp, TYPE: "datetime"}, {VAR: canonical_number(stamp), TYPE: "datetime"}
    elif type_ == "timedelta":
        if var.__class__ is float or var.__class__ is int:
            seconds = _timedelta(seconds=var).total_seconds()
            return {VAR: seconds, TYPE: "timedelta"}, {VAR: canonical_number(seconds), TYPE: "timedelta"}
    elif type_ == "tuple":
        if var.__class__ is list:
            written, canonical = _written(var, depth)
            return {VAR: written, TYPE: "tuple"}, {VAR: canonical, TYPE: "tuple"}
    elif type_ == "set":
        if var.__class__ is list:
            items = _sorted_set(var)
            canonical = items if not items or items[0].__class__ is str else [canonical_number(v) for v in items]
            return {VAR: items, TYPE: "set"}, {VAR: canonical, TYPE: "set"}
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
