"""``rewrite`` and ``restore`` on real databases: 3.2.1-written rows, downgraded by real Airflow (see conftest).

Dumps are the databases' own (``sqlite3 .dump`` / ``pg_dump``), compared line by line, sorted
(PostgreSQL moves an updated row to another place in the heap).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import SECRET, BuiltDatabase, _pg_admin, run_cli

pytestmark = pytest.mark.airflow


def copy_of(db: BuiltDatabase, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if db.kind == "sqlite":
        src = db.url.removeprefix("sqlite:///")
        dst = tmp_path / f"copy-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(src, dst)
        return f"sqlite:///{dst}"
    source = db.url.rsplit("/", 1)[1]
    name = f"{source}_rw_{uuid.uuid4().hex[:8]}"
    _pg_admin(f"CREATE DATABASE {name} TEMPLATE {source}")
    request.addfinalizer(lambda: _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def dump(url: str) -> list[str]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return sorted(conn.iterdump())
        finally:
            conn.close()
    name = url.rsplit("/", 1)[1]
    out = subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--data-only", name],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    # pg_dump >= 15.14 brackets its output with \\restrict <random key> lines
    return sorted(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def rewrite(db: BuiltDatabase, url: str, *extra: str) -> tuple[int, dict, str]:
    p = run_cli("rewrite", "--sql-alchemy-conn", url, f"--fernet-key={db.keys}", "--output", "json", *extra)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


def scan(db: BuiltDatabase, url: str) -> tuple[int, dict]:
    p = run_cli("scan", "--sql-alchemy-conn", url, f"--fernet-key={db.keys}", "--output", "json")
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)


def serde_counts(report: dict) -> dict[str, int]:
    return {s["source"]: s["serde"] for s in report["sources"] if s.get("present") and s["serde"]}


def test_dry_run_writes_nothing_and_names_every_row_it_would_change(built_db, tmp_path, request):
    url = copy_of(built_db, tmp_path, request)
    before = dump(url)
    code, report, err = rewrite(built_db, url)
    assert code == 1, err
    assert dump(url) == before
    assert not report["applied"]
    _, scanned = scan(built_db, url)
    for name, n in serde_counts(scanned).items():
        col = next(c for c in report["columns"] if c["column"] == name)
        # every 3.2-format row is either named as one to rewrite or as left, with a reason
        assert col["would_rewrite"] + col["left"] == n, (name, col)
        assert len(col["would_rewrite_rows"]) == col["would_rewrite"] and len(col["left_rows"]) == col["left"]
    text = json.dumps(report)
    assert SECRET not in text


def test_apply_leaves_only_what_31_cannot_hold_and_restore_gives_back_every_byte(built_db, tmp_path, request):
    url = copy_of(built_db, tmp_path, request)
    original = dump(url)
    # what the bridge itself cannot read (scan --verify, through the patched 3.1.8 readers)
    p = run_cli("scan", "--verify", "--sql-alchemy-conn", url, f"--fernet-key={built_db.keys}", "--output", "json")
    # (verify also lists the undecodable rows, which are no 3.2 format and never rewritten)
    unreadable = {s["source"]: s["verify"]["failures"] - s["undecodable"] for s in json.loads(p.stdout)["sources"]
                  if s.get("verify", {}).get("failures", 0) > s.get("undecodable", 0)}
    assert unreadable, "the fixture has rows the bridge refuses"
    backup = tmp_path / "backup.jsonl"
    code, report, err = rewrite(built_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    rewritten = {c["column"]: c["rewritten"] for c in report["columns"] if c.get("rewritten")}
    assert rewritten, report
    assert code == 1, (code, err, report)
    assert {c["column"]: c["left"] for c in report["columns"] if c["left"]} == unreadable, report
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert SECRET not in json.dumps(report)
    # scan agrees: what is left in the 3.2 format is what the bridge could never translate either
    scan_code, scanned = scan(built_db, url)
    assert serde_counts(scanned) == unreadable, scanned
    # a rerun has nothing to do and converts nothing twice
    code2, report2, _ = rewrite(built_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert not any(c.get("rewritten") for c in report2["columns"]), report2
    lines = backup.read_text().splitlines()
    assert len(lines) == 1 + sum(rewritten.values())
    # and restore puts every original back, byte for byte
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url, "--output", "json")
    assert p.returncode == 0, p.stderr + p.stdout
    assert sum(json.loads(p.stdout)["restored"].values()) == sum(rewritten.values())
    assert dump(url) == original


def test_rewritten_rows_read_natively_in_an_unpatched_318(built_db, tmp_path, request):
    """The oracle is Airflow 3.1.8 itself, without the bridge: it reads every rewritten row to the value
    the bridge reads from the original row."""
    url = copy_of(built_db, tmp_path, request)
    code, report, err = rewrite(built_db, url, "--apply", "--backup", str(tmp_path / "b.jsonl"), "--xcom-uuid=str")
    script = Path(__file__).with_name("read_natively.py")
    env = {"AIRFLOW__CORE__FERNET_KEY": built_db.keys}
    natively = subprocess.run([_python(), str(script), url], env={**_clean_env(), **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert natively.returncode == 0, natively.stderr[-3000:]
    native = json.loads(natively.stdout.splitlines()[-1])
    original_url = built_db.url
    bridged = subprocess.run([_python(), str(script), original_url], env={**_clean_env(), **env, "AIRFLOW_SERDE_COMPAT": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert bridged.returncode == 0, bridged.stderr[-3000:]
    via_bridge = json.loads(bridged.stdout.splitlines()[-1])
    # the rewrite also repaired the task-instance ids the downgrade mangled (the fixture's dashed ids)
    from airflow_serde_compat.rewrite.task_instance_ids import is_mangled, repaired

    def renamed(key: str) -> str:
        kind, _, rest = key.partition(" ")
        return f"{kind} {repaired(rest)}" if is_mangled(rest) else key

    via_bridge = {"values": {renamed(k): v for k, v in via_bridge["values"].items()},
                  "failed": sorted(renamed(k) for k in via_bridge["failed"])}
    # what the bridge cannot read was left as it is, and is all 3.1.8 cannot read now
    only_native = sorted(set(native["failed"]) - set(via_bridge["failed"]))
    only_bridge = sorted(set(via_bridge["failed"]) - set(native["failed"]))
    assert not only_native and not only_bridge, f"3.1.8 alone fails on {only_native}; only the bridge on {only_bridge}"
    assert native["values"].keys() == via_bridge["values"].keys()
    changed = {k for k in native["values"] if native["values"][k] != via_bridge["values"][k]}
    # --xcom-uuid=str: the one deliberate change of value (type uuid.UUID -> its text)
    assert all(k.startswith("xcom ") and "UUID(" in via_bridge["values"][k] for k in changed), {k: (native["values"][k], via_bridge["values"][k]) for k in changed}
    assert len(native["values"]) > 10


def _python() -> str:
    import sys

    return sys.executable


def _as_from_a_terminal(args: list[str]) -> list[str]:
    """``args`` run with SIGINT at its default, as a shell started from a terminal runs a command.
    A background job of a script (``.ci/run &``, nohup) ignores SIGINT, every process it starts
    inherits that, and Python then never installs its Ctrl-C handler: the tests of Ctrl-C would
    test nothing. The disposition is set, then Python is exec'd (a disposition survives exec)."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [args[0], "-c", reset, *args]


def _clean_env() -> dict[str, str]:
    from conftest import SRC

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = SRC
    return env


def test_refuses_while_a_scheduler_heartbeats_unless_forced(sqlite_db, tmp_path, request):
    import datetime as dt

    import sqlalchemy as sa

    url = copy_of(sqlite_db, tmp_path, request)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO job (job_type, state, hostname, latest_heartbeat, start_date) "
            "VALUES ('SchedulerJob', 'running', 'sched-0', :hb, :hb)"
        ), {"hb": dt.datetime.now(dt.timezone.utc)})
    engine.dispose()
    before = dump(url)
    p = run_cli("rewrite", "--apply", "--backup", str(tmp_path / "b.jsonl"), "--sql-alchemy-conn", url,
                f"--fernet-key={sqlite_db.keys}")
    assert p.returncode == 2 and "SchedulerJob on sched-0" in p.stderr and "--force" in p.stderr, p.stderr
    assert dump(url) == before
    code, report, err = rewrite(sqlite_db, url, "--apply", "--backup", str(tmp_path / "b.jsonl"), "--force")
    assert any(c.get("rewritten") for c in report["columns"]) and report["forced_past"], report


def test_a_kill_9_mid_rewrite_then_a_rerun_ends_where_one_run_ends(built_db, tmp_path, request):
    """SIGKILL once the backup holds some rows (batch size 1: a kill lands between a batch's backup and
    its commit, or between batches; on PostgreSQL also while one batch commits in its thread and the
    next one's lines are written); the rerun appends to the same backup and finishes the job."""
    sqlite_db = built_db
    whole = copy_of(sqlite_db, tmp_path, request)
    code, _, err = rewrite(sqlite_db, whole, "--apply", "--backup", str(tmp_path / "whole.jsonl"), "--xcom-uuid=str")
    killed = copy_of(sqlite_db, tmp_path, request)
    original = dump(killed)
    backup = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [_python(), "-m", "airflow_serde_compat", "rewrite", "--apply", "--batch-size", "1", "--backup", str(backup),
         "--sql-alchemy-conn", killed, f"--fernet-key={sqlite_db.keys}", "--xcom-uuid=str"],
        env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if backup.exists() and len(backup.read_text().splitlines()) >= 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the rewrite finished before it could be killed"
    code, report, err = rewrite(sqlite_db, killed, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert _normalized(dump(killed), sqlite_db) == _normalized(dump(whole), sqlite_db)
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", killed)
    assert p.returncode == 0, p.stderr + p.stdout
    assert dump(killed) == original


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] not in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _with_more_task_instances(db: BuiltDatabase, url: str, n: int = 2000) -> None:
    """``n`` more copies of a task instance rewrite converts (other map indexes): time to act mid-run."""
    import sqlalchemy as sa

    _, report, _ = rewrite(db, url)
    first = next(c for c in report["columns"] if c["column"] == "task_instance.next_kwargs")["would_rewrite_rows"][0]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        names = [c["name"] for c in sa.inspect(conn).get_columns("task_instance") if c["name"] not in ("id", "map_index")]
        cols = ", ".join(names)
        # as the fixture's rows: task instances of a run that is not in dag_run
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(sa.text(
            f"INSERT INTO task_instance (id, map_index, {cols}) SELECT CAST(md5(CAST(id AS TEXT) || g) AS uuid), 100000 + g, {cols} "
            "FROM task_instance, generate_series(1, :n) AS g "
            "WHERE dag_id = :dag_id AND task_id = :task_id AND run_id = :run_id AND map_index = :map_index"
        ), {"n": n, **{k: first[k] for k in ("dag_id", "task_id", "run_id", "map_index")}})
    engine.dispose()


def _rewrite_until_the_conversion_child_runs(db: BuiltDatabase, url: str, backup: Path) -> tuple[subprocess.Popen, int]:
    """``rewrite --apply --batch-size 1`` started, and the pid of its conversion child once the
    child has converted task instances (their lines are in the backup)."""
    proc = subprocess.Popen(_as_from_a_terminal(
        [_python(), "-m", "airflow_serde_compat", "rewrite", "--apply", "--batch-size", "1", "--backup", str(backup),
         "--sql-alchemy-conn", url, f"--fernet-key={db.keys}", "--xcom-uuid=str", "--no-progress"]),
        env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        children = _children(proc.pid)
        if children and backup.exists() and '"task_instance.next_kwargs"' in backup.read_text():
            return proc, children[0]
        time.sleep(0.002)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"no conversion child seen while task instances were rewritten: exit {proc.returncode}, {err[-2000:]}")


@pytest.mark.postgres
def test_the_conversion_child_writes_what_one_process_writes(postgres_db, tmp_path, request):
    """On PostgreSQL the conversion runs in a forked child, up to two batches ahead: the same rows, the same
    report and the same backup as converting in the rewrite's own process."""
    child, one = copy_of(postgres_db, tmp_path, request), copy_of(postgres_db, tmp_path, request)
    code_child, report_child, _ = rewrite(postgres_db, child, "--apply", "--backup", str(tmp_path / "c.jsonl"),
                                          "--xcom-uuid=str", "--batch-size", "3")
    code_one, report_one, _ = rewrite(postgres_db, one, "--apply", "--backup", str(tmp_path / "o.jsonl"),
                                      "--xcom-uuid=str", "--batch-size", "3", "--no-conversion-process")
    assert (code_child, report_child) == (code_one, {**report_one, "database": report_child["database"],
                                                     "backup": report_child["backup"]})
    assert sum(c.get("rewritten", 0) for c in report_child["columns"]) >= 10, report_child
    assert _normalized(dump(child), postgres_db) == _normalized(dump(one), postgres_db)

    def lines(path: Path) -> list[dict]:
        # "after" of an encrypted value is the fingerprint of a new Fernet token: differs per run
        return [{k: v for k, v in json.loads(line).items() if k != "after" or "kwargs" not in v}
                for line in path.read_text().splitlines()[1:]]

    assert lines(tmp_path / "c.jsonl") == lines(tmp_path / "o.jsonl")


@pytest.mark.postgres
def test_a_killed_conversion_child_stops_the_run_with_one_line_and_a_rerun_finishes(postgres_db, tmp_path, request):
    url, whole = copy_of(postgres_db, tmp_path, request), copy_of(postgres_db, tmp_path, request)
    _with_more_task_instances(postgres_db, url)
    _with_more_task_instances(postgres_db, whole)
    rewrite(postgres_db, whole, "--apply", "--backup", str(tmp_path / "whole.jsonl"), "--xcom-uuid=str")
    original = dump(url)
    backup = tmp_path / "b.jsonl"
    proc, child = _rewrite_until_the_conversion_child_runs(postgres_db, url, backup)
    os.kill(child, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err[-3000:])
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "the conversion process stopped (killed by SIGKILL" in errors[0], err[-3000:]
    assert "rerun" in errors[0] and "Traceback" not in err
    code, report, _ = rewrite(postgres_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert _normalized(dump(url), postgres_db) == _normalized(dump(whole), postgres_db)
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url)
    assert p.returncode == 0, p.stderr + p.stdout
    assert dump(url) == original


@pytest.mark.postgres
def test_a_kill_9_of_rewrite_takes_its_conversion_child_with_it(postgres_db, tmp_path, request):
    url = copy_of(postgres_db, tmp_path, request)
    _with_more_task_instances(postgres_db, url)
    proc, child = _rewrite_until_the_conversion_child_runs(postgres_db, url, tmp_path / "b.jsonl")
    proc.kill()
    proc.wait(timeout=60)  # not communicate(): it would wait for the child too (it holds the pipes)
    # The rerun the README tells the operator to start may start at once: the child, alive for a
    # moment more, holds no lock on the backup file (rewrite's own, flock).
    import fcntl

    with open(tmp_path / "b.jsonl", "rb") as backup:
        fcntl.flock(backup.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the conversion child outlived its killed parent"


@pytest.mark.postgres
def test_ctrl_c_stops_rewrite_and_its_conversion_child_with_one_line(postgres_db, tmp_path, request):
    """SIGINT to the process group, as a terminal's Ctrl-C: one line from rewrite, none from the child."""
    url = copy_of(postgres_db, tmp_path, request)
    _with_more_task_instances(postgres_db, url)
    proc, child = _rewrite_until_the_conversion_child_runs(postgres_db, url, tmp_path / "b.jsonl")
    os.kill(proc.pid, signal.SIGINT)
    os.kill(child, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().splitlines()[-1].endswith("interrupted"), err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert not _alive(child)


@pytest.mark.postgres
def test_ctrl_c_stops_rewrite_while_its_update_waits_on_a_row_lock(postgres_db, tmp_path, request):
    """A component's open transaction holds a lock on a row of the batch being committed: Ctrl-C
    still ends the run within seconds (the update is cancelled; its batch is rolled back, its lines
    were on disk already), with the lock still held. The rerun finishes the job; restore gives back
    every byte."""
    import sqlalchemy as sa

    url = copy_of(postgres_db, tmp_path, request)
    _with_more_task_instances(postgres_db, url)
    original = dump(url)
    name = url.rsplit("/", 1)[1]
    holder = sa.create_engine(url, poolclass=sa.pool.NullPool).connect()
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        holder.exec_driver_sql("SELECT 1 FROM task_instance WHERE map_index = 101000 FOR UPDATE")
        backup = tmp_path / "b.jsonl"
        proc = subprocess.Popen(_as_from_a_terminal(
            [_python(), "-m", "airflow_serde_compat", "rewrite", "--apply", "--batch-size", "50", "--backup",
             str(backup), "--sql-alchemy-conn", url, f"--fernet-key={postgres_db.keys}", "--xcom-uuid=str",
             "--no-progress"]), env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        deadline = time.monotonic() + 120
        with admin.connect() as conn:
            while proc.poll() is None and time.monotonic() < deadline and not conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (name,)).scalar():
                time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the update never waited on the lock"
        stopped = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("rewrite did not stop within 60 s of Ctrl-C while its update waited on a row lock")
        assert time.monotonic() - stopped < 30
        assert proc.returncode == 2 and err.strip().splitlines()[-1].endswith("interrupted"), err[-3000:]
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
        assert "its update was cancelled and rolled back; a rerun converts its rows" in err, err[-3000:]
        with admin.connect() as conn:  # nothing of the rewrite is left in the database
            assert not conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND pid <> %s", (name, holder.connection.dbapi_connection.get_backend_pid())).scalar()
    finally:
        holder.close()
        admin.dispose()
    whole = copy_of(postgres_db, tmp_path, request)
    _with_more_task_instances(postgres_db, whole)  # the same rows: their ids are digests
    rewrite(postgres_db, whole, "--apply", "--backup", str(tmp_path / "whole.jsonl"), "--xcom-uuid=str")
    rewrite(postgres_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert _normalized(dump(url), postgres_db) == _normalized(dump(whole), postgres_db)
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url)
    assert p.returncode == 0, p.stderr + p.stdout
    assert dump(url) == original


@pytest.mark.postgres
def test_encrypted_rows_no_given_key_decrypts_are_an_error_also_from_the_conversion_child(postgres_db, tmp_path,
                                                                                            request):
    """The child's copy of the key reader counts what it could not decrypt; the parent must hear of it."""
    from cryptography.fernet import Fernet

    url = copy_of(postgres_db, tmp_path, request)
    p = run_cli("rewrite", "--sql-alchemy-conn", url, f"--fernet-key={Fernet.generate_key().decode()}", "--apply",
                "--backup", str(tmp_path / "b.jsonl"), "--only", "trigger.kwargs")
    assert p.returncode == 2 and "no given key decrypts them" in p.stderr, p.stderr[-3000:]


@pytest.mark.parametrize("batch", [1, 4])
def test_a_row_a_component_changes_between_read_and_write_is_left_as_the_component_wrote_it(
        built_db, tmp_path, request, batch):
    """Every third 3.2-format task instance is cleared by "a component" after rewrite read it and
    before its batch is written (on PostgreSQL while the batch before commits in the other thread):
    rewrite reports exactly those rows as changed meanwhile, leaves them cleared, rewrites the rest;
    restore puts the rest back and leaves the cleared ones alone."""
    url = copy_of(built_db, tmp_path, request)
    original = dump(url)
    backup = tmp_path / "b.jsonl"
    p = _beside_a_component(built_db, url, backup, str(batch))
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(out["cleared"]) >= 2, out
    named = sorted(json.dumps(r, sort_keys=True) for r in out["changed"])
    assert named == sorted(json.dumps(r, sort_keys=True) for r in out["cleared_rows"]), out
    assert out["changed_meanwhile"] == len(out["cleared"])
    assert out["rewritten"] >= len(out["cleared"]), out
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        by_id = dict(conn.execute(sa.text("SELECT CAST(id AS TEXT), next_kwargs FROM task_instance")).fetchall())
    engine.dispose()
    assert all(by_id[i] is None for i in out["cleared"])
    # Everything else as one undisturbed run leaves it.
    whole = copy_of(built_db, tmp_path, request)
    rewrite(built_db, whole, "--apply", "--backup", str(tmp_path / "whole.jsonl"), "--xcom-uuid=str")
    ours, theirs = _normalized(dump(url), built_db), _normalized(dump(whole), built_db)
    differ = [line for line in ours if line not in set(theirs)]
    assert len(differ) == len(out["cleared"]) and all(_names_a_cleared_row(line, out) for line in differ)
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url, "--output", "json")
    assert p.returncode == 1, p.stderr + p.stdout
    skipped = json.loads(p.stdout)["skipped"]
    assert sorted(s["row"]["id"] for s in skipped) == sorted(out["cleared"]), skipped
    after = dump(url)
    gone = [line for line in original if line not in set(after)]
    assert len(gone) == len(out["cleared"]) and all(_names_a_cleared_row(line, out) for line in gone)


def test_a_batch_the_database_refuses_stops_the_run_with_one_line_and_a_rerun_finishes(built_db, tmp_path, request):
    """The second task-instance batch's transaction fails after its update (on PostgreSQL in the commit
    thread, while the next batch is converted): one line naming the database, nothing of that batch
    written; the rerun with the same backup ends where one run ends, and restore gives every byte back."""
    url = copy_of(built_db, tmp_path, request)
    original = dump(url)
    backup = tmp_path / "b.jsonl"
    p = _beside_a_component(built_db, url, backup, "2", "fail")
    assert p.returncode == 2, p.stdout + p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(out["batches"]) == 2, out  # it stopped at the failed batch, before submitting another
    error = out["error"]
    assert "no_such_table_for_this_test" in error and "\n" not in error and built_db.keys.split(",")[0] not in error, error
    assert error.startswith(url.split("://", 1)[0]), error
    whole = copy_of(built_db, tmp_path, request)
    rewrite(built_db, whole, "--apply", "--backup", str(tmp_path / "whole.jsonl"), "--xcom-uuid=str")
    assert _normalized(dump(url), built_db) != _normalized(dump(whole), built_db)
    code, report, err = rewrite(built_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert _normalized(dump(url), built_db) == _normalized(dump(whole), built_db)
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url)
    assert p.returncode == 0, p.stderr + p.stdout
    assert dump(url) == original


def _beside_a_component(db: BuiltDatabase, url: str, backup: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_python(), str(Path(__file__).parent / "rewrite_beside_a_component.py"), url, db.keys,
                           str(backup), *args], env=_clean_env(), capture_output=True, text=True, timeout=600)


def _names_a_cleared_row(line: str, out: dict) -> bool:
    # by dag, task, run and map index: the fixture's mangled ids are repaired by the rewrite
    return any(all(str(v) in line for v in row.values()) for row in out["cleared_rows"])


def _normalized(lines: list[str], db: BuiltDatabase) -> list[str]:
    """Fernet tokens differ on every encryption (IV, timestamp): compare trigger rows by plaintext."""
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet

    fernet = MultiFernet([Fernet(k.encode()) for k in db.keys.split(",")])

    def clear(part: str) -> str:
        try:
            return "decrypted:" + fernet.decrypt(part.encode()).decode()
        except InvalidToken:  # the fixture's foreign-key and broken tokens stay as they are
            return part

    # SQLite's dump quotes them ('gAAAA...'), pg_dump's COPY lines separate them by tabs.
    return sorted(re.sub(r"gAAAA[A-Za-z0-9_=-]+", lambda m: clear(m.group(0)), line) for line in lines)


FORGED = [
    {"column": "task_instance.next_kwargs", "table": "ab_user", "key": {"id": 1}, "before": {"password": "x"}},
    {"column": "task_instance.next_kwargs", "table": "task_instance", "key": {"id": "x"}, "before": {"state": "success"}},
    {"column": "connection.password", "table": "connection", "key": {"id": 1}, "before": {"password": "x"}},
    {"column": "trigger.kwargs", "table": "trigger", "key": {"classpath": "x"}, "before": {"kwargs": "{}"}},
    # names rewrite writes, but no fingerprint of what it wrote: would overwrite the row whatever it holds now
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 101}, "before": {"kwargs": "{}"}},
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 101}, "before": {"kwargs": "{}"},
     "after": {"kwargs": None, "dag_hash": None}},
    # values of types no database column of these holds: a driver error half-way through the restore
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": [1]}, "before": {"kwargs": "{}"}},
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 10**30}, "before": {"kwargs": "{}"}},
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 101}, "before": {"kwargs": {"a": [1]}}},
    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 101}, "before": {"kwargs": "{}"},
     "after": {"kwargs": {"x": 1}}},
]


def test_restore_writes_only_what_rewrite_writes_and_checks_the_whole_file_first(sqlite_db, tmp_path, request):
    """A backup file is input: a forged line must not become a write to another table or column."""
    url = copy_of(sqlite_db, tmp_path, request)
    backup = tmp_path / "b.jsonl"
    code, report, err = rewrite(sqlite_db, url, "--apply", "--backup", str(backup), "--xcom-uuid=str")
    assert code == 1 and report["applied"], err
    lines = backup.read_text().splitlines()
    rewritten = dump(url)
    for forged in FORGED:
        backup.write_text("\n".join([*lines, json.dumps({"after": {}, **forged})]) + "\n")
        p = run_cli("restore", str(backup), "--sql-alchemy-conn", url)
        assert p.returncode == 2 and f"line {len(lines) + 1} is not a row rewrite writes" in p.stderr, (forged, p.stderr)
        assert dump(url) == rewritten, forged


@pytest.mark.postgres
def test_when_the_run_and_the_batch_in_flight_both_fail_each_gets_its_line(tmp_path, caplog):
    """The run stops (here a plain error in the calling thread) while the batch in flight fails in
    the commit thread too: the run's error is what is raised, and the thread's is logged, one line,
    no value of the batch in it."""
    import dataclasses

    import sqlalchemy as sa

    from airflow_serde_compat.rewrite.backup import BackupFile
    from airflow_serde_compat.rewrite.database import ColumnResult, _Batches
    from airflow_serde_compat.scan.columns import COLUMNS

    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    column = dataclasses.replace(next(c for c in COLUMNS if c.name == "task_instance.next_kwargs"),
                                 table="no_such_table_for_this_test")
    engine = sa.create_engine(url)
    backup = BackupFile(str(tmp_path / "b.jsonl"), url, "postgresql")
    value = '{"__var": {"planted": "%s"}, "__type": "dict"}' % SECRET
    changes = [({"id": "a"}, {"id": "a"}, {"next_kwargs": "{}"}, {"next_kwargs": value}, {})]
    try:
        with pytest.raises(RuntimeError, match="the run's own error"), _Batches(
                engine, column, backup, ColumnResult(column), {}) as batches:
            batches.write(changes, ["{}"])
            raise RuntimeError("the run's own error")
    finally:
        backup.close()
        engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_serde_compat"]
    assert len(lines) == 1 and "failed too" in lines[0] and "no_such_table_for_this_test" in lines[0], lines
    assert "\n" not in lines[0] and SECRET not in caplog.text


@pytest.mark.postgres
def test_the_progress_bar_on_a_terminal_runs_no_thread_and_rewrite_with_it_writes_the_same(
        postgres_db, tmp_path, request):
    """On a terminal, rewrite draws its progress bar; no thread draws it (the conversion child is
    forked while the bar is up, and a thread caught writing to stderr would leave the child a held
    lock). With the bar, rewrite writes what it writes without one."""
    import pty
    import threading

    from airflow_serde_compat.cli import _RichProgress

    before = threading.active_count()
    bar = _RichProgress()
    bar.start("task_instance.next_kwargs", 10)
    bar.advance(3)
    assert threading.active_count() == before
    bar.close()

    urls = [copy_of(postgres_db, tmp_path, request) for _ in range(2)]
    for url in urls:
        _with_more_task_instances(postgres_db, url)
    args = ["--apply", "--xcom-uuid=str", "--output", "json"]
    master, slave = pty.openpty()
    drawn = bytearray()
    reader = threading.Thread(target=lambda: _drain(master, drawn))
    reader.start()
    try:
        p = subprocess.run(
            [_python(), "-m", "airflow_serde_compat", "rewrite", *args, "--backup", str(tmp_path / "bar.jsonl"),
             "--sql-alchemy-conn", urls[0], f"--fernet-key={postgres_db.keys}"],
            env=_clean_env(), stdout=subprocess.PIPE, stderr=slave, text=True, timeout=600)
    finally:
        os.close(slave)
        reader.join(30)
        os.close(master)
    assert p.returncode in (0, 1), (p.stdout[-2000:], bytes(drawn[-3000:]))
    assert b"task_instance.next_kwargs" in drawn, bytes(drawn[-3000:])  # the bar was drawn
    code, report, _ = rewrite(postgres_db, urls[1], *args, "--backup", str(tmp_path / "plain.jsonl"))
    assert (p.returncode, _without_timings(json.loads(p.stdout))) == (code, _without_timings(report))
    assert _normalized(dump(urls[0]), postgres_db) == _normalized(dump(urls[1]), postgres_db)


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            return
        if not chunk:
            return
        into += chunk


def _without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("database", "backup")}
