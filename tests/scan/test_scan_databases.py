"""``scan`` against real SQLite and PostgreSQL databases built by real Airflow (see conftest)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import SECRET, BuiltDatabase, fernet_key, run_cli, venv_python

pytestmark = pytest.mark.airflow

COUNT_FIELDS = (
    "rows", "null", "legacy", "serde", "serde_translatable", "serde_needs_patched_process",
    "serde_untranslatable", "undecodable",
)


def scan_json(db: BuiltDatabase, *extra: str, url: str | None = None, **kw) -> tuple[int, dict, str]:  # type: ignore[no-untyped-def]
    p = run_cli("scan", "--sql-alchemy-conn", url or db.url, f"--fernet-key={db.keys}", "--output", "json", *extra, **kw)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


def by_source(report: dict) -> dict[str, dict]:
    return {s["source"]: s for s in report["sources"]}


def test_counts_match_what_was_written(built_db: BuiltDatabase) -> None:
    code, report, _ = scan_json(built_db)
    sources = by_source(report)
    assert code == 1 and report["exit_code"] == 1
    assert report["schema"] == "3.1" and report["schema_revision"] == "509b94a1042d"
    for name, expected in built_db.expected.items():
        got = sources[name]
        assert got["present"], name
        assert {f: got[f] for f in COUNT_FIELDS} == {f: expected[f] for f in COUNT_FIELDS}, name
        if name == "trigger.kwargs":
            assert (got["plaintext"], got["encrypted"]) == (expected["plaintext"], expected["encrypted"])
    assert report["serde_rows"] == sum(e["serde"] for e in built_db.expected.values())
    assert sources["deadline_alert.callback_def"] == {
        "source": "deadline_alert.callback_def", "present": False, "absent_reason": "no table deadline_alert",
    }


def test_legacy_count_matches_airflow_318_itself(built_db: BuiltDatabase) -> None:
    """Independent oracle: a next_kwargs row is legacy iff unpatched 3.1.8 reads it."""
    import sqlalchemy as sa

    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization

    assert not airflow_serde_compat.is_active()
    engine = sa.create_engine(built_db.url, poolclass=sa.pool.NullPool)
    readable = unreadable = nulls = 0
    with engine.connect() as conn:
        cast = "CAST(next_kwargs AS TEXT)" if conn.dialect.name == "postgresql" else "next_kwargs"
        for (text,) in conn.exec_driver_sql(f"SELECT {cast} FROM task_instance WHERE next_kwargs IS NOT NULL"):
            if text.strip() == "null":  # SQLAlchemy's JSON type stores None as JSON null
                nulls += 1
                continue
            try:
                BaseSerialization.deserialize(json.loads(text))
                readable += 1
            except Exception:  # noqa: BLE001
                unreadable += 1
    engine.dispose()
    got = by_source(scan_json(built_db)[1])["task_instance.next_kwargs"]
    assert got["legacy"] == readable
    assert got["null"] == nulls + got["rows"] - (readable + unreadable + nulls)  # SQL NULLs too
    assert got["serde"] + got["undecodable"] == unreadable


def test_oldest_row_and_holders(built_db: BuiltDatabase) -> None:
    sources = by_source(scan_json(built_db)[1])
    ti = sources["task_instance.next_kwargs"]
    assert ti["oldest_serde"].startswith("2026-01-10T00:00:00")  # the first 3.2 deferral's start_date
    assert {(h["dag_id"], h["task_id"]) for h in ti["holders"]} == {
        ("dag32", t) for t in ("rich", "empty", "timeout", "uuid", "frozen", "point", "newer")
    } | {("dag31", "lookalike")}
    trig = sources["trigger.kwargs"]
    assert trig["oldest_serde"].startswith("2026-01-20T00:00:00")  # trigger 104 (old key); 105 is undecodable
    holders = {(h.get("dag_id"), h.get("task_id")): h["rows"] for h in trig["holders"]}
    assert holders[("dag_trig", "waits_101")] == 1 and holders[("dag_trig", "waits_103")] == 1


def test_preflight_on_32_schema_with_32_installed(built_db: BuiltDatabase) -> None:
    """Before the downgrade, from the 3.2.1 venv (no install: the source tree on PYTHONPATH)."""
    code, report, stderr = scan_json(built_db, "--verify", url=built_db.pre_url, python=venv_python("321"))
    assert code == 1, stderr
    assert report["schema"].startswith("3.2")
    assert report["verify_mode"] == "pure" and "could not be verified" in report["verify_note"]
    sources = by_source(report)
    assert sources["deadline.callback"]["present"] is False
    ti = sources["task_instance.next_kwargs"]
    assert (ti["serde"], ti["serde_translatable"], ti["serde_needs_patched_process"]) == (7, 4, 2)
    assert ti["verify"]["unverified"] == {"builtins.frozenset": 1, "__main__.Point": 1}
    assert [f["row"]["task_id"] for f in ti["verify"]["failed_rows"]] == ["newer"]


def test_verify_through_patched_airflow_318(built_db: BuiltDatabase) -> None:
    code, report, stderr = scan_json(built_db, "--verify")
    assert code == 1
    assert report["verify_mode"] == "airflow-3.1"
    sources = by_source(report)
    ti = sources["task_instance.next_kwargs"]["verify"]
    failed = {f["row"]["task_id"]: f for f in ti["failed_rows"]}
    # the user dataclass is refused by 3.1's allow-list, the v9 tuple by the translator; the
    # undecodable rows fail for 3.1 with or without the bridge
    assert set(failed) == {"point", "newer", "noversion"} | ({"notjson"} if built_db.kind == "sqlite" else set())
    assert failed["point"]["classname"] == "__main__.Point" and "allow" in failed["point"]["reason"]
    assert ti["unverified"] == {}
    assert ti["verified"] == 6  # rich, empty, timeout, uuid, the frozenset of tuples, the look-alike
    assert sources["deadline.callback"]["verify"]["failures"] == 0
    sdag = {f["classname"]: f for f in sources["serialized_dag.data"]["verify"]["failed_rows"]}
    assert set(sdag) == {"airflow.timetables.trigger.CronPartitionTimetable"}
    assert "CronPartitionTimetable" in sdag["airflow.timetables.trigger.CronPartitionTimetable"]["reason"]
    assert sources["serialized_dag.data"]["verify"]["verified"] == 1  # the callback alias works
    assert sources["xcom.value"]["verify"] == {
        "verified": 1, "unverified": {}, "failures": 0, "failed_rows": [], "failed_rows_truncated": False,
    }


def test_values_and_keys_never_printed(built_db: BuiltDatabase) -> None:
    for output in ("json", "table"):
        p = run_cli("scan", "--sql-alchemy-conn", built_db.url, f"--fernet-key={built_db.keys}", "--output", output, "--verify")
        for secret in (SECRET, built_db.new_key, built_db.old_key):
            assert secret not in p.stdout and secret not in p.stderr


def test_configuration_from_airflow_environment_variables(built_db: BuiltDatabase) -> None:
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": built_db.url, "AIRFLOW__CORE__FERNET_KEY": built_db.keys}
    p = run_cli("scan", "--output", "json", env=env)
    assert p.returncode == 1, p.stderr
    flags = scan_json(built_db)[1]
    env_report = json.loads(p.stdout)
    for report in (env_report, flags):
        for source in report["sources"]:
            source.pop("oldest_serde_age_seconds", None)
    assert env_report["sources"] == flags["sources"]


def test_wrong_fernet_key_is_a_one_line_error(built_db: BuiltDatabase) -> None:
    wrong = fernet_key()
    p = run_cli("scan", "--sql-alchemy-conn", built_db.url, f"--fernet-key={wrong}")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "Fernet" in p.stderr and "decrypt none" in p.stderr and wrong not in p.stderr
    p = run_cli("scan", "--sql-alchemy-conn", built_db.url, "--fernet-key=not-a-key")
    assert p.returncode == 2 and p.stderr.strip() == (
        "airflow-serde-compat: error: Fernet key #1 is not 32 url-safe base64-encoded bytes"
    )
    p = run_cli("scan", "--sql-alchemy-conn", built_db.url, "--fernet-key=", "--debug")
    assert p.returncode == 2 and "Traceback" in p.stderr and "no Fernet key was given" in p.stderr


def test_rotated_keys_only_old_key_given(built_db: BuiltDatabase) -> None:
    p = run_cli("scan", "--sql-alchemy-conn", built_db.url, f"--fernet-key={built_db.old_key}", "--output", "json")
    trig = by_source(json.loads(p.stdout))["trigger.kwargs"]
    # rows under the new key become undecodable, the scan still completes
    assert trig["undecodable"] == built_db.expected["trigger.kwargs"]["undecodable"] + 2


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a valid SQLAlchemy URL"),
        ("nosuchdialect://x/y", "no SQLAlchemy dialect"),
        ("sqlite:////nonexistent/dir/airflow.db", "no SQLite database file"),
    ],
)
def test_bad_database_url_is_a_one_line_error(url: str, message: str) -> None:
    p = run_cli("scan", "--sql-alchemy-conn", url, "--fernet-key=")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and message in p.stderr and "Traceback" not in p.stderr


@pytest.mark.postgres
def test_unreachable_postgres_hides_password() -> None:
    p = run_cli("scan", "--sql-alchemy-conn", "postgresql://postgres:hunter2@127.0.0.1:5432/serde_compat_no_such_db", "--fernet-key=")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "hunter2" not in p.stderr and "***" in p.stderr and "does not exist" in p.stderr


def test_clean_database_exits_0_and_missing_tables(tmp_path: Path) -> None:
    """A 3.1.8-migrated DB with only legacy rows, then one with some tables dropped, then none."""
    from conftest import _airflow_env, _run

    db = tmp_path / "clean.db"
    _run([venv_python("318"), "-m", "airflow", "db", "migrate"], _airflow_env(f"sqlite:///{db}", tmp_path / "home"))
    con = sqlite3.connect(db)
    con.execute("INSERT INTO trigger (id, classpath, kwargs, created_date) VALUES "
                "(1, 'x', '{\"__var\": {}, \"__type\": \"dict\"}', '2026-01-01 00:00:00')")
    con.commit()
    p = run_cli("scan", "--sql-alchemy-conn", f"sqlite:///{db}", "--fernet-key=")
    assert p.returncode == 0, p.stderr
    assert "the bridge is no longer needed" in p.stdout
    for table in ("deadline", "xcom"):
        con.execute(f"DROP TABLE {table}")
    con.commit()
    p = run_cli("scan", "--sql-alchemy-conn", f"sqlite:///{db}", "--fernet-key=", "--output", "json")
    assert p.returncode == 0, p.stderr
    sources = by_source(json.loads(p.stdout))
    assert sources["xcom.value"] == {"source": "xcom.value", "present": False, "absent_reason": "no table xcom"}
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE unrelated (x int)")
    p = run_cli("scan", "--sql-alchemy-conn", f"sqlite:///{empty}", "--fernet-key=")
    assert p.returncode == 2 and "is it the Airflow metadata database?" in p.stderr


def test_table_output_and_installed_console_script(sqlite_db: BuiltDatabase, tmp_path: Path) -> None:
    """The installed entry point (pip install --no-deps /work/main into the runner's venv)."""
    import sys

    script = Path(sys.executable).parent / "airflow-serde-compat"
    if not script.exists():
        pytest.skip("airflow-serde-compat is not installed in the test venv")
    p = subprocess.run([str(script), "scan", "--sql-alchemy-conn", sqlite_db.url, f"--fernet-key={sqlite_db.keys}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "task_instance.next_kwargs" in p.stdout and "keep AIRFLOW_SERDE_COMPAT=1" in p.stdout
    assert p.stderr == ""  # no progress bar when stderr is not a terminal


def test_doctor_reports_active_bridge() -> None:
    p = run_cli("doctor", env={"AIRFLOW_SERDE_COMPAT": "1"})
    assert p.returncode == 0, p.stderr
    assert "mode: on" in p.stdout and "apache-airflow-core: 3.1.8" in p.stdout
    assert "bridge active in this process: yes\n" in p.stdout
    p = run_cli("doctor")
    assert "mode: off" in p.stdout and "bridge active in this process: no" in p.stdout


@pytest.mark.postgres
def test_connection_lost_mid_scan_is_a_one_line_error_naming_the_column(postgres_db: BuiltDatabase) -> None:
    """The scan reads PostgreSQL through psycopg2's own server-side cursor, outside SQLAlchemy's
    error wrapping: a server that drops the connection mid-column is still the operator's one-line
    error, raised where the scan runs (not in its reader thread), with no row value in it."""
    import sqlalchemy as sa

    from airflow_serde_compat.scan.database import ScanError, scan_database

    engine = sa.create_engine(postgres_db.url, poolclass=sa.pool.NullPool)
    dbname = postgres_db.url.rsplit("/", 1)[-1]
    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)

    class KillAfterFirstBatch:
        killed = 0

        def start(self, name: str, total: int | None) -> None:
            pass

        def advance(self, n: int) -> None:
            if not self.killed:
                with admin.connect() as conn:
                    self.killed = conn.execute(sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": dbname}).scalar()

        def stop(self) -> None:
            pass

    progress = KillAfterFirstBatch()
    with pytest.raises(ScanError) as err:
        scan_database(engine, fernet_keys=postgres_db.keys.split(","), progress=progress, batch=1)
    assert progress.killed >= 1
    message = str(err.value)
    assert message.startswith("reading task_instance.next_kwargs failed: "), message
    assert "\n" not in message and "__classname__" not in message and "__var" not in message
    engine.dispose()
    admin.dispose()
