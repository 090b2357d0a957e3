"""The read paths that do not go through BaseSerialization.deserialize (inventory §6/§7)."""

from __future__ import annotations

import json
import uuid

import pytest

# What migration 0094's downgrade builds for deadline.callback: a serde envelope holding
# legacy kwargs (observed on PostgreSQL, inventory §1.4).
DOWNGRADED_CALLBACK = {
    "__data__": {
        "path": "deadline_dag.my_cb",
        "kwargs": {
            "__var": {
                "n": 1,
                "t": {"__var": [1, 2], "__type": "tuple"},
                "when": {"__var": 1893456000.0, "__type": "datetime"},
            },
            "__type": "dict",
        },
    },
    "__classname__": "airflow.sdk.definitions.deadline.AsyncCallback",
    "__version__": 0,
}

# What migration 0101's downgrade writes back into serialized_dag.data for a deadline alert.
ALERT = {
    "__type": "deadline_alert",
    "__var": {
        "reference": {"reference_type": "DagRunQueuedAtDeadline"},
        "interval": 3600.0,
        "callback": {
            "__classname__": "airflow.sdk.definitions.callback.AsyncCallback",
            "__version__": 0,
            "__data__": {"path": "deadline_dag.my_cb", "kwargs": {"n": 1}},
        },
    },
}


def test_deadline_callback_rebuilt_by_the_downgrade_decodes(bridge):
    import pendulum
    from airflow.models import deadline

    callback = deadline.deserialize(DOWNGRADED_CALLBACK)
    assert type(callback).__name__ == "AsyncCallback"
    assert callback.path == "deadline_dag.my_cb"
    assert callback.kwargs == {"n": 1, "t": (1, 2), "when": pendulum.datetime(2030, 1, 1, tz="UTC")}
    assert type(callback.kwargs["when"]) is pendulum.DateTime


def test_deadline_callback_fails_without_the_bridge():
    from airflow.models import deadline

    with pytest.raises(ImportError, match="tuple was not found in allow list"):
        deadline.deserialize(json.loads(json.dumps(DOWNGRADED_CALLBACK)))


def test_deadline_alert_naming_the_3_2_callback_module_decodes(bridge):
    from airflow.serialization.serialized_objects import BaseSerialization

    alert = BaseSerialization.deserialize(json.loads(json.dumps(ALERT)))
    assert type(alert.callback).__name__ == "AsyncCallback"
    assert alert.callback.kwargs == {"n": 1}
    assert alert.interval.total_seconds() == 3600


def test_deadline_alert_fields_stored_as_json_strings_decode(bridge):
    # SQLite/MySQL: 0101's downgrade copies the fields through an untyped column, as text.
    from airflow.serialization.serialized_objects import BaseSerialization

    var = {k: json.dumps(v) if k in ("reference", "callback") else v for k, v in ALERT["__var"].items()}
    alert = BaseSerialization.deserialize({"__type": "deadline_alert", "__var": var})
    assert alert.callback.path == "deadline_dag.my_cb"


def test_a_deadline_alert_stored_whole_as_json_text_decodes_in_a_dag_and_scan_counts_it(bridge):
    """MariaDB: 0101's downgrade leaves each element of the DAG's `deadline` list as JSON text; 3.1.8 alone
    fails on it (`'str' object has no attribute 'get'`), so scan must not call it legacy."""
    from airflow.sdk.definitions.deadline import DeadlineAlert

    from airflow_serde_compat.scan.classify import Format, serialized_dag_verdict

    text = json.dumps(ALERT).replace("airflow.sdk.definitions.callback.", "airflow.sdk.definitions.deadline.")
    alert = DeadlineAlert.deserialize_deadline_alert(text)
    assert alert.callback.path == "deadline_dag.my_cb" and alert.interval.total_seconds() == 3600
    verdict = serialized_dag_verdict(json.dumps({"__version": 3, "dag": {"dag_id": "d", "deadline": [text]}}))
    assert verdict.format is Format.SERDE and "deadline alert stored as JSON text" in verdict.classnames
    native = json.dumps({"__version": 3, "dag": {"dag_id": "d", "deadline": [alert.serialize_deadline_alert()]}},
                        default=str)
    assert serialized_dag_verdict(native).format is Format.LEGACY
    # the whole list as a string (MariaDB's JSON_SET of a CAST(... AS JSON)): no 3.1 reader takes it
    listed = json.dumps({"__version": 3, "dag": {"dag_id": "d", "deadline": json.dumps([ALERT["__var"]])}})
    verdict = serialized_dag_verdict(listed)
    assert verdict.format is Format.SERDE and verdict.bridge.value == "untranslatable", verdict
    # seen on MariaDB after a real downgrade: the list still holds 3.2's deadline_alert ids
    ids = json.dumps({"__version": 3, "dag": {"dag_id": "d", "deadline": ["01a2389e-8c43-7260-909b-fd2927c7f616"]}})
    verdict = serialized_dag_verdict(ids)
    assert verdict.format is Format.SERDE and verdict.bridge.value == "untranslatable", verdict
    assert "deadline_alert ids" in verdict.reason


def test_the_callback_alias_exists_only_while_active(run_python):
    proc = run_python(
        """
import importlib, sys
import airflow_serde_compat as bridge
from airflow.sdk.definitions.deadline import AsyncCallback
try:
    importlib.import_module("airflow.sdk.definitions.callback")
except ModuleNotFoundError:
    print("absent")
bridge.activate()
print(importlib.import_module("airflow.sdk.definitions.callback").AsyncCallback is AsyncCallback)
bridge.deactivate()
assert "airflow.sdk.definitions.callback" not in sys.modules
"""
    )
    assert proc.stdout == "absent\nTrue\n"


UUID_XCOM = '{"__classname__": "uuid.UUID", "__version__": 1, "__data__": "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"}'


def test_uuid_xcom_written_by_3_2_reads_as_uuid(bridge):
    from airflow.sdk.bases.xcom import BaseXCom

    class Result:
        value = json.loads(UUID_XCOM)

    assert BaseXCom.deserialize_value(Result()) == uuid.UUID("6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5")
    from airflow.serialization.serde import deserialize

    # The UI's stringified view (full=False) gets the text, as for 3.1.8's own types.
    assert deserialize({"v": json.loads(UUID_XCOM)}, full=False) == {"v": "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"}


def test_uuid_xcom_is_refused_by_3_1_8_without_the_bridge():
    from airflow.serialization.serde import deserialize

    with pytest.raises(ImportError, match="uuid.UUID was not found in allow list"):
        deserialize(json.loads(UUID_XCOM))


def test_a_malformed_uuid_is_a_clear_error(bridge):
    from airflow.serialization.serde import deserialize

    from airflow_serde_compat import UnsupportedPayload

    with pytest.raises(UnsupportedPayload, match="'uuid.UUID' version 1 at \\$: not a UUID"):
        deserialize({"__classname__": "uuid.UUID", "__version__": 1, "__data__": "nope"})


def test_undecodable_values_are_named_but_never_logged(bridge, caplog):
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    secret = "hunter2-do-not-log"
    payload = {"conn": {"__classname__": "mycompany.Secret", "__version__": 1, "__data__": {"password": secret}}}
    with pytest.raises(UnsupportedPayload) as info:
        BaseSerialization.deserialize(payload)
    assert "'mycompany.Secret' version 1 at $.conn" in str(info.value)
    assert "allow list" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in caplog.text
    assert "mycompany.Secret" in caplog.text
