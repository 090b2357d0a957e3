"""Write 3.2-format rows with the real Airflow 3.2.1 code, into a 3.2 schema (before the downgrade).

Run by the test session with the v321 interpreter:
    python write_32_rows.py URL OLD_KEY NEW_KEY FOREIGN_KEY
Payloads come from ``airflow.sdk.serde.serialize`` (what 3.2's task runner sends as
``next_kwargs`` and trigger kwargs) and ``Trigger.encrypt_kwargs`` (3.2's Fernet path). Prints
a JSON list of what was written, with the category each row is expected to land in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbrows import RawJSON, connect, insert  # noqa: E402

UTC = dt.timezone.utc


@dataclasses.dataclass
class Point:  # a user class: 3.1's serde allow-list refuses it
    x: int
    y: int


def main() -> None:
    url, old_key, new_key, foreign_key = sys.argv[1:5]
    import pendulum
    from airflow.models import crypto
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import serialize

    def encrypt_with(keys: str, kwargs: dict) -> str:
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = keys
        crypto.get_fernet.cache_clear()  # 3.2 caches the MultiFernet (functools.cache)
        return Trigger.encrypt_kwargs(kwargs)

    rich = {
        "when": pendulum.datetime(2030, 5, 1, 12, tz="America/New_York"),
        "budget": dt.timedelta(hours=2),
        "coords": (1, 2),
        "s": {3},
    }
    written: list[dict] = []
    conn = connect(url)
    with conn.begin():
        ti_cases = [
            # (task_id, kwargs or raw JSON text, expected bridge category)
            ("rich", serialize(rich), "translatable"),
            ("empty", serialize({}), "translatable"),
            ("timeout", {"error": "Trigger timeout"}, "translatable"),
            ("uuid", serialize({"u": uuid.UUID("12345678-1234-5678-1234-567812345678")}), "translatable"),
            ("frozen", serialize({"fs": frozenset({(1, 2)})}), "needs_patched_process"),
            ("point", serialize({"p": Point(1, 2)}), "needs_patched_process"),
            ("newer", {"x": {"__classname__": "builtins.tuple", "__version__": 9, "__data__": [1]}}, "untranslatable"),
        ]
        for n, (task_id, payload, expected) in enumerate(ti_cases):
            start = dt.datetime(2026, 1, 10 + n, tzinfo=UTC)
            insert(
                conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag32", task_id=task_id, run_id="r1",
                map_index=-1, start_date=start, next_kwargs=RawJSON(json.dumps(payload)),
            )
            written.append({"source": "task_instance.next_kwargs", "expected": expected, "task_id": task_id})
        for try_number, (task_id, payload, expected) in enumerate(ti_cases[:2], start=1):
            insert(
                conn, "task_instance_history", task_instance_id=str(uuid.uuid4()), dag_id="dag32",
                task_id=task_id, run_id="r0", map_index=-1, try_number=try_number,
                start_date=dt.datetime(2026, 1, 5, tzinfo=UTC), next_kwargs=RawJSON(json.dumps(payload)),
            )
            written.append({"source": "task_instance_history.next_kwargs", "expected": expected})

        moment = {"moment": pendulum.datetime(2035, 1, 1, tz="UTC"), "end_from_trigger": False}
        triggers = [
            # deferral triggers are stored as plaintext serde JSON by 3.2 (no Fernet)
            (101, json.dumps(serialize(moment)), "translatable", dt.datetime(2026, 2, 1, tzinfo=UTC)),
            (102, json.dumps(serialize({"delta": dt.timedelta(seconds=5)})), "translatable", dt.datetime(2026, 2, 2, tzinfo=UTC)),
            # Trigger.__init__ rows are Fernet(serde): the current key and one rotated out of first place
            (103, encrypt_with(f"{new_key},{old_key}", moment), "translatable", dt.datetime(2026, 2, 3, tzinfo=UTC)),
            (104, encrypt_with(old_key, {"n": (1, 2)}), "translatable", dt.datetime(2026, 1, 20, tzinfo=UTC)),
            (105, encrypt_with(foreign_key, moment), "undecodable", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ]
        for trigger_id, text, expected, created in triggers:
            insert(conn, "trigger", id=trigger_id, classpath="airflow.triggers.temporal.DateTimeTrigger",
                   kwargs=text, created_date=created)
            written.append({"source": "trigger.kwargs", "expected": expected, "id": trigger_id,
                            "encrypted": not text.startswith("{")})
        # the deferred TIs holding two of the 3.2 triggers
        for trigger_id, task_id in ((101, "waits_101"), (103, "waits_103")):
            insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag_trig", task_id=task_id, run_id="r1",
                   map_index=-1, trigger_id=trigger_id, next_kwargs=None)
            written.append({"source": "task_instance.next_kwargs", "expected": "null"})

        for key, value, expected in (
            ("u", serialize({"id": uuid.UUID("12345678-1234-5678-1234-567812345678")}), "translatable"),
            ("n", serialize([1, 2, 3]), "legacy"),
            ("t", serialize((1, "a")), "legacy"),
        ):
            insert(conn, "xcom", dag_run_id=1, task_id="x", map_index=-1, key=key, dag_id="dag32", run_id="r1",
                   value=RawJSON(json.dumps(value)), timestamp=dt.datetime(2026, 3, 1, tzinfo=UTC))
            written.append({"source": "xcom.value", "expected": expected})
    conn.close()
    print(json.dumps(written))


if __name__ == "__main__":
    main()
