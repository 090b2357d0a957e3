"""``rewrite --apply`` (as the CLI runs it) while a 3.1 component clears ``next_kwargs`` of some
rows between rewrite's read and its write (a resumed task does that), one row per batch of
the given size: on PostgreSQL the batch before is then still being committed in the other
thread, and the conversion runs in rewrite's forked child, so the rows it cleared are noted in a
file beside the backup (the parent's lists would not see the child's appends). Prints the rows it
cleared and the report's counts, as JSON.

    python rewrite_beside_a_component.py URL KEYS BACKUP BATCH [fail]

With ``fail``, the database refuses the second task-instance batch's transaction after its update
(a real error on the writing connection: a table that is not there): prints the error rewrite reports.
"""

from __future__ import annotations

import json
import sys

import sqlalchemy as sa

from airflow_serde_compat.rewrite.database import _key_of, rewrite_database
from airflow_serde_compat.rewrite.writers import Airflow31Writer
from airflow_serde_compat.scan.classify import fernet_keys_from_text

url, keys_text, backup, batch = sys.argv[1:5]
keys = fernet_keys_from_text(keys_text)
component = sa.create_engine(url, poolclass=sa.pool.NullPool)
noted = f"{backup}.cleared"
seen = 0


class Racing(Airflow31Writer):
    def new_values(self, column, payload, row, **kw):  # type: ignore[no-untyped-def]
        global seen
        new = super().new_values(column, payload, row, **kw)
        if column.name == "task_instance.next_kwargs":
            # only rows rewrite will write (one it leaves, as 3.1 cannot hold it, is never written)
            seen += 1
            if seen % 3 == 2:
                with component.begin() as conn:
                    conn.execute(sa.text("UPDATE task_instance SET next_kwargs = NULL WHERE id = :id"),
                                 {"id": row["id"]})
                with open(noted, "a") as note:
                    note.write(json.dumps([str(row["id"]), _key_of(row, column.identity)]) + "\n")
        return new


if sys.argv[5:] == ["fail"]:
    import airflow_serde_compat.rewrite.database as database
    from airflow_serde_compat.rewrite.database import RewriteError

    update, calls = database._update, []

    def failing(conn, column, changes, types):  # type: ignore[no-untyped-def]
        done = update(conn, column, changes, types)
        if column.name == "task_instance.next_kwargs":
            calls.append(len(changes))
            if len(calls) == 2:
                conn.exec_driver_sql("SELECT * FROM no_such_table_for_this_test")
        return done

    database._update = failing
    try:
        rewrite_database(sa.create_engine(url, pool_size=2, max_overflow=4), writer=Airflow31Writer(keys, xcom_uuid="str"),
                         fernet_keys=keys, apply=True, backup_path=backup, batch=int(batch))
    except RewriteError as err:
        print(json.dumps({"error": str(err), "batches": calls}))
        sys.exit(2)
    sys.exit(f"no error: {calls}")

engine = sa.create_engine(url, pool_size=2, max_overflow=4)
result = rewrite_database(engine, writer=Racing(keys, xcom_uuid="str"), fernet_keys=keys, apply=True,
                          backup_path=backup, batch=int(batch))
column = next(c for c in result.columns if c.name == "task_instance.next_kwargs")
try:
    with open(noted) as note:
        notes = [json.loads(line) for line in note]
except FileNotFoundError:
    notes = []
cleared, idents = [n[0] for n in notes], [n[1] for n in notes]
print(json.dumps({"cleared": cleared, "changed": column.changed_rows, "cleared_rows": idents,
                  "changed_meanwhile": column.changed_meanwhile, "rewritten": column.rewritten,
                  "remaining": result.remaining}))
