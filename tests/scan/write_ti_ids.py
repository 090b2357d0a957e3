"""Rows holding task-instance ids in every column migration f8c9d7e6b5a4 rewrites, in a 3.2 schema.

Run by tests/scan/test_task_instance_ids.py with a 3.2.1 interpreter (venv 321m) before the downgrade:
    python write_ti_ids.py URL
Ids are Airflow's own uuid7, bound as ``uuid.UUID`` through the schema's reflected types (native
``UUID`` on MariaDB >= 10.7 with SQLAlchemy 2.1). Foreign keys reference real parent rows (the
downgrade re-creates and so re-checks them). Prints the ids written, as JSON, per (table, column).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbrows import connect, insert  # noqa: E402

UTC = dt.timezone.utc


def main() -> None:
    from uuid6 import uuid7

    conn = connect(sys.argv[1])
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    written: dict[str, list[str]] = {}

    def note(table: str, column: str, value) -> None:
        written.setdefault(f"{table}.{column}", []).append(str(value))

    with conn.begin():
        insert(conn, "dag_run", dag_id="ids", run_id="r1", run_type="manual", state="running", logical_date=now,
               run_after=now, conf=None)
        tis = {name: uuid7() for name in ("noted", "rescheduled", "plain", "retried", "hitl")}
        for n, (name, ti_id) in enumerate(tis.items()):
            insert(conn, "task_instance", id=ti_id, dag_id="ids", task_id=name, run_id="r1", map_index=-1,
                   try_number=3 if name == "retried" else 1, pool="default_pool", pool_slots=1,
                   next_kwargs=None, context_carrier=None, dag_version_id=None, span_status="not_started")
            note("task_instance", "id", ti_id)
        insert(conn, "task_instance_note", ti_id=tis["noted"], content="a note", created_at=now, updated_at=now)
        note("task_instance_note", "ti_id", tis["noted"])
        for k in range(2):
            insert(conn, "task_reschedule", ti_id=tis["rescheduled"], start_date=now, end_date=now, duration=1,
                   reschedule_date=now + dt.timedelta(minutes=k))
            note("task_reschedule", "ti_id", tis["rescheduled"])
        hitl = {"options": '["yes", "no"]', "subject": "approve?", "params": "{}", "params_input": "{}",
                "created_at": now, "defaults": None, "assignees": None, "responded_by": None,
                "chosen_options": None}
        insert(conn, "hitl_detail", ti_id=tis["hitl"], **hitl)
        note("hitl_detail", "ti_id", tis["hitl"])
        for try_number in (1, 2):
            tih = uuid7()
            insert(conn, "task_instance_history", task_instance_id=tih, dag_id="ids", task_id="retried", run_id="r1",
                   map_index=-1, try_number=try_number, pool="default_pool", pool_slots=1, state="failed",
                   next_kwargs=None, context_carrier=None, dag_version_id=None, span_status="not_started")
            note("task_instance_history", "task_instance_id", tih)
            if try_number == 1:
                insert(conn, "hitl_detail_history", ti_history_id=tih, **hitl)
                note("hitl_detail_history", "ti_history_id", tih)
    conn.close()
    print(json.dumps(written))


if __name__ == "__main__":
    main()
