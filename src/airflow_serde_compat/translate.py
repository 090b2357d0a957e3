"""Pure translation of Airflow 3.2+ SDK-serde payloads into Airflow 3.1 legacy JSON.

Airflow 3.2 stores ``task_instance.next_kwargs`` and ``trigger.kwargs`` with the Task SDK
serde (``{"__classname__", "__version__", "__data__"}`` envelopes, bare dicts). Airflow 3.1
only reads the legacy ``BaseSerialization`` form (``{"__type", "__var"}`` envelopes, every
dict wrapped). :func:`to_legacy` rewrites the first into the second, so 3.1's own
``BaseSerialization.deserialize`` builds the Python objects: type fidelity stays Airflow's.

This module imports nothing from Airflow (the same rule as Airflow's migration
``e812941398f4``), so the CLI can use it on any machine. Anything it does not know -- an
unknown classname, a ``__version__`` newer than the writers we recorded, a malformed
envelope -- raises :class:`UnsupportedPayload` naming the classname, version and the path
in the payload. It never guesses.

Classnames that have no legacy encoding and need their library to be turned into what 3.1
would have stored (pydantic models, dataclasses, numpy float32, pandas...) are handed to a
``resolve`` callback; the Airflow patch supplies one built on 3.1's own serde and its
allow-list. Without a callback they raise :class:`UnsupportedPayload`.
"""

from __future__ import annotations

import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict

__all__ = [
    "LEGACY_TYPES",
    "MAX_DEPTH",
    "SERDE_VERSIONS",
    "Resolver",
    "UnsupportedPayload",
    "is_legacy_envelope",
    "is_serde_envelope",
    "plain_dict_to_legacy",
    "to_legacy",
]

CLASSNAME = "__classname__"
VERSION = "__version__"
DATA = "__data__"
TYPE = "__type"
VAR = "__var"
# apache/airflow#65973: 3.2.0-3.3.0 asset-watcher kwargs went through str(Encoding.X).
ENUM_TYPE = "Encoding.TYPE"
ENUM_VAR = "Encoding.VAR"

#: ``DagAttributeTypes`` values of Airflow 3.1.8, plus 3.2's ``mapped_argument`` so that
#: 3.1's own "Invalid type" error is raised for it instead of a silent plain dict.
LEGACY_TYPES = frozenset(
    {
        "dag", "asset_event_accessors", "asset_event_accessor", "operator", "datetime",
        "timedelta", "timezone", "relativedelta", "base_trigger", "airflow_exc_ser",
        "base_exc_ser", "dict", "set", "tuple", "k8s.V1Pod", "taskgroup", "edgeinfo", "param",
        "xcomref", "asset", "asset_alias", "asset_any", "asset_all", "asset_ref",
        "asset_unique_key", "asset_alias_unique_key", "connection", "task_context",
        "arg_not_set", "task_callback_request", "dag_callback_request", "task_instance_key",
        "deadline_alert", "mapped_argument",
    }
)

#: Deeper payloads are refused with a clear error rather than a RecursionError. Each level
#: costs about three interpreter frames, and Python's default limit is 1000 for the whole
#: stack; real kwargs are a handful of levels deep.
MAX_DEPTH = 200

Resolver = Callable[[Dict[str, Any], str], Any]


class UnsupportedPayload(ValueError):
    """A 3.2-format value that cannot be translated for Airflow 3.1 without guessing."""

    def __init__(self, reason: str, *, path: str = "$", classname: str | None = None, version: Any = None):
        self.reason = reason
        self.path = path
        self.classname = classname
        self.version = version
        what = f"classname {classname!r} version {version!r}" if classname is not None else "value"
        super().__init__(
            f"airflow-serde-compat cannot translate the Airflow 3.2 serde {what} at {path}: {reason}"
        )


def is_legacy_envelope(node: Any) -> bool:
    """True for a 3.1 ``{"__type": T, "__var": V}`` node (exactly those two keys)."""
    return node.__class__ is dict and len(node) == 2 and TYPE in node and VAR in node


def is_serde_envelope(node: Any) -> bool:
    """True for an SDK-serde object node; the same rule as Airflow's own migration reader."""
    return node.__class__ is dict and CLASSNAME in node and VERSION in node and TYPE not in node


def to_legacy(payload: Any, *, resolve: Resolver | None = None, counts: dict[str, int] | None = None) -> Any:
    """Return the Airflow 3.1 legacy JSON for a 3.2 payload (legacy parts are kept as they are).

    Args:
        payload: parsed JSON (``dict``/``list``/primitives) as 3.2 stored it.
        resolve: called as ``resolve(envelope, path)`` for serde classnames that need their
            library; must return legacy JSON or raise.
        counts: if given, incremented per translated kind (a serde classname, ``"dict"`` for
            a bare dict, ``"Encoding.TYPE"`` for #65973 envelopes).
    """
    # First pass without paths: building "$.a.b[2]" for every node cost as much as the rest of
    # the walk. Paths only matter for an error or a resolver call, so anything that needs one
    # (or any error at all) reruns the walk from the top with paths: same result, same error.
    seen: dict[str, int] = {}
    try:
        legacy = _Translator(resolve, seen).node(payload, None, 0)
    except (UnsupportedPayload, _NeedsPath, RecursionError):
        try:
            return _Translator(resolve, counts).node(payload, "$", 0)
        except RecursionError:
            # Only reachable when the caller's own stack was already deep.
            raise UnsupportedPayload("nested too deeply for this interpreter's recursion limit") from None
    if counts is not None:
        for kind, n in seen.items():
            counts[kind] = counts.get(kind, 0) + n
    return legacy


def plain_dict_to_legacy(
    mapping: dict, *, resolve: Resolver | None = None, counts: dict[str, int] | None = None
) -> dict:
    """Like :func:`to_legacy`, for a dict that is user data even if it looks like an envelope."""
    translator = _Translator(resolve, counts)
    translator.count("dict")
    return {TYPE: "dict", VAR: translator.items(mapping, "$", 0)}


def _float(value: float) -> Any:
    # 3.1 stores NaN/inf as str(value) (JSON has no such numbers); serde wrote the float.
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return value


def _expect(cond: bool, reason: str, env: dict, path: str) -> None:
    if not cond:
        raise UnsupportedPayload(reason, path=path, classname=env.get(CLASSNAME), version=env.get(VERSION))


class _NeedsPath(Exception):
    """Raised by the path-less first pass where a path must be known: redo it with paths."""


#: Leaves returned as they are, tested inline so that they cost no call in the path-less pass.
_PLAIN = frozenset({str, int, bool, type(None)})


class _Translator:
    """One walk. ``path`` is None throughout the fast first pass (see :func:`to_legacy`)."""

    __slots__ = ("counts", "resolve")

    def __init__(self, resolve: Resolver | None, counts: dict[str, int] | None = None):
        self.resolve = resolve
        self.counts = counts

    def count(self, kind: str) -> None:
        if self.counts is not None:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    # The path-less pass (path None) loops instead of using comprehensions: on Python < 3.12 a
    # comprehension that reads self/depth makes node() create closure cells on every call,
    # leaves included. The comprehensions that build paths live in helpers for the same reason.

    def node(self, node: Any, path: str | None, depth: int) -> Any:
        cls = node.__class__
        if cls is str or cls is int or cls is bool or node is None:
            return node
        if cls is float:
            return node if node - node == 0.0 else str(node)  # NaN/inf: 3.1 stored str(value)
        if depth > MAX_DEPTH:
            raise UnsupportedPayload(f"nested deeper than {MAX_DEPTH} levels", path=path)
        if cls is list:
            if path is not None:
                return self._list_with_paths(node, path, depth)
            depth += 1
            out = []
            for v in node:
                out.append(v if v.__class__ in _PLAIN else self.node(v, None, depth))
            return out
        if cls is not dict:
            raise UnsupportedPayload(f"not a JSON value: {cls.__name__}", path=path)
        if CLASSNAME in node:
            if VERSION in node and TYPE not in node:
                return self.envelope(node, path, depth)
            # (Two-key legacy or #65973 envelopes cannot also hold __classname__.)
            raise UnsupportedPayload(
                f"a dict with {CLASSNAME!r} needs {VERSION!r} and no {TYPE!r} to be a serde envelope",
                path=path,
            )
        if len(node) == 2:
            if TYPE in node and VAR in node:
                return self.legacy(node[TYPE], node[VAR], path, depth, node)
            if ENUM_TYPE in node and ENUM_VAR in node:
                self.count(ENUM_TYPE)
                return self.legacy(node[ENUM_TYPE], node[ENUM_VAR], path, depth, node)
        counts = self.counts
        if counts is not None:
            counts["dict"] = counts.get("dict", 0) + 1
        return {TYPE: "dict", VAR: self.items(node, path, depth)}

    def items(self, mapping: dict, path: str | None, depth: int) -> dict:
        if path is not None:
            return self._items_with_paths(mapping, path, depth)
        depth += 1
        out = {}
        for k, v in mapping.items():
            out[k if k.__class__ is str else str(k)] = v if v.__class__ in _PLAIN else self.node(v, None, depth)
        return out

    def _items_with_paths(self, mapping: dict, path: str, depth: int) -> dict:
        return {str(k): self.node(v, f"{path}.{k}", depth + 1) for k, v in mapping.items()}

    def _list_with_paths(self, items: list, path: str, depth: int) -> list:
        return [self.node(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]

    def legacy(self, type_: Any, var: Any, path: str, depth: int, node: dict) -> dict:
        if type_.__class__ is not str or type_ not in LEGACY_TYPES:
            # Not an envelope 3.1 could have written: a 3.2 user dict with these two keys.
            self.count("dict")
            return {TYPE: "dict", VAR: self.items(node, path, depth)}
        # Containers may hold 3.2 values (3.2 stores old workers' legacy payloads unchanged and
        # nests them in serde ones); other legacy types are read by 3.1's type decoders as is.
        if type_ == "dict" and var.__class__ is dict:
            return {TYPE: type_, VAR: self.items(var, path, depth)}
        if (type_ == "tuple" or type_ == "set") and var.__class__ is list:
            return {TYPE: type_, VAR: self.node(var, path, depth)}
        return {TYPE: type_, VAR: var}

    def envelope(self, env: dict, path: str, depth: int) -> Any:
        classname = env[CLASSNAME]
        version = env[VERSION]
        if classname.__class__ is not str or version.__class__ is not int:
            _expect(classname.__class__ is str, "__classname__ must be a string", env, path)
            _expect(version.__class__ is int, "__version__ must be an integer", env, path)
        counts = self.counts
        if counts is not None:
            counts[classname] = counts.get(classname, 0) + 1
        known = _CONVERTERS.get(classname)
        if known is None:
            return self.foreign(env, path, "no legacy encoding known for this class")
        max_version, convert = known
        if version > max_version:
            raise UnsupportedPayload(
                f"written by a newer serializer (this bridge knows up to version {max_version}); "
                "upgrade airflow-serde-compat",
                path=path,
                classname=classname,
                version=version,
            )
        return convert(self, env.get(DATA), env, path, depth)

    def foreign(self, env: dict, path: str | None, reason: str) -> Any:
        if path is None:
            raise _NeedsPath
        if self.resolve is None:
            raise UnsupportedPayload(
                f"{reason}; it can only be decoded inside a patched Airflow 3.1 process",
                path=path,
                classname=env.get(CLASSNAME),
                version=env.get(VERSION),
            )
        return self.resolve(env, path)


# --- converters: (translator, __data__, envelope, path, depth) -> legacy JSON -------------


def _tuple(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    _expect(data.__class__ is list, "__data__ must be a list", env, path)
    return {TYPE: "tuple", VAR: t.node(data, path, depth)}


def _set(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    _expect(data.__class__ is list, "__data__ must be a list", env, path)
    return {TYPE: "set", VAR: t.node(data, path, depth)}


def _frozenset(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 has no frozenset encoding: it stored str(value). Elements that are themselves
    # objects need decoding first, which only the patched process can do.
    _expect(data.__class__ is list, "__data__ must be a list", env, path)
    if all(v is None or v.__class__ in (str, int, bool, float) for v in data):
        return str(frozenset(data))
    return t.foreign(env, path, "frozenset of non-primitive elements")


def _datetime(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 stores datetime.timestamp() and reads it back as a UTC pendulum DateTime: the
    # writer's tz is not kept by 3.1, so it is dropped here too.
    ts = data.get("timestamp") if data.__class__ is dict else None
    if ts.__class__ is not float or ts - ts != 0.0:  # the common case, a finite float, costs no call
        _expect(data.__class__ is dict and "timestamp" in data, "__data__ must hold a timestamp", env, path)
        _expect(ts.__class__ in (int, float) and math.isfinite(ts), "timestamp must be a finite number", env, path)
    return {TYPE: "datetime", VAR: float(ts)}


def _date(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 has no date encoding: it stored str(date), the ISO form serde also writes.
    _expect(data.__class__ is str, "__data__ must be an ISO date string", env, path)
    return data


def _timedelta(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.2's own reader also takes the seconds as a string; a bool is no duration.
    try:
        seconds = float(data) if data.__class__ in (int, float, str) else math.nan
    except ValueError:
        seconds = math.nan
    _expect(math.isfinite(seconds), "__data__ must be a number of seconds", env, path)
    return {TYPE: "timedelta", VAR: seconds}


def _timezone(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    _expect(data.__class__ in (str, int), "__data__ must be a zone name or an offset", env, path)
    return {TYPE: "timezone", VAR: data}


def _zoneinfo(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 stored str(ZoneInfo), which is its key.
    _expect(data.__class__ is str, "__data__ must be a zone key", env, path)
    return data


def _decimal(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 stored str(Decimal). Serde kept only an int or a float, so trailing zeros are gone.
    _expect(data.__class__ in (int, float), "__data__ must be a number", env, path)
    try:
        return str(Decimal(str(data)))
    except InvalidOperation:  # pragma: no cover - str of an int/float always parses
        raise UnsupportedPayload("not a decimal number", path=path, classname=env[CLASSNAME], version=env[VERSION])


def _uuid(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # 3.1 stored str(UUID) (it has no UUID encoding).
    _expect(data.__class__ is str, "__data__ must be a UUID string", env, path)
    try:
        return str(uuid.UUID(data))
    except ValueError:
        raise UnsupportedPayload("not a UUID", path=path, classname=env[CLASSNAME], version=env[VERSION])


def _numpy_int(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # numpy integers and bools are not JSON primitives to 3.1: it stored str(value).
    _expect(data.__class__ in (int, bool), "__data__ must be an int or a bool", env, path)
    return str(data)


def _numpy_float64(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    # numpy.float64 subclasses float, so 3.1 stored it as a plain float.
    _expect(data.__class__ in (int, float), "__data__ must be a number", env, path)
    return _float(float(data))


def _needs_library(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    return t.foreign(env, path, "3.1 stored str(value) for this class, which needs its library")


def _pod(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    _expect(data.__class__ is dict, "__data__ must be a serialized pod", env, path)
    return {TYPE: "k8s.V1Pod", VAR: data}


_CONVERTERS: dict[str, tuple[int, Callable[..., Any]]] = {
    "builtins.tuple": (1, _tuple),
    "builtins.set": (1, _set),
    "builtins.frozenset": (1, _frozenset),
    "datetime.datetime": (2, _datetime),
    "pendulum.datetime.DateTime": (2, _datetime),
    "datetime.date": (2, _date),
    "pendulum.date.Date": (2, _date),
    "datetime.timedelta": (2, _timedelta),
    "pendulum.tz.timezone.Timezone": (1, _timezone),
    "pendulum.tz.timezone.FixedTimezone": (1, _timezone),
    "zoneinfo.ZoneInfo": (1, _zoneinfo),
    "decimal.Decimal": (1, _decimal),
    "uuid.UUID": (1, _uuid),
    "kubernetes.client.models.v1_pod.V1Pod": (1, _pod),
    "numpy.float64": (1, _numpy_float64),
    **{
        f"numpy.{name}": (1, _numpy_int)
        for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "bool_")
    },
    **{f"numpy.{name}": (1, _needs_library) for name in ("float16", "float32", "complex64", "complex128")},
}

#: Highest ``__version__`` accepted per serde classname with a built-in translation.
SERDE_VERSIONS = {name: version for name, (version, _) in _CONVERTERS.items()}
