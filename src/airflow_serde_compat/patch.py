"""The Airflow 3.1 side: what is patched, how it is undone, and what each patch checks first.

Four read paths of a 3.1.8 process meet rows written by Airflow 3.2+:

* ``BaseSerialization.deserialize`` (``task_instance.next_kwargs``, ``trigger.kwargs``, task
  runners): wrapped at class level, so every caller and 3.1's own recursion go through it.
* ``airflow.serialization.serde.deserialize`` (XCom values): 3.2 writes ``uuid.UUID``, which
  3.1's serde has no deserializer for.
* ``airflow.models.deadline.deserialize`` (``deadline.callback``): the 3.2 downgrade migration
  rebuilds it as a serde envelope holding legacy envelopes, which 3.1's serde cannot read.
* ``airflow.sdk.definitions.callback``: named by deadline alerts that the downgrade wrote back
  into serialized DAGs; task-sdk 1.1 keeps those classes in ``...definitions.deadline``.

Each patch saves the raw attribute it replaces (from ``vars()``, so a classmethod is restored
as the same descriptor) and is undone only while it is still the one in place.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import contextlib
import contextvars
import inspect
import logging
import sys
import threading
import uuid
from math import isfinite
from typing import Any, Callable, Iterator

from airflow_serde_compat.translate import (
    CLASSNAME,
    DATA,
    LEGACY_TYPES,
    TYPE,
    VAR,
    VERSION,
    UnsupportedPayload,
    check_output,
    is_legacy_envelope,
    plain_dict_to_legacy,
    safe_name,
    to_legacy,
)

__all__ = [
    "PatchSkipped",
    "apply_base_serialization",
    "apply_deadline",
    "apply_deadline_alert",
    "apply_serde",
    "apply_smart_decode",
    "counts",
    "install_callback_alias",
    "is_patched",
    "reading_trigger_kwargs",
    "restore_all",
]

log = logging.getLogger("airflow_serde_compat")

SERIALIZED_OBJECTS = "airflow.serialization.serialized_objects"
SERDE = "airflow.serialization.serde"
DEADLINE = "airflow.models.deadline"
SDK_DEADLINE = "airflow.sdk.definitions.deadline"
CALLBACK_ALIAS = "airflow.sdk.definitions.callback"
CALLBACK_SOURCE = "airflow.sdk.definitions.deadline"

#: Translations per kind in this process (serde classname, "dict", "Encoding.TYPE",
#: "failed"). Read by ``airflow-serde-compat doctor`` and the tests.
counts: dict[str, int] = {}

_lock = threading.RLock()
# (id(owner), name) -> (owner, name, original raw attribute, our replacement)
_patches: dict[tuple[int, str], tuple[Any, str, Any, Any]] = {}
_logged_failures: set[tuple[str | None, str]] = set()


class PatchSkipped(RuntimeError):
    """The target does not look like the Airflow 3.1 code this bridge was built against."""


def _replace(owner: Any, name: str, replacement: Any) -> None:
    with _lock:
        key = (id(owner), name)
        if key in _patches and vars(owner).get(name) is _patches[key][3]:
            return
        _patches[key] = (owner, name, vars(owner)[name], replacement)
        setattr(owner, name, replacement)


def is_patched(owner: Any, name: str) -> bool:
    entry = _patches.get((id(owner), name))
    return entry is not None and vars(owner).get(name) is entry[3]


def restore_all() -> list[str]:
    """Undo every patch still in place; return what could not be undone (someone wrapped on top)."""
    left = []
    with _lock:
        for key, (owner, name, original, replacement) in list(_patches.items()):
            if vars(owner).get(name) is replacement:
                setattr(owner, name, original)
                del _patches[key]
            else:
                left.append(f"{getattr(owner, '__name__', owner)}.{name}")
        _remove_callback_alias()
    return left


_stats: Any = None
_no_stats: Any = None


def _stat(name: str) -> None:
    # Airflow's Stats is a no-op unless statsd/otel is configured; never let it fail a read.
    global _stats, _no_stats
    try:
        if _stats is None:
            from airflow.metrics.base_stats_logger import NoStatsLogger
            from airflow.stats import Stats

            _stats, _no_stats = Stats, NoStatsLogger
        # With metrics off (the default) the factory is NoStatsLogger, whose incr does nothing;
        # Stats' metaclass __getattr__ would take about 1 µs per translated payload to get there.
        # Read per call, so a factory set later is still honoured.
        if getattr(type(_stats), "factory", None) is _no_stats:
            return
        _stats.incr(f"serde_compat.{name}")
    except Exception:  # pragma: no cover - metrics must not break deserialization
        log.debug("could not emit serde_compat.%s", name, exc_info=True)


#: True while 3.1 decodes ``trigger.kwargs``: the one column where 3.2.x wrote
#: ``"Encoding.TYPE"`` envelopes (apache/airflow#65973). Elsewhere such a dict is user data.
_reading_trigger_kwargs: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "airflow_serde_compat_reading_trigger_kwargs", default=False
)


@contextlib.contextmanager
def reading_trigger_kwargs() -> Iterator[None]:
    token = _reading_trigger_kwargs.set(True)
    try:
        yield
    finally:
        _reading_trigger_kwargs.reset(token)


#: Distinct failures logged per process; bounded, so rows full of made-up classnames cannot
#: grow a component's memory or flood its log.
_MAX_LOGGED_FAILURES = 256


def _failed(err: UnsupportedPayload) -> None:
    counts["failed"] = counts.get("failed", 0) + 1
    _stat("failed")
    key = (err.classname, err.reason)
    if key not in _logged_failures and len(_logged_failures) < _MAX_LOGGED_FAILURES:
        _logged_failures.add(key)
        # The message names classname, version and path only: never the row's values.
        log.error("%s", err)


def _translate(payload: Any, convert: Callable[..., Any] = to_legacy) -> Any:
    try:
        if convert is to_legacy:
            legacy = to_legacy(
                payload, resolve=_resolve_with_airflow, counts=counts, enum_keys=_reading_trigger_kwargs.get()
            )
        else:
            legacy = convert(payload, resolve=_resolve_with_airflow, counts=counts)
    except UnsupportedPayload as err:
        _failed(err)
        raise
    _stat("translated")
    return legacy


def _decoded_by_31(err: BaseException) -> UnsupportedPayload:
    # 3.1's decoders raised on a value the bridge translated (a zone name the tz database lacks,
    # a pod it cannot build...): their messages may quote the value, so only the type is kept.
    if isinstance(err, UnsupportedPayload):
        return err
    failure = UnsupportedPayload(f"Airflow 3.1 could not build the translated value ({type(err).__name__})")
    _failed(failure)
    return failure


#: The same class under the qualname a newer library reports: pandas 3 writes
#: ``pandas.DataFrame``; 3.1's serde registered its deserializer as ``pandas.core.frame...``.
_RENAMED_CLASSES = {"pandas.DataFrame": "pandas.core.frame.DataFrame"}
_AIRFLOW_PREFIX = "airflow."
_PANDAS_FRAME = "pandas.core.frame.DataFrame"
#: A DataFrame travels as compressed parquet: a small row can inflate to gigabytes (a 0.87 MB row
#: took a process to 1.7 GB). Its metadata states its cells and encoded size; larger is refused.
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_FRAME_CELLS = 1_000_000


def _check_frame_size(envelope: dict, path: str) -> None:
    def refuse(why: str) -> UnsupportedPayload:
        return UnsupportedPayload(why, path=path, classname=envelope.get(CLASSNAME), version=envelope.get(VERSION))

    data = envelope.get(DATA)
    if data.__class__ is not str:
        raise refuse("__data__ must be parquet bytes in hex")
    try:
        import io

        import pyarrow.parquet as pq

        meta = pq.read_metadata(io.BytesIO(bytes.fromhex(data)))
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        cells = meta.num_rows * max(meta.num_columns, 1)
    except Exception as err:
        raise refuse(f"not a parquet table Airflow 3.1 can read ({type(err).__name__})") from None
    if size > MAX_FRAME_BYTES or cells > MAX_FRAME_CELLS:
        raise refuse(
            f"its table has {cells} cells and {size} bytes uncompressed, over the bridge's "
            f"{MAX_FRAME_CELLS} cells / {MAX_FRAME_BYTES} bytes"
        )


def _resolve_with_airflow(envelope: dict, path: str) -> Any:
    """Legacy JSON for a classname with no legacy encoding, by 3.1's own rules.

    3.1's serde decodes it (its allow-list decides what may be imported), then 3.1's
    ``BaseSerialization.serialize`` gives exactly what a 3.1 writer would have stored.
    """
    from airflow.serialization import serde
    from airflow.serialization.serialized_objects import BaseSerialization

    original = _original(serde, "deserialize")
    classname, version = envelope.get(CLASSNAME), envelope.get(VERSION)
    if safe_name(classname) != classname:
        raise UnsupportedPayload("not a class name", path=path, classname=classname, version=version)
    if classname.startswith(_AIRFLOW_PREFIX):
        # The default allow-list is airflow.*, and Airflow's own classes decode by importing and
        # calling what their data names (a callback's path, a Param's schema regex...). No
        # Airflow class is one a 3.1 writer stored as a plain value, so none is decoded here.
        raise UnsupportedPayload(
            "an Airflow class inside an Airflow 3.2 payload: its decoder imports or runs what the row "
            "names, so the bridge does not decode it",
            path=path, classname=classname, version=version,
        )
    renamed = _RENAMED_CLASSES.get(classname)
    if renamed is not None:
        envelope = {**envelope, CLASSNAME: renamed}
    if envelope[CLASSNAME] == _PANDAS_FRAME:
        _check_frame_size(envelope, path)
    try:
        value = original(envelope)
    except ImportError as err:
        # Only the bridge's own words: the messages of modules imported on the way are not ours.
        if str(err).startswith(f"{envelope.get(CLASSNAME)} was not found in allow list"):
            why = "not found in allow list [core] allowed_deserialization_classes"
        elif isinstance(err, ModuleNotFoundError):
            why = "its module is not installed in this image"
        else:
            why = type(err).__name__
        raise UnsupportedPayload(
            f"Airflow 3.1 refuses to import it ({why})", path=path, classname=classname, version=version
        ) from None
    except Exception as err:
        raise UnsupportedPayload(
            f"Airflow 3.1's serde could not decode it ({type(err).__name__})",
            path=path,
            classname=classname,
            version=version,
        ) from None
    try:
        legacy = BaseSerialization.serialize(value)
    except Exception as err:
        raise UnsupportedPayload(
            f"Airflow 3.1 could not store what its serde decoded ({type(err).__name__})",
            path=path, classname=classname, version=version,
        ) from None
    # 3.1 decodes this next: it gets the same limits as the translator's own output.
    return check_output(legacy, path=path, classname=classname, version=version)


def _original(owner: Any, name: str) -> Any:
    entry = _patches.get((id(owner), name))
    return entry[2] if entry is not None else vars(owner)[name]


# --- BaseSerialization.deserialize -----------------------------------------------------------


def _check_base_serialization(module: Any) -> Callable[..., Any]:
    base = getattr(module, "BaseSerialization", None)
    if base is None:
        raise PatchSkipped(f"{SERIALIZED_OBJECTS} has no BaseSerialization")
    raw = vars(base).get("deserialize")
    if not isinstance(raw, classmethod):
        raise PatchSkipped("BaseSerialization.deserialize is not a classmethod")
    params = list(inspect.signature(raw.__func__).parameters)
    if params != ["cls", "encoded_var"]:
        raise PatchSkipped(f"BaseSerialization.deserialize has parameters {params}, not (cls, encoded_var)")
    from airflow.serialization.enums import Encoding

    if (Encoding.TYPE.value, Encoding.VAR.value) != (TYPE, VAR):
        raise PatchSkipped(f"legacy encoding keys are {Encoding.TYPE.value!r}/{Encoding.VAR.value!r}")
    # The primitive fast path below copies _is_primitive; only valid while nobody overrides it.
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            for attr in ("_is_primitive", "_primitive_types", "deserialize"):
                if attr in vars(obj) and not (attr == "deserialize" and _delegates(obj)):
                    raise PatchSkipped(f"{obj.__name__} overrides {attr}")
    return raw.__func__


def _delegates(cls: type) -> bool:
    # SerializedBaseOperator.deserialize only forwards to BaseSerialization.deserialize.
    try:
        source = inspect.getsource(vars(cls)["deserialize"])
    except (OSError, TypeError):
        return False
    return "BaseSerialization.deserialize(" in source


#: The container branches of 3.1.8's ``deserialize`` that the wrapper runs itself, each line
#: whitespace-normalised. Wrapping adds a Python call per node; running these two branches
#: in the wrapper saves the original's frame and its ``_is_primitive`` call per list and per
#: dict node, which more than pays for it. Only done while the original still reads exactly
#: so, in this order (primitive check, list, then TASK_CONTEXT before DICT).
_INLINED_BRANCHES = (
    "if cls._is_primitive(encoded_var): return encoded_var",
    "elif isinstance(encoded_var, list): return [cls.deserialize(v) for v in encoded_var]",
    "if not isinstance(encoded_var, dict):",
    "var = encoded_var[Encoding.VAR] type_ = encoded_var[Encoding.TYPE] if type_ == DAT.TASK_CONTEXT:",
    "elif type_ == DAT.DICT: return {k: cls.deserialize(v) for k, v in var.items()}",
)


def _branches_inlinable(func: Callable[..., Any]) -> bool:
    try:
        source = " ".join(inspect.getsource(func).split())
    except (OSError, TypeError):
        return False
    at = 0
    for branch in _INLINED_BRANCHES:
        at = source.find(branch, at)
        if at < 0:
            return False
    return True


def apply_base_serialization(module: Any) -> bool:
    """Wrap ``BaseSerialization.deserialize``; return False if it was already wrapped."""
    base = module.BaseSerialization
    if is_patched(base, "deserialize"):
        return False
    original = _check_base_serialization(module)
    inline = _branches_inlinable(original)

    def deserialize(cls: Any, encoded_var: Any) -> Any:
        # Hot path: every node of every payload (serialized DAGs included) passes here, so
        # the commonest node kinds are tested first, by exact class (JSON gives exact types).
        kind = encoded_var.__class__
        if kind is str or kind is int or kind is bool or encoded_var is None:
            return encoded_var
        if kind is dict:
            if not (len(encoded_var) == 2 and TYPE in encoded_var and VAR in encoded_var):
                # Translated once at the top of a 3.2 payload; the result is legacy throughout
                # and holds only the translator's OUTPUT_TYPES.
                legacy = _translate(encoded_var)
                try:
                    if inline and legacy.__class__ is dict and legacy.get(TYPE) == "dict":
                        return {k: cls.deserialize(v) for k, v in legacy[VAR].items()}
                    return original(cls, legacy)
                except Exception as err:
                    raise _decoded_by_31(err) from None
            if inline and encoded_var.get(TYPE) == "dict":
                var = encoded_var[VAR]
                if var.__class__ is dict:
                    return {k: cls.deserialize(v) for k, v in var.items()}
        elif kind is list:
            if inline:
                return [cls.deserialize(v) for v in encoded_var]
        elif kind is float:
            # 3.2 stored NaN/inf as numbers; 3.1 always stored str(value)
            return encoded_var if isfinite(encoded_var) else str(encoded_var)
        elif isinstance(encoded_var, cls._primitive_types):
            return encoded_var  # subclasses (str enums...): as the original's isinstance check
        try:
            return original(cls, encoded_var)
        except TypeError:
            # A 3.2 user dict that merely looks like an envelope ({"__type": "foo", "__var": 1})
            # is a plain dict, as 3.1 would have stored it wrapped. Checked only after 3.1 itself
            # rejected this very node, so legacy reads pay nothing for it.
            type_ = encoded_var.get(TYPE) if encoded_var.__class__ is dict else None
            if type_ is not None and (type_.__class__ is not str or type_ not in LEGACY_TYPES):
                legacy = _translate(encoded_var, plain_dict_to_legacy)
                try:
                    return original(cls, legacy)
                except Exception as err:
                    raise _decoded_by_31(err) from None
            raise

    deserialize.__wrapped__ = original  # type: ignore[attr-defined]
    deserialize.__qualname__ = "BaseSerialization.deserialize"
    deserialize.__doc__ = original.__doc__
    _replace(base, "deserialize", classmethod(deserialize))
    return True


# --- smart_decode_trigger_kwargs (trigger runner, trigger API views) ----------------------------


def apply_smart_decode(module: Any) -> bool:
    """Hold 3.1's second decode of each trigger kwarg to plain values.

    3.1's trigger runner decodes every kwarg value that is a dict with a ``__type`` key once
    more (asset-watcher kwargs are encoded twice). After a first decode, such a dict is user
    data, so one shaped as ``{"__type": "base_trigger", ...}`` would be imported and called.
    The bridge only lets the envelopes through whose decoders build plain values; any other
    stays the dict it is, with one ERROR line naming its type.
    """
    original = vars(module).get("smart_decode_trigger_kwargs")
    if not inspect.isfunction(original) or list(inspect.signature(original).parameters) != ["d"]:
        raise PatchSkipped("serialized_objects.smart_decode_trigger_kwargs is not a (d) function")
    if is_patched(module, "smart_decode_trigger_kwargs"):
        return False

    def smart_decode_trigger_kwargs(d: Any) -> Any:
        if d.__class__ is not dict or TYPE not in d:
            return original(d)
        try:
            check_output(d)
        except UnsupportedPayload as err:
            _failed(err)
            return d
        try:
            return original(d)
        except Exception as err:
            # The runner survives a TypeError only (it fails that one trigger); anything else
            # (a zone name the tz database lacks...) would end it, with the value in its message.
            from airflow_serde_compat.isolation import UndecodableTriggerKwargs

            failure = _decoded_by_31(err)
            raise UndecodableTriggerKwargs(f"airflow-serde-compat: a trigger kwarg cannot be decoded ({failure})") from None

    smart_decode_trigger_kwargs.__wrapped__ = original  # type: ignore[attr-defined]
    smart_decode_trigger_kwargs.__doc__ = original.__doc__
    _replace(module, "smart_decode_trigger_kwargs", smart_decode_trigger_kwargs)
    return True


# --- serde.deserialize (XCom values) ---------------------------------------------------------


def _uuid(envelope: dict, full: bool) -> Any:
    version, data = envelope.get(VERSION), envelope.get(DATA)
    if version.__class__ is not int or version > 1 or data.__class__ is not str:
        raise UnsupportedPayload(
            "expected version 1 with a UUID string", classname="uuid.UUID", version=version
        )
    try:
        value = uuid.UUID(data)
    except ValueError:
        raise UnsupportedPayload("not a UUID", classname="uuid.UUID", version=version) from None
    # task-sdk 1.2 reads it back as uuid.UUID (a stdlib value type, built here without any
    # import by name); 3.1's serde had no deserializer for it at all.
    return value if full else str(value)


def apply_serde(module: Any) -> bool:
    if is_patched(module, "deserialize"):
        return False
    original = vars(module)["deserialize"]
    params = list(inspect.signature(original).parameters)
    if params[:3] != ["o", "full", "type_hint"]:
        raise PatchSkipped(f"serde.deserialize has parameters {params}")

    def deserialize(o: Any, full: bool = True, type_hint: Any = None) -> Any:
        if o.__class__ is dict and o.get(CLASSNAME) == "uuid.UUID" and VERSION in o:
            return _uuid(o, full)
        return original(o, full, type_hint)

    deserialize.__wrapped__ = original  # type: ignore[attr-defined]
    _replace(module, "deserialize", deserialize)
    return True


# --- models.deadline (deadline.callback) -----------------------------------------------------


#: The callback classes whose ``kwargs`` the 3.2 downgrade (migration 0094) rebuilt as 3.1
#: legacy JSON inside a serde envelope: ``{"__classname__": C, "__data__": {"path", "kwargs"}}``.
DEADLINE_CALLBACK_CLASSNAMES = frozenset(
    f"airflow.sdk.definitions.{module}.{name}"
    for module in ("deadline", "callback")
    for name in ("AsyncCallback", "SyncCallback")
)


def _deadline_callback_kwargs_decoded(o: Any) -> Any:
    """``o`` with the legacy ``__data__.kwargs`` of a deadline callback replaced by its objects.

    Only that one position holds 3.1-written legacy JSON, and only for a callback classname;
    it is decoded only if it holds nothing but plain values (:func:`check_output`), so the
    outer classname is checked first and 3.1's serde still decides it under its allow-list.
    Any other legacy envelope is left for 3.1's serde, which refuses what its allow-list does.
    """
    if o.__class__ is not dict or o.get(CLASSNAME) not in DEADLINE_CALLBACK_CLASSNAMES:
        return o
    data = o.get(DATA)
    kwargs = data.get("kwargs") if data.__class__ is dict else None
    if not is_legacy_envelope(kwargs):
        return o
    classname, version = o.get(CLASSNAME), o.get(VERSION)
    check_output(kwargs, path="$.__data__.kwargs", classname=classname, version=version)
    from airflow.serialization.serialized_objects import BaseSerialization

    try:
        decoded = BaseSerialization.deserialize(kwargs)
    except Exception as err:
        raise _decoded_by_31(err) from None
    return {**o, DATA: {**data, "kwargs": decoded}}


def apply_deadline(module: Any) -> bool:
    if is_patched(module, "deserialize"):
        return False
    if "deserialize" not in vars(module):
        raise PatchSkipped(f"{DEADLINE} does not import serde.deserialize")
    serde = importlib.import_module(SERDE)  # already imported by the module being patched

    def deserialize(o: Any, full: bool = True, type_hint: Any = None) -> Any:
        # Looked up per call so the serde patch (uuid) applies, or not once undone.
        try:
            o = _deadline_callback_kwargs_decoded(o)
        except UnsupportedPayload as err:
            _failed(err)
            raise
        return serde.deserialize(o, full, type_hint)

    deserialize.__wrapped__ = vars(module)["deserialize"]  # type: ignore[attr-defined]
    _replace(module, "deserialize", deserialize)
    return True


# --- DeadlineAlert.deserialize_deadline_alert (serialized_dag.data) -----------------------


def apply_deadline_alert(module: Any) -> bool:
    """Accept the JSON strings the 3.2 downgrade wrote for deadline alert fields on SQLite/MySQL.

    Migration 0101's downgrade copies ``reference``/``callback`` through an untyped column, so
    outside PostgreSQL they land in ``serialized_dag.data`` as JSON text, not objects.
    """
    alert = getattr(module, "DeadlineAlert", None)
    if alert is None or not isinstance(vars(alert).get("deserialize_deadline_alert"), classmethod):
        raise PatchSkipped("DeadlineAlert.deserialize_deadline_alert is not a classmethod")
    if is_patched(alert, "deserialize_deadline_alert"):
        return False
    original = vars(alert)["deserialize_deadline_alert"].__func__

    def deserialize_deadline_alert(cls: Any, encoded_data: dict) -> Any:
        data = encoded_data.get(VAR, encoded_data) if encoded_data.__class__ is dict else None
        if data.__class__ is dict and any(data.get(f).__class__ is str for f in ("reference", "callback")):
            import json

            data = {k: json.loads(v) if k in ("reference", "callback") and v.__class__ is str else v
                    for k, v in data.items()}
            encoded_data = {TYPE: encoded_data.get(TYPE, "deadline_alert"), VAR: data}
        return original(cls, encoded_data)

    deserialize_deadline_alert.__wrapped__ = original  # type: ignore[attr-defined]
    _replace(alert, "deserialize_deadline_alert", classmethod(deserialize_deadline_alert))
    return True


# --- airflow.sdk.definitions.callback alias ------------------------------------------------


class _CallbackAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``airflow.sdk.definitions.callback`` from task-sdk 1.1's ``...deadline``.

    Appended to ``sys.meta_path``, so a task-sdk that has the real module always wins.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != CALLBACK_ALIAS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return None

    def exec_module(self, module: Any) -> None:
        source = importlib.import_module(CALLBACK_SOURCE)
        names = ("Callback", "AsyncCallback", "SyncCallback")
        for name in names:
            setattr(module, name, getattr(source, name))
        module.__all__ = list(names)


_alias_finder = _CallbackAliasFinder()


def install_callback_alias() -> bool:
    if _alias_finder in sys.meta_path:
        return False
    sys.meta_path.append(_alias_finder)
    return True


def _remove_callback_alias() -> None:
    if _alias_finder in sys.meta_path:
        sys.meta_path.remove(_alias_finder)
    module = sys.modules.get(CALLBACK_ALIAS)
    if module is not None and getattr(module, "__loader__", None) is _alias_finder:
        del sys.modules[CALLBACK_ALIAS]
