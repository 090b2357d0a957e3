"""Canonical, type-exact description of a Python value (pure stdlib, no airflow import).

Used on both sides of the golden corpus: ``tools/record_corpus.py`` stores
``describe(BaseSerialization.deserialize(legacy))`` computed in the real 3.1.8 venv as
``case["native"]``, and the test suite checks ``describe(bridge_result) == case["native"]``.

Every description is a JSON-able dict with at least ``"t"`` (the exact type name: builtins
are bare, e.g. ``"dict"``, ``"int"``; everything else is ``module.qualname``, e.g.
``"pendulum.datetime.DateTime"`` vs ``"datetime.datetime"``) and usually ``"v"``:

=====================  =====================================================================
value                  description
=====================  =====================================================================
None                   {"t": "NoneType", "v": None}
bool / int / str       {"t": "bool"|"int"|"str", "v": value}   (exact types only)
float                  {"t": "float", "v": repr(x)}            ("nan", "inf", "-inf", "1.5")
dict (and subclasses)  {"t": "dict", "v": {str(k): describe(v)}}, plus "k": {str(k): key type}
                       when any key is not a str; "dup_keys": true if str(k) collides
list / tuple           {"t": "list"|"tuple"|<qualname of subclass>, "v": [describe(x), ...]}
set / frozenset        {"t": "set"|"frozenset", "v": sorted descriptions}
datetime               {"t": qualname, "v": isoformat(), "tz": tzname() or str(tzinfo) or
                       None, "tzt": qualname of type(tzinfo) or None}
date / time            {"t": qualname, "v": isoformat()} (time also "tz"/"tzt")
timedelta              {"t": qualname, "v": total_seconds(), "dsu": [days, seconds, us]}
pendulum Timezone      {"t": qualname, "v": name}
pendulum FixedTimezone {"t": qualname, "v": name, "offset": offset seconds}
zoneinfo.ZoneInfo      {"t": "zoneinfo.ZoneInfo", "v": key}
datetime.timezone      {"t": "datetime.timezone", "v": str(tz), "offset": seconds}
Decimal / UUID         {"t": qualname, "v": str(x)}
anything else          {"t": qualname, "v": repr(x) with " at 0x..." addresses scrubbed}
=====================  =====================================================================
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
import zoneinfo
from typing import Any

__all__ = ["describe", "type_name"]

_ADDR = re.compile(r"0x[0-9a-fA-F]{4,}")


def type_name(obj_or_type: Any) -> str:
    """``"int"`` for builtins, ``"module.QualName"`` for everything else."""
    tp = obj_or_type if isinstance(obj_or_type, type) else type(obj_or_type)
    mod = getattr(tp, "__module__", None) or "?"
    qn = getattr(tp, "__qualname__", None) or tp.__name__
    return qn if mod == "builtins" else f"{mod}.{qn}"


def _scrub(text: str) -> str:
    return _ADDR.sub("0x?", text)


def _sort_key(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _tz_fields(tzinfo: Any, dt: Any) -> dict[str, Any]:
    if tzinfo is None:
        return {"tz": None, "tzt": None}
    try:
        name = dt.tzname()
    except Exception:  # pragma: no cover - exotic tzinfo
        name = None
    return {"tz": name if name else str(tzinfo), "tzt": type_name(tzinfo)}


def _is_pendulum_tz(obj: Any) -> str | None:
    for klass in type(obj).__mro__:
        if klass.__module__.startswith("pendulum") and klass.__name__ in ("FixedTimezone", "Timezone"):
            return klass.__name__
    return None


def describe(obj: Any) -> Any:
    """Return the canonical JSON-able, type-exact description of ``obj``."""
    t = type(obj)
    if obj is None:
        return {"t": "NoneType", "v": None}
    if t is bool or t is int or t is str:
        return {"t": t.__name__, "v": obj}
    if t is float:
        return {"t": "float", "v": repr(obj)}
    if isinstance(obj, dict):
        out: dict[str, Any] = {"t": type_name(obj)}
        items: dict[str, Any] = {}
        key_types: dict[str, str] = {}
        dup = False
        for k, v in obj.items():
            sk = str(k)
            if sk in items:
                dup = True
            items[sk] = describe(v)
            key_types[sk] = type_name(k)
        out["v"] = items
        if any(kt != "str" for kt in key_types.values()):
            out["k"] = key_types
        if dup:
            out["dup_keys"] = True
        return out
    if isinstance(obj, (list, tuple)):
        return {"t": type_name(obj), "v": [describe(x) for x in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"t": type_name(obj), "v": sorted((describe(x) for x in obj), key=_sort_key)}
    if isinstance(obj, datetime.datetime):
        return {"t": type_name(obj), "v": obj.isoformat(), **_tz_fields(obj.tzinfo, obj)}
    if isinstance(obj, datetime.date):
        return {"t": type_name(obj), "v": obj.isoformat()}
    if isinstance(obj, datetime.time):
        return {"t": type_name(obj), "v": obj.isoformat(), **_tz_fields(obj.tzinfo, obj)}
    if isinstance(obj, datetime.timedelta):
        return {
            "t": type_name(obj),
            "v": obj.total_seconds(),
            "dsu": [obj.days, obj.seconds, obj.microseconds],
        }
    ptz = _is_pendulum_tz(obj)
    if ptz == "FixedTimezone":
        return {"t": type_name(obj), "v": obj.name, "offset": obj.offset}
    if ptz == "Timezone":
        return {"t": type_name(obj), "v": obj.name}
    if isinstance(obj, zoneinfo.ZoneInfo):
        return {"t": type_name(obj), "v": obj.key}
    if isinstance(obj, datetime.timezone):
        return {"t": type_name(obj), "v": str(obj), "offset": obj.utcoffset(None).total_seconds()}
    if isinstance(obj, (decimal.Decimal, uuid.UUID)):
        return {"t": type_name(obj), "v": str(obj)}
    try:
        text = repr(obj)
    except Exception as exc:  # pragma: no cover - broken __repr__
        text = f"<repr failed: {type(exc).__name__}>"
    return {"t": type_name(obj), "v": _scrub(text)}
