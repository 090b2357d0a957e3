"""The Airflow 3.1 read paths that meet rows written by Airflow 3.2+, and what each patch does.

* ``BaseSerialization.deserialize`` (``task_instance.next_kwargs``, ``trigger.kwargs``, task
  runners): wrapped at class level, so every caller and 3.1's own recursion go through it.
* ``serialized_objects.smart_decode_trigger_kwargs`` (the trigger runner's second decode).
* ``airflow.serialization.serde.deserialize`` (XCom values): 3.2 writes ``uuid.UUID``, which
  3.1's serde has no deserializer for.
* ``airflow.models.deadline.deserialize`` (``deadline.callback``): the 3.2 downgrade migration
  rebuilds it as a serde envelope holding legacy envelopes, which 3.1's serde cannot read.
* ``DeadlineAlert.deserialize_deadline_alert`` (``serialized_dag.data``).
* ``airflow.sdk.definitions.callback`` (:mod:`airflow_serde_compat._callback_alias`): named by
  deadline alerts that the downgrade wrote back into serialized DAGs.

Each is a :class:`~airflow_serde_compat._patching.Patch`; finding, checking, wrapping and
undoing them is :mod:`airflow_serde_compat._patching`'s job.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import logging
import uuid
from math import isfinite
from typing import Any, Callable, Iterator

from airflow_serde_compat import _direct, _patching
from airflow_serde_compat._patching import Patch, PatchSkipped, count, counts
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
    "BASE_SERIALIZATION",
    "DEADLINE",
    "DEADLINE_ALERT",
    "SERDE",
    "SMART_DECODE",
    "reading_trigger_kwargs",
]

log = logging.getLogger("airflow_serde_compat")

SERIALIZED_OBJECTS = "airflow.serialization.serialized_objects"
SERDE_MODULE = "airflow.serialization.serde"
DEADLINE_MODULE = "airflow.models.deadline"
SDK_DEADLINE_MODULE = "airflow.sdk.definitions.deadline"

_logged_failures: set[tuple[str | None, str]] = set()


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
    count("failed")
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
    _patching.stat("translated")
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

    original = _patching.original_of(serde, "deserialize")
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


# --- BaseSerialization.deserialize -----------------------------------------------------------


def _check_base_serialization(module: Any, original: Callable[..., Any]) -> None:
    from airflow.serialization.enums import Encoding

    if (Encoding.TYPE.value, Encoding.VAR.value) != (TYPE, VAR):
        raise PatchSkipped(f"legacy encoding keys are {Encoding.TYPE.value!r}/{Encoding.VAR.value!r}")
    base = module.BaseSerialization
    # The primitive fast path below copies _is_primitive; only valid while nobody overrides it.
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            for attr in ("_is_primitive", "_primitive_types", "deserialize"):
                if attr in vars(obj) and not (attr == "deserialize" and _delegates(obj)):
                    raise PatchSkipped(f"{obj.__name__} overrides {attr}")


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


#: The branches of 3.1.8's ``deserialize`` whose objects :mod:`airflow_serde_compat._direct`
#: builds itself, with the same constructors looked up in the same module globals. Its one-walk
#: decode is only used while the original still reads exactly so.
_DIRECT_BRANCHES = (
    "elif type_ == DAT.DATETIME: return from_timestamp(var)",
    "elif type_ == DAT.TIMEDELTA: return datetime.timedelta(seconds=var)",
    "elif type_ == DAT.TIMEZONE: return decode_timezone(var)",
    "elif type_ == DAT.SET: return {cls.deserialize(v) for v in var}",
    "elif type_ == DAT.TUPLE: return tuple(cls.deserialize(v) for v in var)",
)


def _direct_decoder(module: Any, original: Callable[..., Any]) -> Callable[..., Any] | None:
    namespace = getattr(original, "__globals__", None)
    if namespace is not module.__dict__ or not all(
        callable(namespace.get(name)) for name in ("from_timestamp", "decode_timezone")
    ):
        return None
    try:
        source = " ".join(inspect.getsource(original).split())
    except (OSError, TypeError):
        return None
    if not all(branch in source for branch in _DIRECT_BRANCHES):
        return None
    return _direct.decoder(namespace)


def _base_serialization_deserialize(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    inline = _branches_inlinable(original)
    # The direct decode returns 3.1's objects for the whole payload, so it also stands for the
    # container branches the wrapper runs itself: only with those checked too.
    decode = _direct_decoder(module, original) if inline else None

    def deserialize(cls: Any, encoded_var: Any) -> Any:
        # Hot path: every node of every payload (serialized DAGs included) passes here, so
        # the commonest node kinds are tested first, by exact class (JSON gives exact types).
        kind = encoded_var.__class__
        if kind is str or kind is int or kind is bool or encoded_var is None:
            return encoded_var
        if kind is dict:
            if not (len(encoded_var) == 2 and TYPE in encoded_var and VAR in encoded_var):
                # The top of a 3.2 payload. Mostly plain values: built in one walk; anything
                # else (and any doubt) is translated once, legacy throughout and holding only
                # the translator's OUTPUT_TYPES, and decoded by 3.1.
                if decode is not None:
                    try:
                        value = decode(encoded_var, _reading_trigger_kwargs.get(), counts)
                    except Exception:
                        pass  # _direct.Fallback or a failure: the translator's path decides, errors included
                    else:
                        _patching.stat("translated")
                        return value
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

    return deserialize


BASE_SERIALIZATION = Patch(
    SERIALIZED_OBJECTS, "BaseSerialization.deserialize", _base_serialization_deserialize,
    why="reads 3.2 payloads (translated once at their top) as 3.1's own legacy JSON",
    descriptor=classmethod, params=("cls", "encoded_var"), check=_check_base_serialization,
)


# --- smart_decode_trigger_kwargs (trigger runner, trigger API views) ----------------------------


def _smart_decode(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
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

    return smart_decode_trigger_kwargs


SMART_DECODE = Patch(
    SERIALIZED_OBJECTS, "smart_decode_trigger_kwargs", _smart_decode,
    why=(
        "3.1's trigger runner decodes each trigger kwarg once more; after a first decode a dict "
        "shaped as {'__type': 'base_trigger', ...} is user data and would be imported and called. "
        "Only envelopes whose decoders build plain values get through (check_output)"
    ),
    params=("d",),
)


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


def _serde_deserialize(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    def deserialize(o: Any, full: bool = True, type_hint: Any = None) -> Any:
        if o.__class__ is dict and o.get(CLASSNAME) == "uuid.UUID" and VERSION in o:
            return _uuid(o, full)
        return original(o, full, type_hint)

    return deserialize


SERDE = Patch(
    SERDE_MODULE, "deserialize", _serde_deserialize,
    why="uuid.UUID XComs (3.2 writes them; 3.1's serde has no deserializer for them)",
    params=("o", "full", "type_hint"), prefix=True,
)


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


def _deadline_deserialize(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    serde = importlib.import_module(SERDE_MODULE)  # already imported by the module being patched

    def deserialize(o: Any, full: bool = True, type_hint: Any = None) -> Any:
        # Looked up per call so the serde patch (uuid) applies, or not once undone.
        try:
            o = _deadline_callback_kwargs_decoded(o)
        except UnsupportedPayload as err:
            _failed(err)
            raise
        return serde.deserialize(o, full, type_hint)

    return deserialize


DEADLINE = Patch(
    DEADLINE_MODULE, "deserialize", _deadline_deserialize,
    why="deadline.callback: the 3.2 downgrade nests 3.1 legacy JSON in a serde envelope",
    params=("o", "full", "type_hint"), prefix=True,
)


# --- DeadlineAlert.deserialize_deadline_alert (serialized_dag.data) -----------------------


def _deserialize_deadline_alert(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    """Accept the JSON strings the 3.2 downgrade wrote for deadline alerts on SQLite/MySQL.

    Migration 0101's downgrade copies them through an untyped column, so outside PostgreSQL they
    land in ``serialized_dag.data`` as JSON text, not objects: the ``reference``/``callback``
    fields (SQLite) or the whole alert (MariaDB).
    """

    def deserialize_deadline_alert(cls: Any, encoded_data: dict) -> Any:
        if encoded_data.__class__ is str and encoded_data[:1] == "{":
            import json

            # MariaDB: the whole alert came back as JSON text (parsed only, nothing is called).
            encoded_data = json.loads(encoded_data)
        data = encoded_data.get(VAR, encoded_data) if encoded_data.__class__ is dict else None
        if data.__class__ is dict and any(data.get(f).__class__ is str for f in ("reference", "callback")):
            import json

            data = {k: json.loads(v) if k in ("reference", "callback") and v.__class__ is str else v
                    for k, v in data.items()}
            encoded_data = {TYPE: encoded_data.get(TYPE, "deadline_alert"), VAR: data}
        return original(cls, encoded_data)

    return deserialize_deadline_alert


DEADLINE_ALERT = Patch(
    SDK_DEADLINE_MODULE, "DeadlineAlert.deserialize_deadline_alert", _deserialize_deadline_alert,
    why="serialized_dag.data: deadline alert fields the 3.2 downgrade stored as JSON text",
    descriptor=classmethod,
)
