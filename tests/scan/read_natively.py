"""Reads every stored column of a 3.1 database through Airflow 3.1's own models; prints JSON.

``python read_natively.py URL``: with ``AIRFLOW_SERDE_COMPAT`` unset this is what a pristine 3.1.8
reads; with it set, what the bridge reads. Values are printed in 3.1's legacy form (sorted JSON),
so two runs compare as text. ``failed`` lists the rows whose read raised.
"""

from __future__ import annotations

import json
import sys
import zlib

url = sys.argv[1]
import os

os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url

import sqlalchemy as sa  # noqa: E402

from airflow.models import deadline as deadline_module  # noqa: E402
from airflow.models.deadline import Deadline  # noqa: E402
from airflow.models.serialized_dag import SerializedDagModel  # noqa: E402
from airflow.models.taskinstance import TaskInstance  # noqa: E402
from airflow.models.taskinstancehistory import TaskInstanceHistory  # noqa: E402
from airflow.models.trigger import Trigger  # noqa: E402
from airflow.models.xcom import XComModel  # noqa: E402
from airflow.serialization import serde  # noqa: E402
from airflow.serialization.serialized_objects import BaseSerialization, SerializedDAG  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


def shown(value: object) -> str:
    # Under the bridge an undecodable next_kwargs loads as a marker that fails its task on resume.
    if type(value).__name__ == "UndecodableNextKwargs":
        raise TypeError("undecodable next_kwargs")
    return json.dumps(BaseSerialization.serialize(value), sort_keys=True, default=repr)


engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
values: dict[str, str] = {}
failed: list[str] = []


def read(key: str, get) -> None:  # type: ignore[no-untyped-def]
    try:
        values[key] = get()
    except Exception:  # noqa: BLE001 - a failed read is the finding
        failed.append(key)


def by_raw_key(model, key: str, raw: object):  # type: ignore[no-untyped-def]
    # Keyed by the stored text, not through the model's UUID type: a fixture's or a downgrade's id
    # need not be one.
    return sa.literal_column(f"{model.__tablename__}.{key}") == sa.literal(raw)


def raw_keys(table: str, key: str) -> list:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(f'SELECT {key} FROM "{table}"'))]


with Session(engine) as session:
    for raw in raw_keys("task_instance", "id"):
        read(f"ti {raw}", lambda: shown(session.scalar(sa.select(TaskInstance.next_kwargs).where(by_raw_key(TaskInstance, "id", raw)))))
    for raw in raw_keys("task_instance_history", "task_instance_id"):
        read(f"tih {raw}", lambda: shown(session.scalar(
            sa.select(TaskInstanceHistory.next_kwargs).where(by_raw_key(TaskInstanceHistory, "task_instance_id", raw)))))
    for raw in raw_keys("trigger", "id"):
        read(f"trigger {raw}", lambda: shown(Trigger._decrypt_kwargs(session.scalar(
            sa.select(Trigger.encrypted_kwargs).where(by_raw_key(Trigger, "id", raw))))))
    for raw in raw_keys("deadline", "id"):
        read(f"deadline {raw}", lambda: json.dumps(serde.serialize(deadline_module.deserialize(session.scalar(
            sa.select(Deadline._callback).where(by_raw_key(Deadline, "id", raw))))), sort_keys=True))
    for raw in raw_keys("serialized_dag", "id"):
        def dag_alerts() -> str:
            data, compressed = session.execute(sa.select(SerializedDagModel._data, SerializedDagModel._data_compressed)
                                               .where(by_raw_key(SerializedDagModel, "id", raw))).one()
            if data is None:
                data = json.loads(zlib.decompress(compressed))
            dag = SerializedDAG.from_dict(data)
            alerts = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline] if dag.deadline else []
            return json.dumps([a.serialize_deadline_alert() for a in alerts], sort_keys=True, default=str)

        read(f"serialized_dag {raw}", dag_alerts)
    with engine.connect() as conn:
        xcom_keys = conn.execute(sa.text("SELECT dag_run_id, task_id, map_index, key FROM xcom")).fetchall()
    for k in xcom_keys:
        def xcom_value() -> str:
            row = session.execute(sa.select(XComModel.value).where(
                XComModel.dag_run_id == k[0], XComModel.task_id == k[1], XComModel.map_index == k[2],
                XComModel.key == k[3])).one()
            # the worker (task SDK) hands what the API returns to serde.deserialize
            return repr(serde.deserialize(XComModel.deserialize_value(row)))

        read(f"xcom {k[0]} {k[1]} {k[2]} {k[3]}", xcom_value)

print(json.dumps({"values": values, "failed": sorted(failed)}))
