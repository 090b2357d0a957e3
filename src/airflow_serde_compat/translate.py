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

Row data is untrusted (trigger events carry outside data), and 3.1's legacy decoders import and
call what a ``{"__type", "__var"}`` envelope names (``base_trigger``, ``airflow_exc_ser``, ``param``,
...). So inside a 3.2 payload a legacy envelope is only read where 3.2's own serde reads one, and
only for the types it reads there (:data:`NESTED_LEGACY_TYPES`: containers and ``timedelta``);
any other legacy type there is refused. The output holds nothing but :data:`OUTPUT_TYPES`, whose
3.1 decoders build plain values without importing anything a row names.
"""

from __future__ import annotations

import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict

__all__ = [
    "LEGACY_TYPES",
    "MAX_DEPTH",
    "NESTED_LEGACY_TYPES",
    "OUTPUT_TYPES",
    "SERDE_VERSIONS",
    "Resolver",
    "UnsupportedPayload",
    "check_output",
    "is_legacy_envelope",
    "legacy_throughout",
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

#: Legacy types read inside a 3.2 payload: exactly those Airflow 3.2.1's serde reads there
#: (``_convert``: ``dict`` unwrapped; ``tuple``/``set``/``timedelta`` through
#: ``OLD_TYPE_TO_FULL_QUALNAME``). It refuses every other legacy type in that position, and so
#: does the bridge: 3.1 would build those by importing and calling what the row names.
NESTED_LEGACY_TYPES = frozenset({"dict", "tuple", "set", "timedelta"})

#: What 3.2.x's ``encode_trigger`` put under ``"Encoding.TYPE"`` keys (apache/airflow#65973) that
#: 3.1 decodes into plain values; only repaired in trigger kwargs (``enum_keys=True``).
ENUM_KEY_TYPES = frozenset({"dict", "tuple", "set", "timedelta", "datetime", "timezone"})

#: Every ``__type`` the translator may emit. Their 3.1 decoders build plain values (containers,
#: datetimes, durations, timezones; a ``V1Pod`` from its fixed OpenAPI model) and import
#: nothing named by the data. :func:`check_output` holds a resolver's result to the same set.
OUTPUT_TYPES = frozenset({"dict", "tuple", "set", "datetime", "timedelta", "timezone", "k8s.V1Pod"})

#: Bounds of what 3.1's decoders accept without OverflowError (datetime years 1-9999, with a
#: day's margin for the UTC conversion; timedelta.max in seconds).
MIN_TIMESTAMP = -62135596800.0 + 86400
MAX_TIMESTAMP = 253402300799.0 - 86400
MAX_TIMEDELTA_SECONDS = 86399999999999.0
MAX_OFFSET_SECONDS = 86400

#: Deeper payloads are refused with a clear error rather than a RecursionError. Each level
#: costs about three interpreter frames, and Python's default limit is 1000 for the whole
#: stack; real kwargs are a handful of levels deep.
MAX_DEPTH = 200

Resolver = Callable[[Dict[str, Any], str], Any]


class UnsupportedPayload(ValueError):
    """A 3.2-format value that cannot be translated for Airflow 3.1 without guessing."""

    def __init__(self, reason: str, *, path: str | None = "$", classname: Any = None, version: Any = None):
        # classname and version come from the row: kept only when they have the shape of a
        # class name / an int, so an error never carries arbitrary row data.
        self.reason = reason
        self.path = path or "$"
        self.classname = safe_name(classname) if classname is not None else None
        self.version = version if version.__class__ is int else (None if version is None else "<not an int>")
        path = self.path
        classname, version = self.classname, self.version
        what = f"classname {classname!r} version {version!r}" if classname is not None else "value"
        super().__init__(
            f"airflow-serde-compat cannot translate the Airflow 3.2 serde {what} at {path}: {reason}"
        )


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def safe_name(value: Any, limit: int = 200) -> str:
    """``value`` if it looks like a dotted class name, else a placeholder: safe to log."""
    if (
        value.__class__ is str
        and 0 < len(value) <= limit
        and not value[0].isdigit()
        and value[0] != "."
        and _NAME_CHARS.issuperset(value)
    ):
        return value
    return "<not a class name>"


def _key(key: Any) -> str:
    # Path segments name kwargs keys; outside data (event payloads) may use anything as a key.
    return key if key.__class__ is str and len(key) <= 64 and key.isidentifier() else "<key>"


def is_legacy_envelope(node: Any) -> bool:
    """True for a 3.1 ``{"__type": T, "__var": V}`` node (exactly those two keys)."""
    return node.__class__ is dict and len(node) == 2 and TYPE in node and VAR in node


def legacy_throughout(payload: Any) -> bool:
    """True if :func:`to_legacy` finds nothing to translate in ``payload`` (3.1's own data).

    The rule of :meth:`_Translator.top` without building its output: legacy envelopes from the
    top down, recursing where it recurses. Used by the scan for the common row (most rows are
    legacy long after the rollback). Past :data:`MAX_DEPTH` it says False, and :func:`to_legacy`
    gives the verdict.
    """
    if payload.__class__ is not dict and payload.__class__ is not list:
        return True
    # Only containers go on the stack: a scalar leaf has nothing to check, and skipping it here
    # saves a tuple, a push and a pop per leaf (most nodes of a row are leaves).
    stack = [(payload, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            return False
        depth += 1
        if node.__class__ is dict:
            if len(node) != 2 or TYPE not in node or VAR not in node:
                return False
            type_, var = node[TYPE], node[VAR]
            if type_.__class__ is not str or type_ not in LEGACY_TYPES:
                return False
            if type_ == "dict" and var.__class__ is dict:
                for v in var.values():
                    if v.__class__ is dict or v.__class__ is list:
                        push((v, depth))
            elif (type_ == "tuple" or type_ == "set") and var.__class__ is list:
                push((var, depth - 1))  # one level with its list, as the translator counts it
        else:
            for v in node:
                if v.__class__ is dict or v.__class__ is list:
                    push((v, depth))
    return True


def to_legacy(
    payload: Any,
    *,
    resolve: Resolver | None = None,
    counts: dict[str, int] | None = None,
    enum_keys: bool = False,
) -> Any:
    """Return the Airflow 3.1 legacy JSON for a 3.2 payload (legacy parts are kept as they are).

    Args:
        payload: parsed JSON (``dict``/``list``/primitives) as 3.2 stored it.
        resolve: called as ``resolve(envelope, path)`` for serde classnames that need their
            library; must return legacy JSON or raise.
        counts: if given, incremented per translated kind (a serde classname, ``"dict"`` for
            a bare dict, ``"Encoding.TYPE"`` for #65973 envelopes).
        enum_keys: the payload is trigger kwargs: repair ``"Encoding.TYPE"``/``"Encoding.VAR"``
            envelopes (apache/airflow#65973) and read the legacy envelopes of :data:`ENUM_KEY_TYPES`
            that 3.2.x/3.3.x's ``encode_trigger`` wrote per asset-watcher kwarg. Anywhere else such
            dicts are user data, as 3.1 and 3.2 read them.

    Raises:
        UnsupportedPayload: and nothing else, whatever the payload holds.
    """
    # First pass without paths: building "$.a.b[2]" for every node cost as much as the rest of
    # the walk. Paths only matter for an error or a resolver call, so anything that needs one
    # (or any error at all) reruns the walk from the top with paths: same result, same error.
    seen: dict[str, int] = {}
    try:
        legacy = _Translator(resolve, seen, enum_keys).top(payload, None, 0)
    except Exception:
        legacy = _RETRY
    if legacy is _RETRY:
        # Outside the except block, so the error below carries no first-pass exception as context.
        seen.clear()
        try:
            legacy = _Translator(resolve, seen, enum_keys).top(payload, "$", 0)
        except UnsupportedPayload:
            raise
        except RecursionError:
            # Only reachable when the caller's own stack was already deep.
            raise UnsupportedPayload("nested too deeply for this interpreter's recursion limit") from None
        except Exception as err:
            # Not JSON (a Python caller's object, a key that is not a string...): type only.
            raise UnsupportedPayload(f"not a JSON value ({type(err).__name__})") from None
        finally:
            _merge(counts, seen)
        return legacy
    _merge(counts, seen)
    return legacy


_RETRY: Any = object()


#: Kinds counted by name per process; past this, new names are counted as "(other)", so rows
#: full of made-up classnames cannot grow a long-running component's memory.
MAX_COUNTED_KINDS = 256


_SAFE_KINDS: dict[str, str] = {}


def _merge(counts: dict[str, int] | None, seen: dict[str, int]) -> None:
    if counts is None:
        return
    for kind, n in seen.items():
        if kind not in counts:
            safe = _SAFE_KINDS.get(kind)
            if safe is None:
                safe = safe_name(kind) if kind != ENUM_TYPE else kind
                # The scan merges into a fresh dict per row: the same few names, a million times.
                # Bounded in entries and in length, since the names come from rows.
                if len(_SAFE_KINDS) < MAX_COUNTED_KINDS and len(kind) <= 200:
                    _SAFE_KINDS[kind] = safe
            kind = safe
            if len(counts) >= MAX_COUNTED_KINDS and kind not in counts:
                kind = "(other)"
        counts[kind] = counts.get(kind, 0) + n


def plain_dict_to_legacy(
    mapping: dict, *, resolve: Resolver | None = None, counts: dict[str, int] | None = None
) -> dict:
    """Like :func:`to_legacy`, for a dict that is user data even if it looks like an envelope."""
    seen: dict[str, int] = {}
    translator = _Translator(resolve, seen, False)
    translator.count("dict")
    try:
        return {TYPE: "dict", VAR: translator.items(mapping, "$", 0)}
    except UnsupportedPayload:
        raise
    except Exception as err:
        raise UnsupportedPayload(f"not a JSON value ({type(err).__name__})") from None
    finally:
        _merge(counts, seen)  # bounded, as in to_legacy


def check_output(legacy: Any, *, path: str = "$", classname: Any = None, version: Any = None) -> Any:
    """Return ``legacy`` if it only holds :data:`OUTPUT_TYPES` envelopes; raise otherwise.

    For legacy JSON the bridge did not build itself (a resolver's ``BaseSerialization.serialize``
    of an allow-listed object): 3.1 then decodes it, so it gets the translator's own limits.
    """

    def refuse(reason: str) -> UnsupportedPayload:
        return UnsupportedPayload(reason, path=path, classname=classname, version=version)

    stack = [(legacy, 0)]
    while stack:
        node, depth = stack.pop()
        cls = node.__class__
        if node is None or cls in (str, int, bool, float):
            continue
        if depth > MAX_DEPTH:
            raise refuse(f"nested deeper than {MAX_DEPTH} levels")
        if cls is list:
            stack.extend((v, depth + 1) for v in node)
            continue
        if cls is not dict:
            raise refuse(f"not a JSON value: {cls.__name__}")
        type_ = node.get(TYPE)
        if len(node) != 2 or VAR not in node or type_.__class__ is not str or type_ not in OUTPUT_TYPES:
            raise refuse(
                f"Airflow 3.1 would store it as a legacy {safe_name(type_)!r} envelope, which the bridge "
                "does not hand to 3.1's decoders"
            )
        var = node[VAR]
        if type_ == "dict":
            if var.__class__ is not dict:
                raise refuse("a legacy dict envelope must hold an object")
            stack.extend((v, depth + 1) for v in var.values())
        elif type_ in ("tuple", "set"):
            if var.__class__ is not list:
                raise refuse(f"a legacy {type_} envelope must hold a list")
            stack.extend((v, depth + 1) for v in var)
        elif type_ == "k8s.V1Pod":
            if var.__class__ is not dict or not _plain_json(var, depth):
                raise refuse("a legacy k8s.V1Pod envelope must hold plain JSON")
        else:
            _plain_leaf(type_, var, refuse)
    return legacy


#: The kubernetes client parses pod fields named like these with dateutil, whose cost grows
#: faster than the string (a 300,000-digit creationTimestamp took 44 s): real ones are short.
_POD_TIME_SUFFIXES = ("Timestamp", "Time", "At")
MAX_POD_TIME_LENGTH = 64


def _plain_json(node: Any, depth: int) -> bool:
    """True for JSON data (any dicts) no deeper than MAX_DEPTH: 3.1 reads it field by field."""
    stack = [(node, depth)]
    while stack:
        node, depth = stack.pop()
        cls = node.__class__
        if node is None or cls in (str, int, bool, float):
            continue
        if depth > MAX_DEPTH:
            return False
        if cls is list:
            stack.extend((v, depth + 1) for v in node)
        elif cls is dict:
            for k, v in node.items():
                if k.__class__ is not str:
                    return False
                if k.endswith(_POD_TIME_SUFFIXES) and v.__class__ is str and len(v) > MAX_POD_TIME_LENGTH:
                    return False
            stack.extend((v, depth + 1) for v in node.values())
        else:
            return False
    return True


def _plain_leaf(type_: str, var: Any, refuse: Callable[[str], Exception]) -> None:
    if type_ == "datetime":
        if var.__class__ not in (int, float) or not MIN_TIMESTAMP <= var <= MAX_TIMESTAMP:
            raise refuse("a legacy datetime must be a timestamp between the years 1 and 9999")
    elif type_ == "timedelta":
        if var.__class__ not in (int, float) or not -MAX_TIMEDELTA_SECONDS <= var <= MAX_TIMEDELTA_SECONDS:
            raise refuse("a legacy timedelta must be a number of seconds within timedelta's range")
    elif type_ == "timezone":
        _timezone_value(var, refuse)


def _timezone_value(var: Any, refuse: Callable[[str], Exception]) -> Any:
    # A zone name (pendulum looks it up in the tz database, which normalises the key) or an
    # offset in seconds. Anything else makes 3.1's parser raise with the value in its message.
    if var.__class__ is int and -MAX_OFFSET_SECONDS < var < MAX_OFFSET_SECONDS:
        return var
    if var.__class__ is str and 0 < len(var) <= 255 and "\x00" not in var:
        return var
    raise refuse("a timezone must be a zone name or an offset in seconds under a day")


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

    __slots__ = ("counts", "enum_keys", "resolve")

    def __init__(self, resolve: Resolver | None, counts: dict[str, int] | None = None, enum_keys: bool = False):
        self.resolve = resolve
        self.counts = counts
        self.enum_keys = enum_keys

    def count(self, kind: str) -> None:
        if self.counts is not None:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    # The path-less pass (path None) loops instead of using comprehensions: on Python < 3.12 a
    # comprehension that reads self/depth makes node() create closure cells on every call,
    # leaves included. The comprehensions that build paths live in helpers for the same reason.

    def top(self, node: Any, path: str | None, depth: int) -> Any:
        """A payload as 3.1 reads it: its legacy part, down from the top, is 3.1's own data.

        3.1 hands a legacy envelope to its decoders as it is; so does the bridge, for a value
        whose envelopes all the way up are legacy (a row 3.1 or an old worker wrote). What 3.1
        reaches below a bare dict or a serde envelope is 3.2 data: :meth:`node`'s rules.
        """
        cls = node.__class__
        if cls is list:
            if depth > MAX_DEPTH:
                raise UnsupportedPayload(f"nested deeper than {MAX_DEPTH} levels", path=path)
            if path is None:
                return [self.top(v, None, depth + 1) for v in node]
            return [self.top(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        if cls is not dict or not (len(node) == 2 and TYPE in node and VAR in node):
            return self.node(node, path, depth)
        type_, var = node[TYPE], node[VAR]
        if type_.__class__ is not str or type_ not in LEGACY_TYPES:
            # 3.1 raises "Invalid type" for it; the bridge then reads it as the user dict it is.
            return self.user_dict(node, path, depth)
        if depth > MAX_DEPTH:
            raise UnsupportedPayload(f"nested deeper than {MAX_DEPTH} levels", path=path)
        if type_ == "dict" and var.__class__ is dict:
            if path is None:
                return {TYPE: type_, VAR: {k: self.top(v, None, depth + 1) for k, v in var.items()}}
            return {TYPE: type_, VAR: {k: self.top(v, f"{path}.{_key(k)}", depth + 1) for k, v in var.items()}}
        if (type_ == "tuple" or type_ == "set") and var.__class__ is list:
            # One level with its list, as :meth:`plain_legacy` counts it: the depth a payload may
            # have must not depend on which of the two walks reads it.
            return {TYPE: type_, VAR: self.top(var, path, depth)}
        return node

    def user_dict(self, node: dict, path: str | None, depth: int) -> dict:
        self.count("dict")
        return {TYPE: "dict", VAR: self.items(node, path, depth)}

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
            if self.enum_keys and ENUM_TYPE in node and ENUM_VAR in node:
                return self.enum_envelope(node[ENUM_TYPE], node[ENUM_VAR], path, depth, node)
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
        return {str(k): self.node(v, f"{path}.{_key(k)}", depth + 1) for k, v in mapping.items()}

    def _list_with_paths(self, items: list, path: str, depth: int) -> list:
        return [self.node(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]

    def legacy(self, type_: Any, var: Any, path: str | None, depth: int, node: dict) -> dict:
        """A ``{"__type", "__var"}`` dict inside a 3.2 payload: never trusted as 3.1 data."""
        if type_.__class__ is not str or type_ not in LEGACY_TYPES:
            # Not an envelope 3.1 could have written: a 3.2 user dict with these two keys.
            self.count("dict")
            return {TYPE: "dict", VAR: self.items(node, path, depth)}
        # Trigger kwargs of asset watchers were written by 3.2.x/3.3.x's encode_trigger, one legacy
        # envelope per value (3.3.x with real keys): the plain types of that writer are read there.
        if type_ not in (ENUM_KEY_TYPES if self.enum_keys else NESTED_LEGACY_TYPES):
            # 3.1 would import/construct what it names (base_trigger, airflow_exc_ser, param...).
            raise UnsupportedPayload(
                f"a legacy {type_!r} envelope inside an Airflow 3.2 payload: Airflow 3.1 would build it by "
                "importing or calling what the row names, and no Airflow writer puts one there "
                "(Airflow 3.2 refuses it too)",
                path=path,
            )
        return self.plain_legacy(type_, var, path, depth)

    def plain_legacy(self, type_: str, var: Any, path: str | None, depth: int) -> dict:
        # Read as 3.2's serde reads it: containers hold 3.2 values, walked with the same rules.
        if type_ == "dict":
            if var.__class__ is dict:
                return {TYPE: type_, VAR: self.items(var, path, depth)}
        elif type_ == "tuple" or type_ == "set":
            if var.__class__ is list:
                return {TYPE: type_, VAR: self.node(var, path, depth)}
        else:
            _plain_leaf(type_, var, lambda reason: UnsupportedPayload(reason, path=path))
            return {TYPE: type_, VAR: float(var) if type_ != "timezone" else var}
        raise UnsupportedPayload(f"a legacy {type_} envelope must hold a {'object' if type_ == 'dict' else 'list'}",
                                 path=path)

    def enum_envelope(self, type_: Any, var: Any, path: str | None, depth: int, node: dict) -> dict:
        # apache/airflow#65973: 3.2.x's encode_trigger wrote BaseSerialization envelopes with
        # str(Encoding.X) keys. That writer only produces plain values for watcher kwargs.
        if type_.__class__ is not str or type_ not in ENUM_KEY_TYPES:
            raise UnsupportedPayload(
                f"an 'Encoding.TYPE' envelope of type {safe_name(type_)!r}: only "
                f"{', '.join(sorted(ENUM_KEY_TYPES))} are repaired (apache/airflow#65973)",
                path=path,
            )
        self.count(ENUM_TYPE)
        return self.plain_legacy(type_, var, path, depth)

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
    if ts.__class__ is not float or not MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:  # NaN fails too
        _expect(data.__class__ is dict and "timestamp" in data, "__data__ must hold a timestamp", env, path)
        _expect(
            ts.__class__ in (int, float) and MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP,
            "timestamp must be a number between the years 1 and 9999",
            env,
            path,
        )
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
    _expect(
        -MAX_TIMEDELTA_SECONDS <= seconds <= MAX_TIMEDELTA_SECONDS,  # NaN fails too
        "__data__ must be a number of seconds within timedelta's range",
        env,
        path,
    )
    return {TYPE: "timedelta", VAR: seconds}


def _timezone(t: _Translator, data: Any, env: dict, path: str, depth: int) -> Any:
    def refuse(reason: str) -> UnsupportedPayload:
        return UnsupportedPayload(reason, path=path, classname=env.get(CLASSNAME), version=env.get(VERSION))

    return {TYPE: "timezone", VAR: _timezone_value(data, refuse)}


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
    _expect(data.__class__ is dict and _plain_json(data, depth), "__data__ must be a serialized pod", env, path)
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
