"""The stored columns Airflow 3.2 wrote in its own format: one :class:`StoredColumn` each.

An entry says everything a command needs to know about its column, so ``scan`` (and any command
that rewrites rows later) reads the same rows the same way:

* where it is and how its rows are named (``table``, ``column``, ``identity``, ages, holders);
* ``decode``: the stored value -> its JSON text (decrypting ``trigger.kwargs``, decompressing
  ``serialized_dag.data_compressed``), or a verdict when there is none (NULL, not decryptable);
* ``classify``: JSON text -> (:class:`~airflow_serde_compat.scan.classify.Verdict`, parsed JSON);
  the parsed value is None for rows that did not need parsing (cheap legacy checks);
* ``reader``: which Airflow 3.1 reader decodes it in a running component, for ``--verify``.

Pure: no database access and no Airflow import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from airflow_serde_compat.scan.classify import (
    NULL,
    Format,
    TriggerKwargsReader,
    Verdict,
    deadline_alert_verdict,
    deadline_callback_verdict,
    has_19_digits,
    kwargs_translation,
    kwargs_verdict,
    parsed_json,
    serialized_dag_parsed,
    serialized_dag_payload,
    undecodable,
    xcom_parsed,
)

__all__ = ["COLUMNS", "HolderLookup", "Reader", "StoredColumn"]



class Reader:
    """The Airflow 3.1 code that decodes a column inside a running component (``--verify``)."""

    BASE_SERIALIZATION = "BaseSerialization.deserialize"
    TRIGGER_KWARGS = "BaseSerialization.deserialize, as Trigger._decrypt_kwargs calls it"
    DEADLINE = "airflow.models.deadline.deserialize"
    SERIALIZED_DAG = "SerializedDAG.from_dict"
    SERDE = "airflow.serialization.serde.deserialize"


@dataclass(frozen=True)
class HolderLookup:
    """Where the DAG/task of a row lives when the row itself does not name them."""

    table: str
    key: str  # column of ``table`` matched against ``row_column``
    row_column: str


@dataclass(frozen=True)
class StoredColumn:
    name: str
    table: str
    column: str
    identity: tuple[str, ...]
    decode: Callable[[Any, Mapping[str, Any], TriggerKwargsReader], Any]
    classify: Callable[[Any], Any]
    #: None: the column exists on 3.2 schemas only and no 3.1 component reads it.
    reader: str | None
    #: First non-NULL one is the row's age.
    timestamps: tuple[str, ...] = ()
    holder_columns: tuple[str, ...] = ("dag_id", "task_id")
    holder_lookup: HolderLookup | None = None
    extra_columns: tuple[str, ...] = ()
    #: Fernet-encrypted by 3.1 (plaintext where 3.2 wrote it): the report counts both.
    encrypted: bool = False
    note: str = ""
    #: The table's primary key in the 3.1 schema: how ``rewrite`` pages through it and names the
    #: row it updates (``identity`` is what reports show; it need not be unique on a 3.2 schema).
    primary_key: tuple[str, ...] = ("id",)
    #: Kwargs columns: JSON text -> (verdict, parsed JSON, the translator's legacy JSON or None),
    #: :func:`~airflow_serde_compat.scan.classify.kwargs_translation`'s; ``rewrite`` reuses it.
    translate: Callable[[Any], Any] | None = None


# --- decode: the stored value -> JSON text ------------------------------------------------------


def _stored_text(value: Any) -> Any:
    """(the JSON text a stored value holds, None) or (None, its verdict: NULL or undecodable).

    SQLite gives a JSON column numeric affinity: an XCom whose JSON is ``12345`` or ``1.5`` comes
    back as an int or float, not text. Such a scalar is its own JSON text; bytes stay bytes.
    """
    if value is None:
        return None, NULL
    if value.__class__ is str:
        return value, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if value.__class__ is int:
        return repr(value), None
    if value.__class__ is float:
        return json.dumps(value), None
    # No driver hands back another type for these columns: named by its type only.
    return None, undecodable(f"stored as {type(value).__name__}, not JSON text")


def _text(value: Any, row: Mapping[str, Any], reader: TriggerKwargsReader) -> Any:
    return _stored_text(value)


def _trigger_kwargs_text(value: Any, row: Mapping[str, Any], reader: TriggerKwargsReader) -> Any:
    text, failed = _stored_text(value)
    if failed is not None:
        return None, failed
    if text.__class__ is bytes:
        text = text.decode("utf-8", "replace")
    return reader.text(text)


def _serialized_dag_text(value: Any, row: Mapping[str, Any], reader: TriggerKwargsReader) -> Any:
    text, failed = _stored_text(value)
    if failed is not None and failed is not NULL:
        return None, failed
    return serialized_dag_payload(text, row.get("data_compressed"))


# --- classify: JSON text -> verdict and parsed JSON ----------------------------------------------


def _beyond_64_bits(verdict: Verdict, text: Any) -> bool:
    """A 3.2-format row whose text may hold an integer beyond 64 bits: orjson reads one as a float,
    Airflow's json.loads as the integer, and the verdict must be the one Airflow's parse gives
    (a ``__version__`` of 2**64 is "written by a newer serializer", not "must be an integer").
    Only 3.2-format rows pay for the check."""
    return verdict.format is Format.SERDE and (text.__class__ is str or text.__class__ is bytes) and has_19_digits(text)


def _json(verdict_of: Callable[[Any], Verdict]) -> Callable[[Any], Any]:
    def classify(text: Any) -> Any:
        payload, failed = parsed_json(text)
        if failed is not None:
            return failed, None
        verdict = verdict_of(payload)
        if _beyond_64_bits(verdict, text):
            payload, failed = parsed_json(text, as_airflow=True)
            if failed is not None:
                return failed, None
            verdict = verdict_of(payload)
        return verdict, payload

    return classify


def _trigger_kwargs_verdict(payload: Any) -> Verdict:
    return kwargs_verdict(payload, enum_keys=True)


def _deadline_callback(text: Any) -> Any:
    payload, failed = parsed_json(text)
    if failed is None and isinstance(payload, str) and payload[:1] == "{":
        payload, failed = parsed_json(payload)  # the SQLite/MySQL downgrade wrote JSON text into JSON
    if failed is not None:
        return failed, None
    return deadline_callback_verdict(payload), payload


def _json_translated(enum_keys: bool) -> Callable[[Any], Any]:
    def translate(text: Any) -> Any:
        payload, failed = parsed_json(text)
        if failed is not None:
            return failed, None, None
        verdict, legacy = kwargs_translation(payload, enum_keys=enum_keys)
        if _beyond_64_bits(verdict, text):
            payload, failed = parsed_json(text, as_airflow=True)
            if failed is not None:
                return failed, None, None
            verdict, legacy = kwargs_translation(payload, enum_keys=enum_keys)
        return verdict, payload, legacy

    return translate


_next_kwargs = _json(kwargs_verdict)
_trigger_kwargs = _json(_trigger_kwargs_verdict)
_deadline_alert = _json(deadline_alert_verdict)


_TI_KEY = ("dag_id", "task_id", "run_id", "map_index")

COLUMNS: tuple[StoredColumn, ...] = (
    StoredColumn(
        "task_instance.next_kwargs", "task_instance", "next_kwargs", _TI_KEY, _text, _next_kwargs,
        Reader.BASE_SERIALIZATION, timestamps=("start_date", "queued_dttm", "updated_at"),
        translate=_json_translated(False),
    ),
    StoredColumn(
        "task_instance_history.next_kwargs", "task_instance_history", "next_kwargs", (*_TI_KEY, "try_number"),
        _text, _next_kwargs, Reader.BASE_SERIALIZATION, timestamps=("start_date", "queued_dttm", "updated_at"),
        primary_key=("task_instance_id",), translate=_json_translated(False),
    ),
    StoredColumn(
        "trigger.kwargs", "trigger", "kwargs", ("id", "classpath"), _trigger_kwargs_text, _trigger_kwargs,
        Reader.TRIGGER_KWARGS, timestamps=("created_date",), holder_columns=(),
        holder_lookup=HolderLookup("task_instance", "trigger_id", "id"), encrypted=True,
        translate=_json_translated(True),
    ),
    StoredColumn(
        "deadline.callback", "deadline", "callback", ("id",), _text, _deadline_callback, Reader.DEADLINE,
        timestamps=("created_at", "last_updated_at"), holder_columns=(),
        holder_lookup=HolderLookup("dag_run", "id", "dagrun_id"),
        note="recreated by the 3.2 -> 3.1.8 downgrade; absent on 3.2 schemas",
    ),
    StoredColumn(
        "deadline_alert.callback_def", "deadline_alert", "callback_def", ("id",), _text, _deadline_alert, None,
        timestamps=("created_at",), holder_columns=(),
        holder_lookup=HolderLookup("serialized_dag", "id", "serialized_dag_id"),
        note="3.2 schemas only: the downgrade copies it into serialized_dag.data",
    ),
    StoredColumn(
        "serialized_dag.data", "serialized_dag", "data", ("dag_id", "id"), _serialized_dag_text,
        serialized_dag_parsed, Reader.SERIALIZED_DAG, timestamps=("last_updated", "created_at"),
        holder_columns=("dag_id",), extra_columns=("data_compressed",),
    ),
    StoredColumn(
        "xcom.value", "xcom", "value", (*_TI_KEY, "key"), _text, xcom_parsed, Reader.SERDE,
        timestamps=("timestamp",), primary_key=("dag_run_id", "task_id", "map_index", "key"),
    ),
)
