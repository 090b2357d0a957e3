"""The rollback DAG: writes every affected kind of row (next_kwargs, trigger kwargs, deadline, uuid XCom).

Choreography (driven by tests/e2e/harness.py, identical for the oracle 3.1.8 run and for a 3.2.x writer):
  * all *_before / *_after tasks run in pool ``e2e_frozen`` and defer;
  * the harness sets that pool to 0 slots, then opens gate "before": the *_before triggers fire (or fail / time
    out) and their TIs become SCHEDULED with an event in next_kwargs, but cannot be queued -> frozen;
  * the writer is stopped (and the DB downgraded); the reader restores the pool and opens gate "after";
  * sensor_after and the deadline fire on their own clock (E2E_FIRE_AFTER seconds) after the rollback.
Every resumed task records what it received (e2e_common.record).
"""
from __future__ import annotations

import datetime as dt
import os
import uuid

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, BaseOperator, task
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

from e2e_common import TRIGGER_SECRET, env_seconds, record, rich_event_payload, rich_kwargs
from e2e_triggers import GateTrigger

BEFORE_DELAY = int(env_seconds("E2E_BEFORE_DELAY", 45))
FIRE_AFTER = int(env_seconds("E2E_FIRE_AFTER", 180))
POOL = "e2e_frozen"
UUID_VALUE = uuid.UUID("5d8d2b4e-6c1f-4f7a-9b1e-2a3c4d5e6f70")


def _fail_view(next_kwargs):
    out = {}
    for k, v in (next_kwargs or {}).items():
        if k == "traceback" and isinstance(v, list):
            # the traceback text contains install paths, so only keep its shape and final line
            out[k] = {"container": type(v).__name__, "nonempty": bool(v), "last": (v[-1].strip() if v else None)}
        else:
            out[k] = v
    return out


class RecordingDeferOperator(BaseOperator):
    def __init__(self, *, gate: str, defer_kwargs, payload=None, fail=False, timeout_s=None, trigger_extra=None,
                 **kw):
        super().__init__(**kw)
        self.trigger_extra = trigger_extra
        self.gate = gate
        self.defer_kwargs = defer_kwargs
        self.payload = payload
        self.fail = fail
        self.timeout_s = timeout_s

    def execute(self, context):
        self.defer(
            trigger=GateTrigger(gate=self.gate, label=self.task_id, payload=self.payload, fail=self.fail,
                                rich={**rich_kwargs(), **(self.trigger_extra or {})}),
            method_name="resume",
            kwargs=self.defer_kwargs,
            timeout=dt.timedelta(seconds=self.timeout_s) if self.timeout_s else None,
        )

    def resume(self, context, **kwargs):
        record(self.task_id, {"next_method": "resume", "kwargs": kwargs})
        return "resumed"

    def resume_execution(self, next_method, next_kwargs, context):
        if next_method == "__fail__":
            record(self.task_id, {"next_method": next_method, "kwargs": _fail_view(next_kwargs)})
        return super().resume_execution(next_method, next_kwargs, context)


class RecordingDateTimeSensorAsync(DateTimeSensorAsync):
    def execute_complete(self, context, event=None):
        record(self.task_id, {"next_method": "execute_complete", "event": event})
        return super().execute_complete(context, event)


def _in(seconds: int) -> str:
    return "{{ (macros.datetime.utcnow() + macros.timedelta(seconds=%d)).isoformat() }}+00:00" % seconds


with DAG(
    dag_id="e2e_rollback",
    schedule="@once",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_tasks=32,
    # E2E_DEADLINE=0 leaves the deadline out (to isolate next_kwargs/trigger problems from deadline ones)
    deadline=None if os.environ.get("E2E_DEADLINE", "1") == "0" else DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(seconds=FIRE_AFTER),
        callback=AsyncCallback(
            "e2e_common.deadline_cb",
            kwargs={"label": "deadline", "delta": dt.timedelta(minutes=5), "pair": (1, 2),
                    "when": pendulum.datetime(2035, 6, 7, 8, 9, 10, tz="Asia/Tokyo"), "nested": {"l": [1, {"x": None}]}},
        ),
    ),
) as dag:
    # --- fire BEFORE the rollback (event / error written by the writer, resumed by the reader) ---
    RecordingDeferOperator(task_id="rich_before", pool=POOL, gate="before", defer_kwargs=rich_kwargs(),
                           payload=rich_event_payload())
    RecordingDeferOperator(task_id="empty_before", pool=POOL, gate="before", defer_kwargs={}, payload=None)
    RecordingDeferOperator(task_id="fail_before", pool=POOL, gate="before", defer_kwargs={"x": (1, 2)}, fail=True)
    RecordingDeferOperator(task_id="timeout_before", pool=POOL, gate="never", defer_kwargs={"d": dt.timedelta(1)},
                           timeout_s=BEFORE_DELAY)
    RecordingDateTimeSensorAsync(task_id="sensor_before", pool=POOL, target_time=_in(BEFORE_DELAY))

    # --- fire AFTER the rollback (trigger row written by the writer, run by the reader's triggerer) ---
    rich_after = RecordingDeferOperator(task_id="rich_after", pool=POOL, gate="after", defer_kwargs=rich_kwargs(),
                                        payload=rich_event_payload())
    RecordingDeferOperator(task_id="none_after", pool=POOL, gate="after", defer_kwargs=None, payload={"n": 1})
    RecordingDateTimeSensorAsync(task_id="sensor_after", pool=POOL, target_time=_in(FIRE_AFTER))

    # --- deferred by the writer and still deferred when 3.1.8 stops: gate "reupgrade" opens only once the DB is
    #     upgraded again (tests/e2e/afterlife.py). reup_twin is the same deferral, resumed by the writer itself
    #     before the rollback: what a never-rolled-back run gives reup_after. Both carry a planted secret. ---
    _secret = {"api_token": TRIGGER_SECRET}
    RecordingDeferOperator(task_id="reup_after", pool=POOL, gate="reupgrade", defer_kwargs={**rich_kwargs(), **_secret},
                           payload=rich_event_payload(), trigger_extra=_secret)
    RecordingDeferOperator(task_id="reup_twin", gate="reup_twin", defer_kwargs={**rich_kwargs(), **_secret},
                           payload=rich_event_payload(), trigger_extra=_secret)

    # --- XCom holding a uuid.UUID: pushed by the writer, pulled once by the writer and once by the reader ---
    @task
    def push_uuid():
        return UUID_VALUE

    @task
    def pull_uuid_now(ti=None):
        record("pull_uuid_now", {"value": ti.xcom_pull(task_ids="push_uuid")})

    @task
    def pull_uuid_after(ti=None):
        record("pull_uuid_after", {"value": ti.xcom_pull(task_ids="push_uuid")})

    pushed = push_uuid()
    pushed >> pull_uuid_now()
    [pushed, rich_after] >> pull_uuid_after()
