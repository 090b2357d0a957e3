"""Issue #6: one row Airflow 3.1.8 cannot decode fails its own task; the components keep running.

In-process tests use the real 3.1.8 models on a throwaway SQLite file (only the tables they touch).
The process test seeds a real 3.1.8 database with poisoned rows next to healthy 3.2-format ones and
runs the real ``airflow api-server``, ``scheduler`` and ``triggerer`` (LocalExecutor workers
included) for a bounded time, once with the isolation patches and once without them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

#: Placed inside poisoned payloads: it must never reach a log line or a task log.
SECRET = "s3cr3t-kwarg-value"
TUPLE = {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}
TIMEDELTA = {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": 7200.0}
HEALTHY_KWARGS = {"budget": TIMEDELTA, "coords": TUPLE}
# A user dataclass the default allow-list (airflow.*) refuses; the module must never be imported.
REFUSED_KWARGS = {"thing": {"__classname__": "mymod.Thing", "__version__": 1, "__data__": {"token": SECRET}},
                  "coords": TUPLE}
DAMAGED_KWARGS = {"budget": {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": SECRET}}


def _moment(ts: float, version: int = 2) -> dict:
    tz = {"__classname__": "builtins.tuple", "__version__": 1,
          "__data__": ["UTC", "pendulum.tz.timezone.Timezone", 1, True]}
    return {"__classname__": "pendulum.datetime.DateTime", "__version__": version,
            "__data__": {"timestamp": ts, "tz": tz}}


def _isolation_entries():
    from airflow_serde_compat import _patching, isolation

    names = {isolation.SQLALCHEMY_UTILS, isolation.TRIGGER, isolation.DAGBAG}
    return [(e.owner, e.name, e.original, e.ours) for e in _patching._table.values()
            if e.patch.module in names and e.in_place()]


@contextlib.contextmanager
def _without_isolation():
    """The bridge alone (what users had before #6): isolation patches put back meanwhile."""
    entries = _isolation_entries()
    assert entries, "isolation patches are not installed"
    for owner, name, original, _replacement in entries:
        setattr(owner, name, original)
    try:
        yield
    finally:
        for owner, name, _original, replacement in entries:
            setattr(owner, name, replacement)


# --- in-process: the real 3.1.8 models on a scratch SQLite file ------------------------------


@pytest.fixture
def db(tmp_path, bridge):
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from airflow.models import import_all_models
    from airflow.models.base import Base

    import_all_models()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(sa.text(
            "INSERT INTO dag_run (id, dag_id, run_id, run_type, run_after, clear_number, log_template_id, "
            "state) VALUES (1, 'd', 'r', 'manual', '2026-01-01 00:00:00', 0, NULL, 'running')"))
        session.commit()
        yield session
    engine.dispose()


def _insert_ti(session, task_id: str, next_kwargs, *, state="deferred", trigger_id=None) -> str:
    import uuid

    import sqlalchemy as sa

    ti_id = str(uuid.uuid4())
    session.execute(
        sa.text(
            "INSERT INTO task_instance (id, dag_id, task_id, run_id, map_index, try_number, max_tries, "
            "pool, pool_slots, queue, priority_weight, state, next_method, next_kwargs, trigger_id, "
            "dag_version_id, custom_operator_name, hostname, unixname, executor_config) VALUES "
            "(:id, 'd', :task_id, 'r', -1, 1, 0, 'default_pool', 1, 'default', 1, :state, 'resume', "
            ":nk, :trigger_id, :dv, '', '', '', NULL)"
        ),
        {"id": ti_id, "task_id": task_id, "state": state, "nk": json.dumps(next_kwargs),
         "trigger_id": trigger_id, "dv": str(uuid.uuid4())},
    )
    session.commit()
    return ti_id


def _raw(session, ti_id: str):
    import sqlalchemy as sa

    return json.loads(session.execute(sa.text("SELECT next_kwargs FROM task_instance WHERE id = :i"),
                                      {"i": ti_id}).scalar_one())


def _load(session, ti_id: str):
    from airflow.models.taskinstance import TaskInstance

    session.expire_all()
    return session.get(TaskInstance, ti_id)


def test_the_bridge_alone_cannot_load_a_poisoned_row(db):
    ti_id = _insert_ti(db, "poisoned", REFUSED_KWARGS)
    with _without_isolation(), pytest.raises(ValueError, match="mymod.Thing"):
        _load(db, ti_id)


def test_poisoned_next_kwargs_load_as_a_marker_and_healthy_rows_decode(db, caplog):
    import datetime as dt

    from airflow_serde_compat import isolation

    good = _insert_ti(db, "healthy", HEALTHY_KWARGS)
    bad = _insert_ti(db, "poisoned", REFUSED_KWARGS)
    with caplog.at_level(logging.WARNING, logger="airflow_serde_compat"):
        assert _load(db, good).next_kwargs == {"budget": dt.timedelta(hours=2), "coords": (1, 2)}
        marker = _load(db, bad).next_kwargs
        _load(db, bad)  # loaded again: reported once per row and process
    assert type(marker) is isolation.UndecodableNextKwargs
    assert marker and dict(marker) == {}
    assert (marker.classname, marker.version, marker.path) == ("mymod.Thing", 1, "$.thing")
    named = [r.getMessage() for r in caplog.records if "task instance dag_id='d'" in r.getMessage()]
    assert len(named) == 1
    assert "task_id='poisoned' run_id='r' map_index=-1" in named[0] and "mymod.Thing" in named[0]
    assert "allowed_deserialization_classes" in named[0]
    assert SECRET not in caplog.text and SECRET not in repr(marker)
    assert "mymod" not in sys.modules


def test_other_extended_json_columns_still_raise(bridge):
    from airflow.models.dagrun import DagRun
    from airflow.utils.sqlalchemy import ExtendedJSON

    context_carrier = DagRun.__table__.c.context_carrier.type
    assert isinstance(context_carrier, ExtendedJSON)
    with pytest.raises(ValueError):
        context_carrier.process_result_value(REFUSED_KWARGS, None)


def test_a_marker_is_written_back_as_stored(db):
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    bad = _insert_ti(db, "poisoned", REFUSED_KWARGS)
    ti = _load(db, bad)
    ti.state = "up_for_retry"
    ti.next_kwargs = ti.next_kwargs  # what refresh_from_db/_set_ti_attrs do
    db.add(TaskInstanceHistory(ti))
    db.commit()
    assert _raw(db, bad) == REFUSED_KWARGS
    import sqlalchemy as sa

    history = db.execute(sa.text("SELECT next_kwargs FROM task_instance_history")).scalar_one()
    assert json.loads(history) == REFUSED_KWARGS


@pytest.mark.parametrize("kwargs", [REFUSED_KWARGS, DAMAGED_KWARGS, {"x": _moment(1.0, version=99)}],
                         ids=["refused-class", "damaged", "newer-version"])
def test_a_fired_trigger_fails_the_poisoned_task_and_resumes_the_healthy_one(db, caplog, kwargs):
    from airflow.models.trigger import handle_event_submit
    from airflow.serialization.serialized_objects import BaseSerialization
    from airflow.triggers.base import TriggerEvent

    good = _insert_ti(db, "healthy", HEALTHY_KWARGS, trigger_id=1)
    bad = _insert_ti(db, "poisoned", kwargs, trigger_id=2)
    with caplog.at_level(logging.ERROR, logger="airflow_serde_compat"):
        for ti_id in (good, bad):
            handle_event_submit(TriggerEvent({"fired": True}), task_instance=_load(db, ti_id), session=db)
        db.commit()
    healthy, poisoned = _load(db, good), _load(db, bad)
    assert (healthy.state, healthy.next_method, healthy.trigger_id) == ("scheduled", "resume", None)
    assert healthy.next_kwargs["event"] == {"fired": True} and healthy.next_kwargs["coords"] == (1, 2)
    assert (poisoned.state, poisoned.next_method, poisoned.trigger_id) == ("scheduled", "__fail__", None)
    error = poisoned.next_kwargs["error"]
    assert "dag_id='d' task_id='poisoned' run_id='r' map_index=-1" in error
    assert "Remedy:" in error and poisoned.next_kwargs["traceback"] == [error]
    # What the worker receives is legacy data any 3.1.8 worker reads, with or without the bridge.
    assert BaseSerialization.deserialize(_raw(db, bad))["error"] == error
    assert any(error == r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text and SECRET not in json.dumps(_raw(db, bad))
    if kwargs is REFUSED_KWARGS:
        assert "classname 'mymod.Thing' version 1 at $.thing" in error


def test_undecodable_trigger_kwargs_raise_the_type_error_the_runner_catches(bridge):
    from cryptography.fernet import Fernet, InvalidToken

    from airflow.models.trigger import Trigger
    from airflow_serde_compat.isolation import UndecodableTriggerKwargs

    poisoned = json.dumps({"moment": _moment(1.0, version=99), "note": SECRET})
    with pytest.raises(TypeError) as info:
        Trigger._decrypt_kwargs(poisoned)
    assert type(info.value) is UndecodableTriggerKwargs
    message = "".join(__import__("traceback").format_exception(info.value))
    assert "pendulum.datetime.DateTime' version 99 at $.moment" in message
    assert SECRET not in message and "During handling" not in message
    healthy = Trigger._decrypt_kwargs(json.dumps({"moment": _moment(1.0), "end_from_trigger": False}))
    assert healthy["moment"].timestamp() == 1.0
    # A wrong Fernet key is not a property of one row: it keeps failing the component, loudly.
    from airflow.configuration import conf
    from airflow.models import crypto

    stored = conf.get("core", "fernet_key", fallback="")
    conf.set("core", "fernet_key", Fernet.generate_key().decode())
    crypto._fernet = None
    try:
        with pytest.raises(InvalidToken):
            Trigger._decrypt_kwargs(Fernet(Fernet.generate_key()).encrypt(b"{}").decode())
        encrypted = crypto.get_fernet().encrypt(poisoned.encode()).decode()
        with pytest.raises(UndecodableTriggerKwargs, match="version 99"):
            Trigger._decrypt_kwargs(encrypted)
    finally:
        conf.set("core", "fernet_key", stored)
        crypto._fernet = None


def test_a_dag_with_a_3_2_only_timetable_is_reported_and_treated_as_missing(bridge, caplog):
    import pendulum

    from airflow.exceptions import DeserializationError
    from airflow.models.dagbag import DBDagBag
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import SerializedDAG

    with DAG("uses_3_2", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        pass
    data = SerializedDAG.to_dict(dag)
    data["dag"]["timetable"] = {"__type": "airflow.timetables.trigger.CronPartitionTimetable", "__var": {}}

    class Row:  # the two attributes DBDagBag reads, plus the real 3.1.8 deserialization
        dag_id, dag_version_id, load_op_links = "uses_3_2", "0199-v", True

        @property
        def dag(self):
            return SerializedDAG.from_dict(data)

    bag = DBDagBag()
    with _without_isolation(), pytest.raises(DeserializationError) as info:
        bag._read_dag(Row())
    assert "CronPartitionTimetable" in str(info.value.__cause__)
    with caplog.at_level(logging.ERROR, logger="airflow_serde_compat"):
        assert bag._read_dag(Row()) is None
        assert bag._read_dag(Row()) is None
    lines = [r.getMessage() for r in caplog.records if "uses_3_2" in r.getMessage()]
    assert len(lines) == 1 and "CronPartitionTimetable" in lines[0] and "scan --verify" in lines[0]


def test_everything_is_restored_and_re_applied(bridge):
    import airflow_serde_compat
    from airflow.models.dagbag import DBDagBag
    from airflow.models.trigger import Trigger
    from airflow.models import trigger as trigger_module
    from airflow.utils.sqlalchemy import ExtendedJSON

    targets = [(ExtendedJSON, "process_result_value"), (ExtendedJSON, "process_bind_param"),
               (trigger_module, "handle_event_submit"), (Trigger, "_decrypt_kwargs"),
               (Trigger, "submit_failure"), (DBDagBag, "_read_dag")]
    from airflow_serde_compat import _patching

    assert all(_patching.is_patched(o, n) for o, n in targets)
    originals = {(o, n): _patching.original_of(o, n, raw=True) for o, n in targets}
    assert airflow_serde_compat.deactivate() == []
    assert all(vars(o)[n] is originals[(o, n)] for o, n in targets)
    assert airflow_serde_compat.activate()
    assert all(_patching.is_patched(o, n) for o, n in targets)


def test_a_changed_target_is_skipped_with_one_warning(bridge, caplog):
    import types

    from airflow_serde_compat import _bootstrap

    fake = types.ModuleType("airflow.models.trigger")
    fake.handle_event_submit = lambda event, task_instance, session: None
    with caplog.at_level(logging.WARNING, logger="airflow_serde_compat"):
        _bootstrap.apply_guarded("airflow_serde_compat.isolation:HANDLE_EVENT_SUBMIT", fake)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not a singledispatch function" in warnings[0].getMessage()
    assert not hasattr(fake.handle_event_submit, "__wrapped__")


# --- real processes: api-server, scheduler (LocalExecutor), triggerer --------------------------

DAG_FILE = '''
import datetime as dt
import pendulum
from airflow.sdk import DAG, BaseOperator, task
from airflow.providers.standard.triggers.temporal import DateTimeTrigger

START = pendulum.datetime(2026, 1, 1, tz="UTC")


class Resumable(BaseOperator):
    def execute(self, context):
        self.defer(trigger=DateTimeTrigger(moment=pendulum.now("UTC")), method_name="resume",
                   kwargs={"budget": dt.timedelta(hours=2), "coords": (1, 2)})

    def resume(self, context, event=None, budget=None, coords=None):
        # The healthy 3.2 row must arrive with 3.1.8's own types, or this task fails.
        assert isinstance(budget, dt.timedelta) and coords == (1, 2), (type(budget), coords)
        return "resumed"


with DAG("iso_rows", schedule=None, start_date=START, catchup=False):
    for task_id in ("healthy_deferred", "poisoned_kwargs", "poisoned_trigger", "poisoned_resumed",
                    "overflow_trigger", "deep_kwargs", "listed_classname", "gadget_kwargs", "gadget_trigger"):
        Resumable(task_id=task_id, retries=0)

with DAG("iso_plain", schedule=None, start_date=START, catchup=False):
    @task
    def plain():
        return 1
    plain()

with DAG("iso_broken", schedule=None, start_date=START, catchup=False):
    @task
    def never():
        return 1
    never()
'''

# Imported only if something imports a class the allow-list refuses: it must never run.
MYMOD = "import pathlib, os\npathlib.Path(os.environ['ISO_IMPORTED_FLAG']).write_text('imported')\n"

SEED = '''
import json, sys
import pendulum
from sqlalchemy import text
from airflow.models.dagbag import DBDagBag
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType

rows = json.loads(sys.argv[1])
now = pendulum.now("UTC")
with create_session() as s:
    bag = DBDagBag()
    for dag_id, run_id in (("iso_rows", "rollback"), ("iso_plain", "healthy"), ("iso_broken", "broken")):
        dag = bag.get_latest_version_of_dag(dag_id, session=s)
        dag.create_dagrun(run_id=run_id, logical_date=now, data_interval=(now, now), run_after=now,
                          run_type=DagRunType.MANUAL, triggered_by=DagRunTriggeredByType.TEST,
                          state=DagRunState.RUNNING, session=s)
    s.flush()
    for task_id, (state, next_kwargs, trigger_kwargs) in rows.items():
        trigger_id = None
        if trigger_kwargs is not None:
            s.execute(text("INSERT INTO trigger (classpath, kwargs, created_date) VALUES "
                           "('airflow.providers.standard.triggers.temporal.DateTimeTrigger', :kw, :now)"),
                      {"kw": json.dumps(trigger_kwargs), "now": now})
            trigger_id = s.execute(text("SELECT max(id) FROM trigger")).scalar()
        s.execute(text("UPDATE task_instance SET state=:state, next_method='resume', next_kwargs=:nk, "
                       "trigger_id=:tid, try_number=1, scheduled_dttm=:now, start_date=:now "
                       "WHERE dag_id='iso_rows' AND task_id=:task_id"),
                  {"state": state, "nk": json.dumps(next_kwargs), "tid": trigger_id, "now": now,
                   "task_id": task_id})
    # A serialized DAG only Airflow 3.2 can load (inventory section 1.5: 3.2-only timetables).
    data = json.loads(s.execute(text("SELECT data FROM serialized_dag WHERE dag_id='iso_broken'")).scalar())
    data["dag"]["timetable"] = {"__type": "airflow.timetables.trigger.CronPartitionTimetable", "__var": {}}
    s.execute(text("UPDATE serialized_dag SET data=:d WHERE dag_id='iso_broken'"), {"d": json.dumps(data)})
'''

# Runs an Airflow command with the bridge but without this module's patches: the "before #6" run.
WITHOUT_ISOLATION = '''
import sys
from airflow_serde_compat import _bootstrap
_bootstrap.HOOKS = tuple(h for h in _bootstrap.HOOKS if not h[1].startswith("airflow_serde_compat.isolation:"))
assert _bootstrap.activate()
from airflow.__main__ import main
sys.argv = ["airflow", *sys.argv[1:]]
sys.exit(main())
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """A temp AIRFLOW_HOME on SQLite; every process it starts runs in its own process group."""

    def __init__(self, root: Path):
        self.root, self.home = root, root / "home"
        self.dags = self.home / "dags"
        self.dags.mkdir(parents=True)
        (self.dags / "iso_dags.py").write_text(textwrap.dedent(DAG_FILE))
        (self.root / "lib").mkdir()
        (self.root / "lib" / "mymod.py").write_text(MYMOD)
        self.flag = root / "mymod-imported"
        self.gadget_flag = root / "gadget-ran"
        self.port = _free_port()
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))}
        self.env.update({
            "PATH": f"{Path(sys.executable).parent}:{self.env.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(self.root / "lib"),
            "ISO_IMPORTED_FLAG": str(self.flag),
            # A gadget row runs `touch "$ISO_GADGET_FLAG"` if row data ever becomes a call.
            "ISO_GADGET_FLAG": str(self.gadget_flag),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.root / 'airflow.db'}",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(24)).decode(),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        })

    def run(self, *args: str, bridge: bool = False, timeout: float = 600) -> str:
        env = dict(self.env, **({"AIRFLOW_SERDE_COMPAT": "1"} if bridge else {}))
        proc = subprocess.run(list(args), env=env, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"{args[:3]} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        return proc.stdout

    def start(self, name: str, *args: str, isolation: bool = True) -> None:
        log_path = self.root / f"{name}-{'iso' if isolation else 'noiso'}.log"
        cmd = [sys.executable, "-m", "airflow", *args] if isolation else [
            sys.executable, "-c", WITHOUT_ISOLATION, *args]
        env = dict(self.env, AIRFLOW_SERDE_COMPAT="1") if isolation else self.env
        with open(log_path, "w") as out:
            popen = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.procs.append((name, popen, log_path))

    def wait_listening(self, timeout: float = 180) -> None:
        """Block until the api-server accepts connections: task runners that start before it
        fail on "Connection refused" (seen on this 2-core machine under load)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.exited():
                raise AssertionError(f"a component exited while the api-server started: {self.logs()[-4000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return
            time.sleep(1)
        raise AssertionError(f"the api-server did not listen within {timeout:.0f}s: {self.logs()[-4000:]}")

    def stop(self) -> None:
        for _, popen, _ in self.procs:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
        end = time.monotonic() + 30
        for _, popen, _ in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(max(0.1, end - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)  # the group: LocalExecutor workers, runners
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(10)
        self.procs = []

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p, _ in self.procs if p.poll() is not None}

    def logs(self) -> str:
        return "\n".join(f"===== {name}\n{path.read_text(errors='replace')}" for name, _, path in self.procs)

    def task_logs(self) -> dict[str, str]:
        found = {}
        for path in (self.home / "logs").glob("dag_id=*/run_id=*/task_id=*/*.log"):
            found.setdefault(path.parent.name.removeprefix("task_id="), "")
            found[path.parent.name.removeprefix("task_id=")] += path.read_text(errors="replace")
        return found

    def states(self) -> dict[str, str | None]:
        con = sqlite3.connect(self.root / "airflow.db", timeout=30)
        try:
            return dict(con.execute("SELECT task_id, state FROM task_instance"))
        finally:
            con.close()


def _seed_rows() -> dict:
    past = time.time() - 60
    healthy_trigger = {"moment": _moment(past), "end_from_trigger": False}
    return {
        # Fires at once, resumes with 3.2-format kwargs: healthy work through the bridge.
        "healthy_deferred": ("deferred", HEALTHY_KWARGS, healthy_trigger),
        # Healthy trigger fires; its task's kwargs name a class the allow-list refuses.
        "poisoned_kwargs": ("deferred", REFUSED_KWARGS, healthy_trigger),
        # Trigger kwargs written by a newer serializer; next to them a value that must stay secret.
        "poisoned_trigger": ("deferred", HEALTHY_KWARGS,
                             {"moment": _moment(past, version=99), "end_from_trigger": False, "note": SECRET}),
        # Already resumed by 3.2 (event delivered), damaged kwargs: the worker decodes them.
        "poisoned_resumed": ("scheduled", DAMAGED_KWARGS, None),
        # Issue #9 section 2: each of these escaped isolation as a raw exception before.
        "overflow_trigger": ("deferred", HEALTHY_KWARGS, {"moment": _moment(1e300), "end_from_trigger": False}),
        "deep_kwargs": ("deferred", {"x": _deep_legacy(300)}, healthy_trigger),
        "listed_classname": ("deferred", {"x": {"__classname__": ["a"], "__version__": 1}}, healthy_trigger),
        # Issue #9 section 1: legacy envelopes in 3.2 positions that 3.1 would import and call.
        "gadget_kwargs": ("deferred", {"event": {"body": EXC_GADGET}}, healthy_trigger),
        "gadget_trigger": ("deferred", HEALTHY_KWARGS, {**healthy_trigger, "extra": {"body": TRIGGER_GADGET}}),
    }


def _deep_legacy(depth: int) -> dict:
    node: object = 1
    for _ in range(depth):
        node = {"__type": "dict", "__var": {"k": node}}
    return node  # type: ignore[return-value]


#: 3.1's airflow_exc_ser decoder: import_string(exc_cls_name)(*args) -- imports mymod.
EXC_GADGET = {"__type": "airflow_exc_ser", "__var": {"__type": "dict", "__var": {
    "exc_cls_name": "mymod.Thing", "args": {"__type": "tuple", "__var": []},
    "kwargs": {"__type": "dict", "__var": {}}}}}
#: 3.1's base_trigger decoder: import_string(classpath)(**kwargs) -- os.system(command=...).
TRIGGER_GADGET = {"__type": "base_trigger", "__var": {"__type": "tuple", "__var": [
    "os.system", {"__type": "dict", "__var": {"command": 'touch "$ISO_GADGET_FLAG"'}}]}}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A migrated 3.1.8 SQLite DB with the DAGs serialized and the poisoned rows in place."""
    site = Site(tmp_path_factory.mktemp("iso-seed"))
    site.run(sys.executable, "-m", "airflow", "db", "migrate")
    site.run(sys.executable, "-m", "airflow", "dags", "reserialize")
    site.run(sys.executable, "-c", SEED, json.dumps(_seed_rows()))
    return site.root / "airflow.db"


def _site_from(seeded: Path, tmp_path: Path) -> Site:
    site = Site(tmp_path / "site")
    shutil.copy(seeded, site.root / "airflow.db")
    return site


def _wait(site: Site, done, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if site.exited():
            return False
        with contextlib.suppress(sqlite3.OperationalError):
            if done(site.states()):
                return True
        time.sleep(2)
    return False


def test_without_isolation_one_poisoned_row_stops_the_triggerer(seeded, tmp_path):
    site = _site_from(seeded, tmp_path)
    try:
        site.start("triggerer", "triggerer", isolation=False)
        end = time.monotonic() + 180
        while time.monotonic() < end and not site.exited():
            time.sleep(2)
        exited, logs = site.exited(), site.logs()
    finally:
        site.stop()
    assert exited.get("triggerer"), f"the triggerer kept running: {logs[-6000:]}"
    assert "UnsupportedPayload: airflow-serde-compat cannot translate the Airflow 3.2 serde classname " \
           "'mymod.Thing'" in logs, logs[-6000:]


def test_poisoned_rows_fail_alone_and_the_components_keep_running(seeded, tmp_path):
    site = _site_from(seeded, tmp_path)
    expected = {"healthy_deferred": "success", "plain": "success", "poisoned_kwargs": "failed",
                "poisoned_trigger": "failed", "poisoned_resumed": "failed", "overflow_trigger": "failed",
                "deep_kwargs": "failed", "listed_classname": "failed", "gadget_kwargs": "failed",
                "gadget_trigger": "failed"}
    try:
        site.start("api-server", "api-server", "--port", str(site.port))
        site.wait_listening()
        site.start("scheduler", "scheduler")
        site.start("triggerer", "triggerer")
        finished = _wait(site, lambda s: all(s.get(t) == st for t, st in expected.items()), timeout=420)
        time.sleep(5)  # a few more loops with the poisoned rows and the broken DAG still in the DB
        exited, states, logs, task_logs = site.exited(), site.states(), site.logs(), site.task_logs()
    finally:
        site.stop()
    assert not exited, f"components exited: {exited}\n{logs[-8000:]}"
    assert finished, f"task states: {states}\n{logs[-8000:]}"
    assert states["never"] is None  # iso_broken's run is skipped, not failed, and not a crash

    # Component logs name the rows, the classname and the remedy.
    assert re.search(r"could not resume task instance dag_id='iso_rows' task_id='poisoned_kwargs' "
                     r"run_id='rollback' map_index=-1: .*classname 'mymod.Thing' version 1 at \$\.thing.*Remedy:",
                     logs), logs[-8000:]
    assert re.search(r"trigger \d+ has kwargs that Airflow 3.1 cannot decode; failing it \(dag_id='iso_rows' "
                     r"task_id='poisoned_trigger' run_id='rollback' map_index=-1\)", logs), logs[-8000:]
    assert re.search(r"serialized DAG 'iso_broken' .*CronPartitionTimetable.*scan --verify", logs), logs[-8000:]
    # Task logs carry the reason into the UI.
    assert "classname 'mymod.Thing' version 1 at $.thing" in task_logs["poisoned_kwargs"]
    assert "Remedy:" in task_logs["poisoned_kwargs"]
    assert "pendulum.datetime.DateTime' version 99 at $.moment" in task_logs["poisoned_trigger"]
    assert "classname 'datetime.timedelta' version 2 at $.budget" in task_logs["poisoned_resumed"]
    # Nothing printed a poisoned value, and the refused class was never imported.
    assert SECRET not in logs and not any(SECRET in text for text in task_logs.values())
    assert not site.flag.exists()
    # Row data never became code, and each new kind of bad row is named in its task's log.
    assert not site.gadget_flag.exists()
    assert "timestamp must be a number between the years 1 and 9999" in task_logs["overflow_trigger"]
    # (Which limit is met first depends on how deep the caller's own stack already is.)
    assert re.search(r"nested (deeper than 200 levels|too deeply for this interpreter)", task_logs["deep_kwargs"])
    assert "classname '<not a class name>'" in task_logs["listed_classname"]
    assert "legacy 'airflow_exc_ser' envelope inside an Airflow 3.2 payload" in task_logs["gadget_kwargs"]
    assert "legacy 'base_trigger' envelope inside an Airflow 3.2 payload" in task_logs["gadget_trigger"]
