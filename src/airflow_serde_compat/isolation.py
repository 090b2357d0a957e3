"""Row isolation: one row that Airflow 3.1.8 cannot decode fails its own task, not the component.

Even with the bridge, some rows stay unreadable: a classname the allow-list refuses, a class missing
from the image, a damaged payload, a newer ``__version__``, a serialized DAG using a 3.2-only
feature. Unpatched, 3.1.8 decodes them inside a query result (``ExtendedJSON``), in the trigger
runner (which only survives ``TypeError``) or while loading a DAG, and the scheduler or triggerer
exits -- for every DAG. Upstream fixed the forward direction in 3.3.1 (apache/airflow#70685) by
routing such task instances through ``__fail__``; this module does the same for 3.1.8:

* ``ExtendedJSON.process_result_value``: an undecodable ``next_kwargs`` loads as
  :class:`UndecodableNextKwargs` (good rows come back from the original untouched) and is written
  back as the stored value, byte for byte, by ``process_bind_param``.
* ``airflow.models.trigger.handle_event_submit``: a task instance whose ``next_kwargs`` are
  undecodable is routed to ``__fail__`` instead of being resumed with what is left of its kwargs.
* ``Trigger._decrypt_kwargs``: a decode failure becomes :class:`UndecodableTriggerKwargs`, a
  ``TypeError``, so 3.1.8's trigger runner fails that trigger through its own path;
  ``Trigger.submit_failure`` then names the task instances it fails.
* ``DBDagBag._read_dag``: a serialized DAG that 3.1.8 cannot load is reported once and treated
  as missing, which every scheduler caller already handles.

Failures are described by classname, version and path only (:func:`~airflow_serde_compat._errors.row_error`):
never values.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
from contextlib import suppress
from typing import Any, Callable

from airflow_serde_compat import _patching
from airflow_serde_compat._errors import code_names, row_error
from airflow_serde_compat._patching import Patch, PatchSkipped, count
from airflow_serde_compat.patch import reading_trigger_kwargs
from airflow_serde_compat.translate import safe_name

__all__ = [
    "DAGBAG_READ",
    "DECRYPT_KWARGS",
    "EXTENDED_JSON",
    "HANDLE_EVENT_SUBMIT",
    "SUBMIT_FAILURE",
    "UndecodableNextKwargs",
    "UndecodableTriggerKwargs",
    "marker_class",
]

log = logging.getLogger("airflow_serde_compat")

SQLALCHEMY_UTILS = "airflow.utils.sqlalchemy"
TRIGGER = "airflow.models.trigger"
DAGBAG = "airflow.models.dagbag"
FAIL_METHOD = "__fail__"

#: What 3.1.8's decoders raise on data they cannot read (the set 3.2's own fallbacks catch, plus
#: ValueError, which UnsupportedPayload and JSONDecodeError are, OverflowError from a timestamp
#: out of range, RecursionError from a legacy row nested too deep). Anything else -- a wrong Fernet
#: key, a database error -- is not a property of one row and keeps propagating.
DECODE_ERRORS = (
    ValueError, LookupError, TypeError, ImportError, AttributeError, ArithmeticError, RecursionError,
    OSError,  # a zone name that is a directory of the tz database (IsADirectoryError)
)

REMEDY = (
    "Remedy: if [core] allowed_deserialization_classes refuses the class or this image lacks it, "
    "allow or install it and restart; if the writer is newer than this bridge, upgrade "
    "airflow-serde-compat; otherwise clear the task instance so it runs again from the start on "
    "Airflow 3.1. `airflow-serde-compat scan` lists every such row."
)


def _ti_name(ti_or_values: Any) -> str:
    get = ti_or_values.get if isinstance(ti_or_values, dict) else lambda k: getattr(ti_or_values, k, None)
    return (
        f"dag_id={get('dag_id')!r} task_id={get('task_id')!r} run_id={get('run_id')!r} "
        f"map_index={get('map_index')!r}"
    )


# --- the marker ------------------------------------------------------------------------------

_reported_rows: set[tuple] = set()


def _report_loaded_row(state: Any, key: str, error: str) -> None:
    # Loaded task instances only: history rows and pending copies are not resumed.
    if state.identity is None or state.class_.__name__ != "TaskInstance":
        return
    row = (key, state.identity)
    if row in _reported_rows:
        return
    _reported_rows.add(row)
    log.warning(
        "airflow-serde-compat: task instance %s has %s that Airflow 3.1 cannot decode (%s). It is kept as "
        "stored; the task instance is failed (retries apply) when it resumes instead of stopping this "
        "process. %s",
        _ti_name(state.dict),
        key,
        error,
        REMEDY,
    )


def _build_marker_class() -> type:
    from sqlalchemy.ext.mutable import MutableDict

    class _ReportingParents(weakref.WeakKeyDictionary):
        # SQLAlchemy's MutableDict load listener records each owning row here: the one place a
        # value learns which row it belongs to, and only markers pay for it.
        def __init__(self, error: str):
            super().__init__()
            self._error = error

        def __setitem__(self, state: Any, key: Any) -> None:
            super().__setitem__(state, key)
            try:
                _report_loaded_row(state, key, self._error)
            except Exception:  # pragma: no cover - naming the row must never break a load
                log.debug("airflow-serde-compat: could not name an undecodable row", exc_info=True)

    class UndecodableNextKwargs(MutableDict):
        """A ``next_kwargs`` value Airflow 3.1 cannot decode, standing in for it in a loaded row.

        A ``MutableDict`` so that SQLAlchemy's load listener keeps it as it is. Empty, so no code
        reads 3.2 data as kwargs; truthy, so ``ti.next_kwargs or {}`` does not take it for "no
        kwargs"; written back as the stored value (``process_bind_param``), so copying or saving
        the row never replaces what was stored.
        """

        def __init__(self, raw: Any, err: BaseException):
            super().__init__()
            self.raw = raw
            self.error = row_error(err)
            self.classname = getattr(err, "classname", None)
            self.version = getattr(err, "version", None)
            self.path = getattr(err, "path", None)

        @property
        def _parents(self) -> Any:
            parents = self.__dict__.get("_reporting_parents")
            if parents is None:
                parents = self.__dict__["_reporting_parents"] = _ReportingParents(self.error)
            return parents

        def __bool__(self) -> bool:
            return True

        def __eq__(self, other: object) -> bool:
            # SQLAlchemy compares old and new values before writing: equal to its stored value only.
            return isinstance(other, UndecodableNextKwargs) and other.raw == self.raw

        def __ne__(self, other: object) -> bool:
            return not self.__eq__(other)

        __hash__ = None  # type: ignore[assignment]

        def __repr__(self) -> str:
            return f"<undecodable next_kwargs: {self.error}>"

    UndecodableNextKwargs.__module__ = __name__
    return UndecodableNextKwargs


_marker_class: type | None = None


def marker_class() -> type:
    """The marker type; built on first use because it subclasses SQLAlchemy's ``MutableDict``
    and this module is imported before Airflow (and SQLAlchemy) are."""
    global _marker_class
    if _marker_class is None:
        with _patching.lock:
            if _marker_class is None:
                _marker_class = _build_marker_class()
    return _marker_class


def __getattr__(name: str) -> Any:
    if name == "UndecodableNextKwargs":
        return marker_class()
    raise AttributeError(name)


# --- ExtendedJSON (task_instance / task_instance_history .next_kwargs) -------------------------


def _next_kwargs_types() -> list[Any]:
    found = []
    for module_name, cls_name in (
        ("airflow.models.taskinstance", "TaskInstance"),
        ("airflow.models.taskinstancehistory", "TaskInstanceHistory"),
    ):
        cls = getattr(sys.modules.get(module_name), cls_name, None)
        table = getattr(cls, "__table__", None)
        if table is not None and "next_kwargs" in table.c:
            found.append(table.c.next_kwargs.type)
    return found


def _is_next_kwargs(type_: Any, dialect: Any) -> bool:
    # SQLAlchemy runs a per-dialect copy of the column's type; dialect_impl() is that memoized copy.
    for column_type in _next_kwargs_types():
        if type_ is column_type:
            return True
        with suppress(Exception):
            if dialect is not None and column_type.dialect_impl(dialect) is type_:
                return True
    return False


def _process_result_value(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    marker = marker_class()
    extended = module.ExtendedJSON

    def process_result_value(self: Any, value: Any, dialect: Any) -> Any:
        try:
            return original(self, value, dialect)
        except DECODE_ERRORS as err:
            # Only next_kwargs get a stand-in: their readers are the ones this module makes safe.
            # Other ExtendedJSON columns (context carriers, task_map.keys) fail as before. SQLAlchemy
            # caches result processors holding this function, so restore_all() is checked here.
            if not _patching.is_patched(extended, "process_result_value") or not _is_next_kwargs(self, dialect):
                raise
            count("undecodable")
            return marker(value, err)

    return process_result_value


def _process_bind_param(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    marker = marker_class()

    def process_bind_param(self: Any, value: Any, dialect: Any) -> Any:
        if value.__class__ is marker:
            return value.raw
        return original(self, value, dialect)

    return process_bind_param


_SELF_VALUE_DIALECT = ("self", "value", "dialect")
#: Bind first: once a marker can be loaded it must never be written as an empty dict. Applied
#: together: both or neither.
EXTENDED_JSON = (
    Patch(
        SQLALCHEMY_UTILS, "ExtendedJSON.process_bind_param", _process_bind_param,
        why="an undecodable next_kwargs marker is written back as the stored value, byte for byte",
        params=_SELF_VALUE_DIALECT,
    ),
    Patch(
        SQLALCHEMY_UTILS, "ExtendedJSON.process_result_value", _process_result_value,
        why="an undecodable next_kwargs loads as a marker instead of failing the whole query",
        params=_SELF_VALUE_DIALECT,
    ),
)


# --- handle_event_submit (triggerer: a trigger fired for a task with undecodable kwargs) ------


def fail_unresumable(task_instance: Any, session: Any) -> None:
    """Route a task instance to ``__fail__``, as 3.1.8's ``Trigger.submit_failure`` and 3.3.1 do.

    The worker then raises ``TaskDeferralError`` with this message in the task log and runs the
    task's normal failure handling: retries and callbacks apply.
    """
    from airflow.models.trigger import timezone  # what 3.1.8's own submit_failure uses
    from airflow.utils.state import TaskInstanceState

    marker = task_instance.next_kwargs
    message = (
        f"airflow-serde-compat: could not resume task instance {_ti_name(task_instance)}: its stored "
        f"next_kwargs were written by Airflow 3.2 and cannot be decoded by Airflow 3.1 ({marker.error}). "
        f"{REMEDY}"
    )
    log.error("%s", message)
    count("failed_task_instances")
    task_instance.next_method = FAIL_METHOD
    task_instance.next_kwargs = {"error": message, "traceback": [message]}
    task_instance.trigger_id = None
    task_instance.state = TaskInstanceState.SCHEDULED
    task_instance.scheduled_dttm = timezone.utcnow()
    session.flush()


def _check_handle_event_submit(module: Any, original: Callable[..., Any]) -> None:
    if not all(hasattr(original, a) for a in ("register", "dispatch", "registry")):
        raise PatchSkipped(f"{TRIGGER}.handle_event_submit is not a singledispatch function")
    if inspect.signature(original).parameters["task_instance"].kind is not inspect.Parameter.KEYWORD_ONLY:
        raise PatchSkipped("handle_event_submit does not take task_instance by keyword only")
    if vars(module).get("TRIGGER_FAIL_REPR") != FAIL_METHOD:
        raise PatchSkipped(f"{TRIGGER}.TRIGGER_FAIL_REPR is not {FAIL_METHOD!r}")
    task_end = vars(module).get("BaseTaskEndEvent")
    if not isinstance(task_end, type) or task_end not in original.registry:
        raise PatchSkipped("handle_event_submit has no BaseTaskEndEvent handler")


def _handle_event_submit(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    marker = marker_class()
    task_end = module.BaseTaskEndEvent

    def handle_event_submit(event: Any, *, task_instance: Any, session: Any) -> None:
        # A task-end event sets a terminal state and never reads next_kwargs: 3.1.8 handles it.
        if task_instance.next_kwargs.__class__ is marker and not isinstance(event, task_end):
            return fail_unresumable(task_instance, session)
        return original(event, task_instance=task_instance, session=session)

    # register/dispatch/registry come along (functools.update_wrapper copies __dict__).
    return handle_event_submit


HANDLE_EVENT_SUBMIT = Patch(
    TRIGGER, "handle_event_submit", _handle_event_submit,
    why="a fired trigger whose task instance has undecodable next_kwargs routes it to __fail__",
    params=("event", "task_instance", "session"), check=_check_handle_event_submit,
)


# --- Trigger._decrypt_kwargs / submit_failure (trigger runner) --------------------------------


class UndecodableTriggerKwargs(TypeError):
    """Trigger kwargs 3.1.8 cannot decode.

    A ``TypeError`` because that is what 3.1.8's ``TriggerRunner.create_triggers`` catches: the
    runner then fails this trigger (``Trigger.submit_failure``, ``__fail__``) and keeps the others.
    """


def _decrypt_kwargs_wrapper(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    def _decrypt_kwargs(encrypted_kwargs: str) -> dict[str, Any]:
        try:
            with reading_trigger_kwargs():
                return original(encrypted_kwargs)
        except DECODE_ERRORS as err:
            if isinstance(err, UndecodableTriggerKwargs):
                raise
            count("undecodable_triggers")
            # "from None": the original's message and its chained causes may quote the data, and
            # the runner sends this exception's formatted traceback into the task log.
            raise UndecodableTriggerKwargs(
                f"airflow-serde-compat: trigger kwargs written by Airflow 3.2 cannot be decoded by "
                f"Airflow 3.1 ({row_error(err)}). The trigger is failed instead of stopping the triggerer. "
                f"{REMEDY}"
            ) from None

    return _decrypt_kwargs


DECRYPT_KWARGS = Patch(
    TRIGGER, "Trigger._decrypt_kwargs", _decrypt_kwargs_wrapper,
    why="trigger kwargs 3.1 cannot decode fail their trigger (a TypeError) instead of the triggerer",
    descriptor=staticmethod, params=("encrypted_kwargs",),
)


def _names_undecodable(exc: Any) -> bool:
    # The runner subprocess sends failures as format_exception() lines, not exception objects.
    name = UndecodableTriggerKwargs.__qualname__
    if isinstance(exc, UndecodableTriggerKwargs):
        return True
    return isinstance(exc, list) and any(isinstance(line, str) and name in line for line in exc)


def _submit_failure(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    from airflow.utils.session import NEW_SESSION, provide_session

    @provide_session
    def submit_failure(cls: Any, trigger_id: Any, exc: Any = None, session: Any = NEW_SESSION) -> None:
        if _names_undecodable(exc):
            _log_failed_trigger(trigger_id, session)
        return original(cls, trigger_id, exc=exc, session=session)

    return submit_failure


SUBMIT_FAILURE = Patch(
    TRIGGER, "Trigger.submit_failure", _submit_failure,
    why="names the task instances a trigger with undecodable kwargs fails",
    descriptor=classmethod, params=("cls", "trigger_id", "exc", "session"),
)


def _log_failed_trigger(trigger_id: Any, session: Any) -> None:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.state import TaskInstanceState

    # Columns only: loading TaskInstance objects here would decode their next_kwargs too.
    rows = session.execute(
        select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index).where(
            TI.trigger_id == trigger_id, TI.state == TaskInstanceState.DEFERRED
        )
    ).all()
    names = "; ".join(_ti_name(dict(r._mapping)) for r in rows) or "no deferred task instance"
    log.error(
        "airflow-serde-compat: trigger %s has kwargs that Airflow 3.1 cannot decode; failing it (%s) "
        "instead of stopping the triggerer. The task log holds the classname. %s",
        trigger_id,
        names,
        REMEDY,
    )


# --- DBDagBag._read_dag (scheduler, API) ------------------------------------------------------

_reported_dags: set[Any] = set()


def _dag_feature(err: BaseException) -> str:
    # Only messages that name code (a class path, a module) are repeated; others may quote values.
    seen = 0
    node: BaseException | None = err
    while node is not None and seen < 10:
        if type(node).__name__ == "_TimetableNotRegistered":
            return f"timetable {safe_name(getattr(node, 'type_string', None))!r} (not in Airflow 3.1)"
        if isinstance(node, ImportError):
            # Only the names shaped like module/class paths: what could not be imported is code.
            names = code_names(node)
            return f"{type(node).__name__} naming {', '.join(names) or 'a module'}"
        node = node.__cause__ or node.__context__
        seen += 1
    root = err
    while root.__cause__ is not None and root is not root.__cause__:
        root = root.__cause__
    return f"{type(root).__name__} while deserializing"


def _read_dag_wrapper(module: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    from airflow.exceptions import DeserializationError

    def _read_dag(self: Any, serdag: Any) -> Any:
        try:
            return original(self, serdag)
        except (DeserializationError, ValueError) as err:
            # Only what SerializedDAG raises for the data itself (_TimetableNotRegistered is a
            # ValueError it lets through unwrapped; matched by name, as importing
            # serialized_objects from this hook could be circular). A database error is not a
            # reason to treat the DAG as missing: the scheduler fails scheduled tasks of missing DAGs.
            if not isinstance(err, DeserializationError) and type(err).__name__ != "_TimetableNotRegistered":
                raise
            key = getattr(serdag, "dag_version_id", None) or getattr(serdag, "dag_id", None)
            if key not in _reported_dags:
                _reported_dags.add(key)
                count("undeserializable_dags")
                log.error(
                    "airflow-serde-compat: serialized DAG %r (dag_version_id %s) cannot be loaded by Airflow "
                    "3.1: %s. It is treated as missing (its runs are not scheduled) instead of stopping this "
                    "process. Remedy: make the DAG file parse on Airflow 3.1 without Airflow 3.2-only "
                    "features so the dag-processor writes a new version; runs pinned to this version "
                    "need clearing. `airflow-serde-compat scan --verify` finds these before start.",
                    getattr(serdag, "dag_id", None),
                    getattr(serdag, "dag_version_id", None),
                    _dag_feature(err),
                )
            return None

    return _read_dag


DAGBAG_READ = Patch(
    DAGBAG, "DBDagBag._read_dag", _read_dag_wrapper,
    why="a serialized DAG 3.1 cannot load is reported once and treated as missing",
    params=("self", "serdag"),
)
