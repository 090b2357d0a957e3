"""Goal 5 worker (Airflow 3.1.8 venv with the wheel installed): deferred TIs in a real Airflow DB.

    python scheduler_db.py fill URL PAYLOADS_JSON N     # N deferred TIs per format, one DAG run each
    python scheduler_db.py time URL ROUNDS              # interleaved timings, one JSON line out

The schema is the one ``airflow db migrate`` of 3.1.8 made. ``fill`` writes two DAG runs,
``legacy`` and ``serde32``, whose TIs carry the same next_kwargs values, as 3.1.8 and as 3.2.1
stored them. ``time`` does what the scheduler does with them on every loop for a running DAG
run (``DagRun.update_state`` -> ``get_task_instances`` -> ``DagRun.fetch_task_instances``):
an ORM select of the run's TIs in a fresh session, which runs ExtendedJSON's result processor
(``BaseSerialization.deserialize``) on every ``next_kwargs``. Run it with AIRFLOW_SERDE_COMPAT=1
so the bridge is activated the way users get it (the ``.pth`` line).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import uuid

DAG_ID = "bench_deferred"
UTC = dt.timezone.utc


def _filler(column):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    t = column.type
    name = type(t).__name__.upper()
    if "UUID" in name:
        return str(uuid.uuid4())
    if isinstance(t, (sa.DateTime, sa.TIMESTAMP)) or "TIMESTAMP" in name or "DATETIME" in name:
        return dt.datetime(2026, 3, 14, tzinfo=UTC)
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, (sa.Integer, sa.Float, sa.Numeric)):
        return 1
    if isinstance(t, sa.JSON) or "JSON" in name:
        return {}
    if isinstance(t, sa.LargeBinary):
        return b""
    return "x"


def _complete(table, row: dict) -> dict:  # type: ignore[no-untyped-def]
    for column in table.columns:
        if column.name in row or column.nullable or column.server_default is not None:
            continue
        if column.primary_key and column.autoincrement in (True, "auto") and "INT" in str(column.type).upper():
            continue
        row[column.name] = _filler(column)
    return row


def fill(url: str, payloads_file: str, n: int) -> None:
    import sqlalchemy as sa

    with open(payloads_file) as f:
        payloads = json.load(f)  # {"legacy": [text, ...], "serde32": [text, ...]}
    engine = sa.create_engine(url)
    md = sa.MetaData()
    dag = sa.Table("dag", md, autoload_with=engine)
    dag_run = sa.Table("dag_run", md, autoload_with=engine)
    ti = sa.Table("task_instance", md, autoload_with=engine)
    pg = engine.dialect.name == "postgresql"
    nk = sa.bindparam("nk_text", type_=sa.Text)
    # PostgreSQL: the text is cast server-side so the stored JSON is exactly what the writer made.
    # SQLite: bound as text (a CAST to JSON there would apply NUMERIC affinity).
    nk_expr = sa.cast(nk, ti.c.next_kwargs.type) if pg else nk
    with engine.begin() as conn:
        if pg:
            conn.exec_driver_sql("SET session_replication_role = replica")  # no dag_version parents
        conn.execute(dag.insert().values(**_complete(dag, {"dag_id": DAG_ID, "is_paused": False})))
        for run_id in payloads:
            conn.execute(dag_run.insert().values(**_complete(dag_run, {
                "dag_id": DAG_ID, "run_id": run_id, "state": "running", "run_type": "scheduled",
                "logical_date": dt.datetime(2026, 3, 14, tzinfo=UTC) + dt.timedelta(days=len(run_id)),
            })))
            texts = payloads[run_id]
            rows = [
                _complete(ti, {
                    "id": str(uuid.uuid4()), "dag_id": DAG_ID, "run_id": run_id, "task_id": f"t{i:05d}",
                    "map_index": -1, "try_number": 1, "state": "deferred", "pool": "default_pool",
                    "pool_slots": 1, "queue": "default", "priority_weight": 1, "max_tries": 0,
                    "operator": "HttpSensor", "next_method": "execute_complete", "nk_text": texts[i % len(texts)],
                })
                for i in range(n)
            ]
            conn.execute(ti.insert().values(next_kwargs=nk_expr), rows)


def time_loads(url: str, rounds: int) -> dict:
    import os

    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
    import gc

    import airflow_serde_compat
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _timing import interleave

    assert airflow_serde_compat.is_active(), "run with AIRFLOW_SERDE_COMPAT=1"
    expected = None

    def load(run_id: str, active: bool):  # type: ignore[no-untyped-def]
        def sample() -> float:
            nonlocal expected
            (airflow_serde_compat.activate if active else airflow_serde_compat.deactivate)()
            gc.collect()
            t0 = time.perf_counter_ns()
            with create_session() as session:
                tis = DagRun.fetch_task_instances(dag_id=DAG_ID, run_id=run_id, session=session)
                kwargs = [ti.next_kwargs for ti in tis]
            elapsed = time.perf_counter_ns() - t0
            # Both formats must give the same values, or the comparison means nothing.
            shape = sorted(repr(sorted(k)) for k in kwargs)
            expected = expected or shape
            assert shape == expected, "legacy and 3.2 rows decoded differently"
            return elapsed / len(tis)

        return sample

    for warm in (load("legacy", True), load("serde32", True)):
        warm()
    samples = interleave(
        {"legacy_active": load("legacy", True), "serde32_active": load("serde32", True),
         "legacy_inactive": load("legacy", False)},
        rounds,
    )
    airflow_serde_compat.activate()
    return samples


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        print(json.dumps(time_loads(sys.argv[2], int(sys.argv[3]))))
