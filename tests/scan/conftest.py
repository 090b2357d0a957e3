"""Real databases for the scan tests: schemas made by real Airflow, rows by real writers.

Per database kind (SQLite file, PostgreSQL database ``serde_compat_scan_<pid>_*``), once per
session:

1. ``airflow db migrate`` with Airflow 3.2.1 (venv 321): a 3.2 schema (the *preflight* DB).
2. ``write_32_rows.py`` in the same venv writes 3.2-format rows with 3.2.1's own serializer
   and Fernet path (old, new and a foreign key).
3. A copy is downgraded with ``airflow db downgrade -n 3.1.8 -y`` (3.2.1's migrations).
4. Airflow 3.1.8 (this interpreter) adds legacy rows with its own ``BaseSerialization``,
   deadline rows in both shapes, serialized DAGs, and undecodable rows.

``expected[source][category]`` is tallied from what was written, not from scan's code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UTC = dt.timezone.utc
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
#: A value placed in kwargs: it must never appear in scan's output.
SECRET = "s3cr3t-kwarg-value"

sys.path.insert(0, str(HERE))
# The working tree, not whatever version is installed in the runner's venv.
SRC = str(REPO / "src")
sys.path.insert(0, SRC)


def venv_python(name: str) -> str:
    out = subprocess.run(
        ["bash", str(REPO / "tools/venvs.sh"), name], check=True, stdout=subprocess.PIPE, text=True, timeout=1800
    ).stdout.split()
    return str(Path(out[-1]) / "bin/python")


def _airflow_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    return env


def _run(cmd: list[str], env: dict[str, str]) -> str:
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    if p.returncode:
        raise AssertionError(f"{' '.join(cmd[:4])} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass
class BuiltDatabase:
    kind: str
    pre_url: str  # 3.2 schema, before the downgrade
    url: str  # downgraded to 3.1.8
    old_key: str
    new_key: str
    foreign_key: str
    expected: dict = field(default_factory=lambda: defaultdict(Counter))
    oldest: dict = field(default_factory=dict)

    @property
    def keys(self) -> str:
        return f"{self.new_key},{self.old_key}"


def _tally(built: BuiltDatabase, written: list[dict]) -> None:
    for row in written:
        category = row["expected"]
        counts = built.expected[row["source"]]
        counts["rows"] += 1
        if category in ("translatable", "needs_patched_process", "untranslatable"):
            counts["serde"] += 1
            counts[f"serde_{category}"] += 1
        else:
            counts[category] += 1
        if "encrypted" in row:
            counts["encrypted" if row["encrypted"] else "plaintext"] += 1


def _write_31_rows(built: BuiltDatabase) -> list[dict]:
    """Rows as Airflow 3.1.8 itself writes them, plus the downgrade's shapes and broken rows."""
    from cryptography.fernet import Fernet
    from dbrows import RawJSON, connect, insert

    from airflow.sdk import DAG
    from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference
    from airflow.serialization import serde
    from airflow.serialization.serialized_objects import BaseSerialization, SerializedDAG

    def legacy(value: object) -> str:
        return json.dumps(BaseSerialization.serialize(value))

    written: list[dict] = []
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    conn = connect(built.url)
    sqlite = conn.dialect.name == "sqlite"
    with conn.begin():
        ti_legacy = [
            {"when": now, "t": (1, 2), "secret": SECRET},
            {},
            {"event": {"n": 1}, "d": dt.timedelta(minutes=5)},
        ]
        for n, kwargs in enumerate(ti_legacy):
            insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag31", task_id=f"legacy{n}", run_id="r1",
                   map_index=-1, start_date=now, next_kwargs=RawJSON(legacy(kwargs)))
            written.append({"source": "task_instance.next_kwargs", "expected": "legacy"})
        insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag31", task_id="nokwargs", run_id="r1",
               map_index=-1, next_kwargs=None)
        written.append({"source": "task_instance.next_kwargs", "expected": "null"})
        # a legacy look-alike with a __type 3.1 never wrote: a 3.2 user dict (3.1 alone fails on it)
        insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag31", task_id="lookalike", run_id="r1",
               map_index=-1, next_kwargs=RawJSON('{"__type": "no_such_type", "__var": 1}'))
        written.append({"source": "task_instance.next_kwargs", "expected": "translatable"})
        # a serde-looking node without __version__: neither 3.1 nor the bridge can read it
        insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag31", task_id="noversion", run_id="r1",
               map_index=-1, next_kwargs=RawJSON('{"__classname__": "builtins.tuple", "__data__": [1]}'))
        written.append({"source": "task_instance.next_kwargs", "expected": "undecodable"})
        if sqlite:  # only SQLite lets a JSON column hold non-JSON
            insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="dag31", task_id="notjson", run_id="r1",
                   map_index=-1, next_kwargs=RawJSON("{not json"))
            written.append({"source": "task_instance.next_kwargs", "expected": "undecodable"})
        insert(conn, "task_instance_history", task_instance_id=str(uuid.uuid4()), dag_id="dag31", task_id="legacy0",
               run_id="r0", map_index=-1, try_number=1, next_kwargs=RawJSON(legacy({"a": 1})))
        written.append({"source": "task_instance_history.next_kwargs", "expected": "legacy"})

        moment = {"moment": now, "end_from_trigger": False, "secret": SECRET}
        triggers = [
            (201, legacy(moment)),  # 3.1 deferrals: plaintext legacy
            (202, Fernet(built.new_key.encode()).encrypt(legacy(moment).encode()).decode()),
            (203, Fernet(built.old_key.encode()).encrypt(legacy(moment).encode()).decode()),
        ]
        for trigger_id, text in triggers:
            insert(conn, "trigger", id=trigger_id, classpath="airflow.triggers.temporal.DateTimeTrigger",
                   kwargs=text, created_date=now)
            written.append({"source": "trigger.kwargs", "expected": "legacy", "encrypted": not text.startswith("{")})
        insert(conn, "trigger", id=204, classpath="x.Y", kwargs="gAAAAA-not-a-fernet-token", created_date=now)
        written.append({"source": "trigger.kwargs", "expected": "undecodable", "encrypted": True})

        # deadline.callback: 3.1.8's own shape (core serde) and what the 0094 downgrade builds
        native = serde.serialize(AsyncCallback("tests_mod.cb", kwargs={"t": (1, 2)}))
        downgraded = {
            "__classname__": "airflow.sdk.definitions.deadline.AsyncCallback", "__version__": 0,
            "__data__": {"path": "tests_mod.cb", "kwargs": {"__type": "dict", "__var": {
                "n": 1, "t": {"__type": "tuple", "__var": [1, 2]}, "when": {"__type": "datetime", "__var": 1893456000.0}}}},
        }
        primitive_downgraded = {**downgraded, "__data__": {"path": "tests_mod.cb",
                                                           "kwargs": {"__type": "dict", "__var": {"n": 1}}}}
        for payload, expected in ((native, "legacy"), (downgraded, "translatable"), (primitive_downgraded, "legacy")):
            insert(conn, "deadline", id=uuid.uuid4().hex, dagrun_id=None, deadline_time=now,
                   callback=RawJSON(json.dumps(payload)))
            written.append({"source": "deadline.callback", "expected": expected})

        with DAG("dl", schedule=None, deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=dt.timedelta(hours=1),
            callback=AsyncCallback("tests_mod.cb", kwargs={"n": 1}),
        )) as dag:
            pass
        text = json.dumps(SerializedDAG.to_dict(dag))
        renamed = text.replace("airflow.sdk.definitions.deadline.AsyncCallback", "airflow.sdk.definitions.callback.AsyncCallback")
        partitioned = renamed.replace("airflow.timetables.simple.NullTimetable", "airflow.timetables.trigger.CronPartitionTimetable")
        # a legacy DAG whose docs merely mention a 3.2-only name must not count
        mention = text.replace('"dag_id": "dl"', '"doc_md": "see airflow.sdk.definitions.callback.AsyncCallback", "dag_id": "dl"')
        for data, compressed, expected in (
            (text, None, "legacy"), (None, zlib.compress(text.encode()), "legacy"), (mention, None, "legacy"),
            (renamed, None, "translatable"), (partitioned, None, "untranslatable"),
        ):
            insert(conn, "serialized_dag", id=uuid.uuid4().hex, dag_id="dl", dag_version_id=uuid.uuid4().hex,
                   data=RawJSON(data) if data is not None else None, data_compressed=compressed,
                   created_at=now, last_updated=dt.datetime(2026, 1, 2, tzinfo=UTC))
            written.append({"source": "serialized_dag.data", "expected": expected})
    conn.close()
    return written


def _build(kind: str, tmp: Path, pre_url: str, url: str, clone) -> BuiltDatabase:  # type: ignore[no-untyped-def]
    v321 = venv_python("321")
    built = BuiltDatabase(kind, pre_url, url, fernet_key(), fernet_key(), fernet_key())
    env = _airflow_env(pre_url, tmp / "home321")
    _run([v321, "-m", "airflow", "db", "migrate"], env)
    written = json.loads(
        _run([v321, str(HERE / "write_32_rows.py"), pre_url, built.old_key, built.new_key, built.foreign_key], env)
        .strip().splitlines()[-1]
    )
    _tally(built, written)
    clone()
    _run([v321, "-m", "airflow", "db", "downgrade", "-n", "3.1.8", "-y"], _airflow_env(url, tmp / "home321"))
    _tally(built, _write_31_rows(built))
    return built


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> BuiltDatabase:
    tmp = tmp_path_factory.mktemp("scan_sqlite")
    pre, post = tmp / "pre32.db", tmp / "downgraded.db"
    return _build("sqlite", tmp, f"sqlite:///{pre}", f"sqlite:///{post}", lambda: shutil.copy(pre, post))


def _pg_admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_db(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("scan_pg")
    base = f"serde_compat_scan_{os.getpid()}"
    names = [f"{base}_pre32", f"{base}_down"]
    try:
        _pg_admin(f"CREATE DATABASE {names[0]}")
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not usable: {err}")
    urls = [f"postgresql+psycopg2://postgres@127.0.0.1:5432/{n}" for n in names]
    try:
        yield _build("postgres", tmp, urls[0], urls[1],
                     lambda: _pg_admin(f"CREATE DATABASE {names[1]} TEMPLATE {names[0]}"))
    finally:
        for name in names:
            _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built_db(request: pytest.FixtureRequest) -> BuiltDatabase:
    return request.getfixturevalue(f"{request.param}_db")


def run_cli(*args: str, python: str | None = None, env: dict[str, str] | None = None,
            pythonpath: str | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base["PYTHONPATH"] = pythonpath or SRC
    base.update(env or {})
    return subprocess.run(
        [python or sys.executable, "-m", "airflow_serde_compat", *args],
        env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
    )
