"""A 300-task DAG built with Airflow 3.1.8's task SDK, as the scheduler stores it.

Mixed operators (Bash with templated env, Python with op_kwargs holding datetimes, tuples and
sets, Empty), task groups, retries/timeouts as timedeltas, params and fan-in/fan-out edges, so
``SerializedDAG.from_dict`` walks the same kinds of nodes as on a real deployment.
"""

from __future__ import annotations

import datetime as dt
import json


def _noop(**_):  # referenced by PythonOperator; never run
    return None


def build_dag(n_tasks: int = 300):
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Param, TaskGroup

    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    with DAG(
        "bench_dag_300",
        schedule="@daily",
        start_date=start,
        catchup=False,
        tags=["bench", "etl"],
        params={"env": Param("prod", type="string"), "limit": Param(100, type="integer")},
        default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5), "owner": "data"},
    ) as dag:
        per_group = 30
        previous = EmptyOperator(task_id="start")
        made = 1
        g = 0
        while made < n_tasks:
            with TaskGroup(f"group_{g}") as group:
                heads = []
                for i in range(min(per_group, n_tasks - made)):
                    kind = (made + i) % 3
                    if kind == 0:
                        t = BashOperator(task_id=f"bash_{i}", bash_command="echo {{ ds }} {{ params.env }}",
                                         env={"STAGE": str(i), "GROUP": str(g)},
                                         execution_timeout=dt.timedelta(minutes=30))
                    elif kind == 1:
                        t = PythonOperator(task_id=f"py_{i}", python_callable=_noop,
                                           op_kwargs={"since": start, "window": (1, i), "keys": {"a", "b"},
                                                      "cfg": {"batch": i, "dry": False}})
                    else:
                        t = EmptyOperator(task_id=f"empty_{i}", retries=i % 4)
                    if heads and i % 5:
                        heads[-1] >> t
                    heads.append(t)
                made += len(heads)
            previous >> group
            previous = group
            g += 1
    return dag


def serialized_text(n_tasks: int = 300) -> str:
    from airflow.serialization.serialized_objects import SerializedDAG

    return json.dumps(SerializedDAG.to_dict(build_dag(n_tasks)))
