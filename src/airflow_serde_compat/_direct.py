"""One walk from a 3.2 payload to the objects Airflow 3.1's own ``deserialize`` builds.

:func:`~airflow_serde_compat.translate.to_legacy` followed by 3.1's decoder walks a payload
twice and allocates a legacy envelope per node that is thrown away at once. For the values
3.1 decodes by itself into plain objects (containers, datetimes, durations, timezones and the
classnames 3.1 stored as ``str``/``float``), this module builds the result in the same walk,
with the translator's rules (same checks, same depth limit, same counts) and 3.1's own
constructors, which the patch hands over (:func:`decoder`): this module imports nothing from
Airflow, nor anything a row names.

It never decides a hard case. Anything else -- a classname needing its library or 3.1's
allow-list, a ``V1Pod``, any check that fails, any exception -- raises :class:`Fallback`, and
the caller runs the translator and 3.1 as before, from the top: errors, their paths, resolver
calls and counts are theirs, never this module's. Nothing here is counted until it succeeds.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from airflow_serde_compat import translate
from airflow_serde_compat.translate import (
    CLASSNAME,
    DATA,
    ENUM_KEY_TYPES,
    ENUM_TYPE,
    ENUM_VAR,
    LEGACY_TYPES,
    MAX_DEPTH,
    MAX_OFFSET_SECONDS,
    MAX_TIMEDELTA_SECONDS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    NESTED_LEGACY_TYPES,
    TYPE,
    VAR,
    VERSION,
    _merge,
)

__all__ = ["Fallback", "decoder"]


class Fallback(Exception):
    """Not decided here: translate and let 3.1 decode, as without this module."""


def decoder(namespace: Mapping[str, Any]) -> Callable[[dict, bool, dict], Any]:
    """``decode(payload, enum_keys, counts)`` for a dict that is not a legacy envelope.

    ``namespace`` is the globals of 3.1's ``serialized_objects``: its ``from_timestamp``,
    ``decode_timezone`` and ``datetime`` are looked up per use, as 3.1's ``deserialize`` does,
    so the objects are the ones it would build (pendulum UTC ``DateTime``, tz-database zones).
    """

    def decode(payload: dict, enum_keys: bool, counts: dict[str, int]) -> Any:
        walk = _Walk(namespace, enum_keys)
        value = walk.value(payload, 0)
        seen = walk.seen
        if not seen and "dict" in counts:
            counts["dict"] += walk.dicts  # the commonest row: plain dicts only, a kind already counted
        else:
            if walk.dicts:
                seen["dict"] = seen.get("dict", 0) + walk.dicts
            _merge(counts, seen)
        return value

    return decode


class _Walk:
    """The translator's :meth:`~airflow_serde_compat.translate._Translator.node` rules, building objects.

    Depths are counted exactly as the translator counts them, so the same payloads are refused
    (here: handed back) at the same nesting. Leaves are tested inline in the loops: a call per
    leaf would cost about as much as the rest of the walk.
    """

    __slots__ = ("dicts", "enum_keys", "ns", "seen")

    def __init__(self, namespace: Mapping[str, Any], enum_keys: bool):
        self.ns = namespace
        self.enum_keys = enum_keys
        self.seen: dict[str, int] = {}
        self.dicts = 0

    def value(self, node: Any, depth: int) -> Any:
        cls = node.__class__
        if cls is str or cls is int or cls is bool or node is None:
            return node
        if cls is float:
            return node if node - node == 0.0 else str(node)  # NaN/inf: 3.1 stored str(value)
        if depth > MAX_DEPTH:
            raise Fallback
        if cls is list:
            return self.list(node, depth)
        if cls is not dict:
            raise Fallback
        if CLASSNAME in node:
            if VERSION in node and TYPE not in node:
                return self.envelope(node, depth)
            raise Fallback
        if len(node) == 2:
            if TYPE in node and VAR in node:
                return self.legacy(node[TYPE], node[VAR], node, depth)
            if self.enum_keys and ENUM_TYPE in node and ENUM_VAR in node:
                type_ = node[ENUM_TYPE]
                if type_.__class__ is not str or type_ not in ENUM_KEY_TYPES:
                    raise Fallback
                self.seen[ENUM_TYPE] = self.seen.get(ENUM_TYPE, 0) + 1
                return self.plain_legacy(type_, node[ENUM_VAR], depth)
        self.dicts += 1
        return self.items(node, depth)

    def list(self, node: list, depth: int) -> list:
        # Callers have checked the depth of ``node`` itself (the translator's node() does).
        depth += 1
        out = []
        append = out.append
        for v in node:
            c = v.__class__
            append(v if c is str or c is int or c is bool or v is None else self.value(v, depth))
        return out

    def items(self, mapping: dict, depth: int) -> dict:
        depth += 1
        out = {}
        for k, v in mapping.items():
            if k.__class__ is not str:
                raise Fallback  # not JSON: the translator's str(k) and its collisions decide
            c = v.__class__
            out[k] = v if c is str or c is int or c is bool or v is None else self.value(v, depth)
        return out

    def legacy(self, type_: Any, var: Any, node: dict, depth: int) -> Any:
        if type_.__class__ is not str or type_ not in LEGACY_TYPES:
            self.dicts += 1  # a 3.2 user dict with these two keys
            return self.items(node, depth)
        if type_ not in (ENUM_KEY_TYPES if self.enum_keys else NESTED_LEGACY_TYPES):
            raise Fallback  # refused by the translator: its error, with the path
        return self.plain_legacy(type_, var, depth)

    def plain_legacy(self, type_: str, var: Any, depth: int) -> Any:
        if type_ == "dict":
            if var.__class__ is dict:
                return self.items(var, depth)
        elif type_ == "tuple":
            if var.__class__ is list:
                return tuple(self.list(var, depth))
        elif type_ == "set":
            if var.__class__ is list:
                return set(self.list(var, depth))
        elif var.__class__ is int or var.__class__ is float:
            if type_ == "datetime":
                if MIN_TIMESTAMP <= var <= MAX_TIMESTAMP:
                    return self.ns["from_timestamp"](float(var))
            elif type_ == "timedelta":
                if -MAX_TIMEDELTA_SECONDS <= var <= MAX_TIMEDELTA_SECONDS:
                    return self.ns["datetime"].timedelta(seconds=float(var))
            elif type_ == "timezone" and var.__class__ is int:
                return self.timezone(var)
        elif type_ == "timezone":
            return self.timezone(var)
        raise Fallback

    def timezone(self, var: Any) -> Any:
        # translate._timezone_value's rule: what reaches pendulum's parser is one of these.
        if var.__class__ is int:
            if not -MAX_OFFSET_SECONDS < var < MAX_OFFSET_SECONDS:
                raise Fallback
        elif var.__class__ is not str or not 0 < len(var) <= 255 or "\x00" in var:
            raise Fallback
        return self.ns["decode_timezone"](var)

    def envelope(self, env: dict, depth: int) -> Any:
        classname = env[CLASSNAME]
        version = env[VERSION]
        if classname.__class__ is not str or version.__class__ is not int:
            raise Fallback
        known = _BUILDERS.get(classname)
        if known is None or version > known[0]:
            raise Fallback
        self.seen[classname] = self.seen.get(classname, 0) + 1
        return known[1](self, env.get(DATA), env, depth)


# --- builders: (walk, __data__, envelope, depth) -> the object 3.1 builds ---------------------


def _tuple(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    if data.__class__ is not list:
        raise Fallback
    return tuple(w.list(data, depth))


def _set(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    if data.__class__ is not list:
        raise Fallback
    return set(w.list(data, depth))  # unhashable members: TypeError, then 3.1's own failure


def _frozenset(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    # Non-primitive members go to 3.1's serde through the translator's resolver.
    if data.__class__ is not list or not all(v is None or v.__class__ in (str, int, bool, float) for v in data):
        raise Fallback
    return str(frozenset(data))


def _datetime(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    ts = data.get("timestamp") if data.__class__ is dict else None
    if (ts.__class__ is float or ts.__class__ is int) and MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:
        return w.ns["from_timestamp"](float(ts))
    raise Fallback


def _timedelta(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    # translate._timedelta's rule (3.2's reader takes the seconds as a string too; a bool is no
    # duration): 3.1 then reads the float the translator stored.
    cls = data.__class__
    if cls is not int and cls is not float and cls is not str:
        raise Fallback
    try:
        seconds = float(data)
    except ValueError:
        raise Fallback from None
    if -MAX_TIMEDELTA_SECONDS <= seconds <= MAX_TIMEDELTA_SECONDS:  # NaN fails too
        return w.ns["datetime"].timedelta(seconds=seconds)
    raise Fallback


def _timezone(w: _Walk, data: Any, env: dict, depth: int) -> Any:
    return w.timezone(data)


def _stored_as_is(convert: Callable[..., Any]) -> Callable[..., Any]:
    # Classnames 3.1 stored as str(value) or a float: the translator's own converter gives that
    # very value, and 3.1 returns a str or a float unchanged. Its refusal is a fallback here.
    def build(w: _Walk, data: Any, env: dict, depth: int) -> Any:
        return convert(None, data, env, None, depth)

    return build


_BY_CONVERTER: dict[Callable[..., Any], Callable[..., Any]] = {
    translate._tuple: _tuple,
    translate._set: _set,
    translate._frozenset: _frozenset,
    translate._datetime: _datetime,
    translate._timedelta: _timedelta,
    translate._timezone: _timezone,
    **{
        convert: _stored_as_is(convert)
        for convert in (
            translate._date, translate._zoneinfo, translate._decimal, translate._uuid,
            translate._numpy_int, translate._numpy_float64,
        )
    },
}

#: Classname -> (highest ``__version__``, builder), for the translator's classnames whose
#: converter is known here; the rest (``V1Pod``, classes needing their library) fall back.
_BUILDERS: dict[str, tuple[int, Callable[..., Any]]] = {
    name: (version, _BY_CONVERTER[convert])
    for name, (version, convert) in translate._CONVERTERS.items()
    if convert in _BY_CONVERTER
}
