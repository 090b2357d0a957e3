"""New stored values for 3.2-format rows: the bridge's decode, then Airflow 3.1's own writer.

Each writer turns one row's parsed payload into the column values the installed Airflow 3.1
would have stored for the same value, and checks the result before anything is written: it
must classify as legacy (3.1 reads it without the bridge) and read back to the same value.
Needs an Airflow 3.1 process with the bridge active (:func:`airflow_serde_compat.activate`).

A value a writer cannot produce raises :class:`CannotRewrite` with a value-free reason; the
row is reported and left as it is.
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any, Callable, Mapping, Sequence

from airflow_serde_compat._errors import cause_chain
from airflow_serde_compat.rewrite.backup import Canonical
from airflow_serde_compat.rewrite.plain_serialize import plain_serializer
from airflow_serde_compat.rewrite.stored_by_31 import Fallback, stored_and_canonical, stored_by_31
from airflow_serde_compat.scan.classify import Format, Verdict, has_19_digits
from airflow_serde_compat.scan.columns import StoredColumn
from airflow_serde_compat.translate import CLASSNAME, DATA, TYPE, VAR, VERSION

__all__ = ["Airflow31Writer", "CannotRewrite", "XCOM_UUID_CHOICES", "uuids_as_text"]

XCOM_UUID_CHOICES = ("keep", "str")


class CannotRewrite(Exception):
    """One row's value has no 3.1 form this command can vouch for (value-free message)."""


def uuids_as_text(node: Any) -> Any:
    """A serde XCom value with every ``uuid.UUID`` envelope replaced by the UUID's text.

    3.1 has no encoding for ``uuid.UUID`` (3.1.8's serde refuses to write one), so there is no
    3.1 form of the same value: the text is the one lossless stand-in, and only on request.
    """
    cls = node.__class__
    if cls is list:
        return [uuids_as_text(v) for v in node]
    if cls is dict:
        if node.get(CLASSNAME) == "uuid.UUID" and VERSION in node:
            data = node.get(DATA)
            try:
                return str(uuid.UUID(data)) if data.__class__ is str else str(uuid.UUID(int=data))
            except (ValueError, TypeError):
                raise CannotRewrite("uuid.UUID envelope whose data is not a UUID") from None
        return {k: uuids_as_text(v) for k, v in node.items()}
    return node


#: 3.2 payloads on which :meth:`Airflow31Writer._direct_agrees` compares both ways: a value of
#: each kind :func:`stored_by_31` decides, at the edges of what it rounds and sorts.
_SAMPLE = (
    "{}",
    '{"a": null, "b": true, "c": "x", "d": 1, "e": 2.5, "f": -0.0, "g": NaN, "h": -Infinity, "i": 12345678901234567890123}',
    '{"t": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": {"timestamp": 1904296089.1234565, '
    '"tz": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": ["UTC", "pendulum.tz.timezone.Timezone", 1, true]}}}, '
    '"u": {"__classname__": "datetime.datetime", "__version__": 2, "__data__": {"timestamp": -1.0000005, "tz": null}}}',
    '{"d": {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": 0.0000015}, '
    '"e": {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": -86399.9999995}}',
    '{"s": {"__classname__": "builtins.set", "__version__": 1, "__data__": ["b", "a", "b"]}, '
    '"n": {"__classname__": "builtins.set", "__version__": 1, "__data__": [3, -1, 3, 2]}, '
    '"t": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, [2, {"x": []}], {"__classname__": '
    '"builtins.tuple", "__version__": 1, "__data__": []}]}}',
    '{"legacy": {"__type": "dict", "__var": {"k": {"__type": "tuple", "__var": [1]}}}, "e": {"Encoding.TYPE": "set", '
    '"Encoding.VAR": ["z", "y"]}, "u": {"__classname__": "uuid.UUID", "__version__": 1, "__data__": '
    '"12345678-1234-5678-1234-567812345678"}, "dt": {"__classname__": "datetime.date", "__version__": 2, "__data__": '
    '"2026-12-06"}}',
)


#: The C encoder ``json.dumps`` builds anew on every call, built once with the arguments it passes
#: for json.dumps' defaults, except the circular check: every value here is a tree just built
#: from JSON or by a serializer (a cycle would end in RecursionError, a row's CannotRewrite).
_ENCODER = (json.encoder.c_make_encoder(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None,
                                        ": ", ", ", False, False, True)
            if json.encoder.c_make_encoder is not None else None)


def _dumps(value: Any, *, sort_keys: bool = False) -> str:
    # What SQLAlchemy's JSON type binds for 3.1's columns (no engine json_serializer is set):
    # json.dumps(value), 40 % faster per row.
    if _ENCODER is None or sort_keys:
        return json.dumps(value, sort_keys=sort_keys)
    return "".join(_ENCODER(value, 0))


class Airflow31Writer:
    """Per stored column, payload -> {database column: new stored value}."""

    def __init__(self, fernet_keys: Sequence[str] = (), *, xcom_uuid: str = "keep"):
        from airflow_serde_compat import activate

        if xcom_uuid not in XCOM_UUID_CHOICES:
            raise ValueError(f"xcom_uuid must be one of {XCOM_UUID_CHOICES}")
        activate(strict=True)
        from cryptography.fernet import Fernet, MultiFernet

        from airflow.models import deadline
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.sdk.definitions.deadline import DeadlineAlert
        from airflow.serialization.serialized_objects import BaseSerialization

        # As 3.1's get_fernet(): MultiFernet encrypts with the first key; no key means plaintext.
        self._fernet = MultiFernet([Fernet(k.encode("utf-8")) for k in fernet_keys]) if fernet_keys else None
        self._base = BaseSerialization
        self._plain = plain_serializer(BaseSerialization.serialize)
        self._direct = self._direct_agrees()
        self._deadline = deadline
        self._alert = DeadlineAlert
        self._dag_hash = SerializedDagModel.hash
        self.xcom_uuid = xcom_uuid
        self._read_back = True
        self._legacy: Any = None
        self._parsed: dict[str, Any] = {}
        self._by_name: dict[str, Callable[[StoredColumn, Any, Mapping[str, Any]], dict[str, Any]]] = {
            "task_instance.next_kwargs": self._next_kwargs,
            "task_instance_history.next_kwargs": self._next_kwargs,
            "trigger.kwargs": self._trigger_kwargs,
            "deadline.callback": self._deadline_callback,
            "serialized_dag.data": self._serialized_dag,
            "xcom.value": self._xcom,
        }

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def handles(self, column: StoredColumn) -> bool:
        return column.name in self._by_name

    def new_values(
        self, column: StoredColumn, payload: Any, row: Mapping[str, Any], *, read_back: bool = True,
        legacy: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """{database column: new stored value}, and {database column: the parse of that JSON
        text} where the check already made one equal to json's (the backup's fingerprint needs it).

        ``read_back``: also check that 3.1 reads the new value back to the same one. For values
        of the types 3.1 encodes itself that is 3.1's own round trip; it is the check that counts
        for what only 3.1's serde and allow-list decoded (``needs_patched_process``).

        ``legacy``: ``to_legacy(payload)`` (kwargs columns, with their ``enum_keys``), if the
        caller already has it (:func:`~airflow_serde_compat.scan.classify.kwargs_translation`)."""
        self._read_back = read_back
        self._legacy = legacy
        self._parsed = {}
        try:
            return self._by_name[column.name](column, payload, row), self._parsed
        except CannotRewrite:
            raise
        except RecursionError:
            raise CannotRewrite("nested too deeply") from None
        except Exception as err:  # noqa: BLE001 - one row's failure is a finding, never a crash
            raise CannotRewrite(cause_chain(err)) from None

    # --- the columns ---------------------------------------------------------------------

    def _serialize(self, value: Any) -> Any:
        return self._plain(value)

    def _next_kwargs(self, column: StoredColumn, payload: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        # TaskInstance.next_kwargs is ExtendedJSON: BaseSerialization.serialize, then JSON.
        both = self._stored_by_31(payload, False)
        if both is not None:
            text = _dumps(both[0])
            parsed = Canonical(both[1])  # of json.loads(text) == both[0]: str keys, finite floats, exact ints
        else:
            value = self._base.deserialize(payload)
            text = _dumps(self._serialize(value))
            parsed = self._check(column, text, lambda p: _dumps(self._serialize(self._base.deserialize(p))) == text)
        if parsed is not None:
            self._parsed[column.column] = parsed
        return {column.column: text}

    def _stored_by_31(self, payload: Any, trigger_kwargs: bool) -> tuple[Any, Any] | None:
        """3.1's writer on the bridge's value and its canonical form, computed on the JSON
        (:func:`.stored_and_canonical`), or None: the long way decides. Only for what needs no
        read-back (see :meth:`new_values`)."""
        if not self._direct or self._read_back:
            return None
        try:
            both = stored_and_canonical(payload, enum_keys=trigger_kwargs, legacy=self._legacy)
        except Fallback:
            return None
        written = both[0]
        if trigger_kwargs and not (
            written.__class__ is dict and written.get(TYPE) == "dict"
            and not any(v.__class__ is dict and v.get(TYPE) == "dict" and TYPE in v[VAR] for v in written[VAR].values())
        ):
            return None  # not a dict of kwargs, or one 3.1 decodes twice: the long way refuses it, with its reason
        return both

    def _direct_agrees(self) -> bool:
        """:func:`stored_by_31` equals the bridge's decode and 3.1's writer on a fixed sample of
        3.2 payloads (checked where it runs, as :func:`plain_serializer` is); else it is not used."""
        from airflow_serde_compat.patch import reading_trigger_kwargs

        try:
            for text in _SAMPLE:
                payload = json.loads(text)
                with reading_trigger_kwargs():
                    long_way = _dumps(self._base.serialize(self._base.deserialize(payload)))
                if _dumps(stored_by_31(payload, enum_keys=True)) != long_way:
                    return False
        except Exception:  # noqa: BLE001 - a sample it cannot take: the long way for every row
            return False
        return True

    def _trigger_kwargs(self, column: StoredColumn, payload: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        from airflow_serde_compat.patch import reading_trigger_kwargs

        # Trigger.kwargs -> Trigger.encrypt_kwargs: serialize, json.dumps, Fernet (3.1 always
        # encrypts when a key is configured, also where 3.2.1 had stored plaintext).
        both = self._stored_by_31(payload, True)
        if both is not None:
            clear = _dumps(both[0])
            return {column.column: self._encrypted(clear)}
        with reading_trigger_kwargs():
            kwargs = self._base.deserialize(payload)
        if kwargs.__class__ is not dict:
            raise CannotRewrite(f"trigger kwargs decode to {type(kwargs).__name__}, not a dict")
        if any(v.__class__ is dict and TYPE in v for v in kwargs.values()):
            # 3.1's trigger runner decodes such a kwarg a second time (smart_decode_trigger_kwargs),
            # which can import and call what the data names. The bridge guards that decode; once the
            # row is rewritten the bridge comes out, so the row stays as it is, under the bridge.
            raise CannotRewrite(
                "a kwarg is a dict with a __type key, which Airflow 3.1's trigger runner decodes a second "
                "time (only the bridge makes that safe)"
            )
        clear = _dumps(self._serialize(kwargs))

        def same(p: Any) -> bool:
            with reading_trigger_kwargs():
                return _dumps(self._serialize(self._base.deserialize(p))) == clear

        self._check(column, clear, same)
        return {column.column: self._encrypted(clear)}

    def _encrypted(self, clear: str) -> str:
        if self._fernet is None:
            return clear
        return self._fernet.encrypt(clear.encode("utf-8")).decode("utf-8")

    def _deadline_callback(self, column: StoredColumn, payload: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        # Deadline._callback = serde.serialize(callback); read with serde.deserialize.
        if payload.__class__ is str:
            payload = json.loads(payload)  # the SQLite/MySQL downgrade stored JSON text in JSON
        callback = self._deadline.deserialize(payload)
        text = _dumps(self._deadline.serialize(callback))
        self._check(column, text, lambda p: _dumps(self._deadline.serialize(self._deadline.deserialize(p))) == text)
        return {column.column: text}

    def _serialized_dag(self, column: StoredColumn, payload: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        # Only the deadline alerts carry what 3.2's downgrade left (callback module names, fields
        # stored as JSON text): each is read by the bridge and written by 3.1's
        # serialize_deadline_alert; the rest of the DAG stays as it is.
        if payload.__class__ is not dict or payload.get("dag").__class__ is not dict:
            raise CannotRewrite("serialized DAG without a 'dag' object")
        dag = payload["dag"]
        alerts = dag.get("deadline")
        if alerts is None:
            raise CannotRewrite("3.2-format parts outside the DAG's deadline alerts")

        def rewritten(alert: Any) -> Any:
            return json.loads(_dumps(self._alert.deserialize_deadline_alert(alert).serialize_deadline_alert()))

        new_dag = dict(dag)
        new_dag["deadline"] = [rewritten(a) for a in alerts] if alerts.__class__ is list else rewritten(alerts)
        data = dict(payload)
        data["dag"] = new_dag
        if row.get("data_compressed") is not None:
            # SerializedDagModel.__init__ with [core] compress_serialized_dags.
            text = _dumps(data, sort_keys=True)
            new = {"data": None, "data_compressed": zlib.compress(text.encode("utf-8"))}
        else:
            text = _dumps(data)
            new = {"data": text, "data_compressed": None}
        self._check(column, text, None)
        # dag_hash is what 3.1's dag-processor compares against: 3.1's hash of the data it holds.
        new["dag_hash"] = self._dag_hash(json.loads(text))
        return new

    def _xcom(self, column: StoredColumn, payload: Any, row: Mapping[str, Any]) -> dict[str, Any]:
        if self.xcom_uuid != "str":
            raise CannotRewrite(
                "uuid.UUID: Airflow 3.1 has no encoding for it (3.1.8 cannot push one); "
                "--xcom-uuid=str stores the UUID's text, or clear the XCom"
            )
        text = _dumps(uuids_as_text(payload))
        self._check(column, text, None)
        return {column.column: text}

    def _check(self, column: StoredColumn, text: str, same: Callable[[Any], bool] | None) -> Any:
        """The new value must be legacy throughout and, where it has a 3.1 decoder here, stable.
        Returns the new text's parse where it is exactly json's, else None."""
        verdict, parsed = column.classify(text)
        if not isinstance(verdict, Verdict) or verdict.format is not Format.LEGACY:
            raise CannotRewrite("Airflow 3.1's writer gives a value that still needs the bridge")
        if same is not None and self._read_back and not same(json.loads(text) if parsed is None else parsed):
            raise CannotRewrite("the rewritten value does not read back to the same value")
        return parsed if parsed is not None and not has_19_digits(text) else None
