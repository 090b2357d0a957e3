"""Task-instance ids mangled by Airflow's own downgrade on MariaDB, repaired (rewrite.task_instance_ids).

The database is made by real software end to end: Airflow 3.2.1 with SQLAlchemy 2.1 (venv 321m) runs
``airflow db migrate`` on the local MariaDB (its ``sa.Uuid()`` columns become native ``UUID``),
write_ti_ids.py fills every id column with Airflow's uuid7 ids, and ``airflow db downgrade -n 3.1.8``
mangles them. Each test works on its own copy (mysqldump).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass

import pytest
from conftest import HERE, _airflow_env, _run, venv_python

from airflow_serde_compat.rewrite import task_instance_ids as ids

pytestmark = [pytest.mark.airflow, pytest.mark.mysql]

HOST = ["-h", "127.0.0.1", "-P", "3306", "-u", "root"]


def _mysql(sql: str, db: str | None = None) -> str:
    p = subprocess.run(["mysql", *HOST, "-N", "-B", *([db] if db else []), "-e", sql], capture_output=True, text=True,
                       timeout=120)
    if p.returncode:
        raise AssertionError(f"mysql: {sql[:200]}: {p.stderr}")
    return p.stdout


def _url(name: str) -> str:
    return f"mysql+pymysql://root@127.0.0.1:3306/{name}"


def _create(name: str) -> None:
    _mysql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")


def _dump(name: str) -> bytes:
    return subprocess.run(["mysqldump", *HOST, "--skip-dump-date", name], check=True, capture_output=True,
                          timeout=300).stdout


@dataclass
class Mangled:
    name: str
    written: dict[str, list[str]]  # "table.column" -> the ids 3.2.1 wrote (dashed text)


@pytest.fixture(scope="module")
def downgraded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    name = f"serde_compat_scan_{os.getpid()}_ids"
    _create(name)
    try:
        py = venv_python("321m")
        env = _airflow_env(_url(name), tmp_path_factory.mktemp("ids_home"))
        _run([py, "-m", "airflow", "db", "migrate"], env)
        coltype = _mysql("SELECT column_type FROM information_schema.columns WHERE table_schema = DATABASE() "
                         "AND table_name = 'task_instance' AND column_name = 'id'", name).strip()
        assert coltype == "uuid", f"3.2.1 + SQLAlchemy 2.1 made task_instance.id {coltype!r}, not MariaDB's UUID"
        written = json.loads(_run([py, str(HERE / "write_ti_ids.py"), _url(name)], env).strip().splitlines()[-1])
        _run([py, "-m", "airflow", "db", "downgrade", "-n", "3.1.8", "-y"], env)
        yield Mangled(name, written)
    finally:
        _mysql(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def db(downgraded: Mangled, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    name = f"{downgraded.name}_{uuid.uuid4().hex[:8]}"
    _create(name)
    request.addfinalizer(lambda: _mysql(f"DROP DATABASE IF EXISTS `{name}`"))
    subprocess.run(["mysql", *HOST, name], input=_dump(downgraded.name), check=True, timeout=300)
    engine = sa.create_engine(_url(name), poolclass=sa.pool.NullPool)
    request.addfinalizer(engine.dispose)
    return name, engine


def _values(engine, table: str, column: str) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return sorted(conn.exec_driver_sql(f"SELECT {column} FROM {table}").scalars())


def test_the_downgrade_mangled_every_id_the_3_2_writer_wrote(downgraded: Mangled, db) -> None:  # type: ignore[no-untyped-def]
    _, engine = db
    for table, column in ids.ID_COLUMNS:
        if table == "hitl_detail_history":  # a 3.2 table: the downgrade drops it
            continue
        expected = sorted(ids.mangle(v) for v in downgraded.written[f"{table}.{column}"])
        assert _values(engine, table, column) == expected, (table, column)
        assert all(ids.is_mangled(v) for v in expected)
    with engine.connect() as conn:
        changes = ids.find_mangled(conn)
    got = {(c.table, c.column, c.old, c.new) for c in changes}
    want = {(t, c, ids.mangle(v), ids.repaired(ids.mangle(v)))
            for t, c in ids.ID_COLUMNS if t != "hitl_detail_history" for v in downgraded.written[f"{t}.{c}"]}
    assert got == want and len(changes) == len(want)  # one change per distinct value and column


def test_apply_repairs_every_column_consistently_and_restores_foreign_key_checks(downgraded: Mangled, db) -> None:  # type: ignore[no-untyped-def]
    name, engine = db
    joins = {
        "task_instance_note": "SELECT COUNT(*) FROM task_instance_note n JOIN task_instance t ON t.id = n.ti_id",
        "task_reschedule": "SELECT COUNT(*) FROM task_reschedule r JOIN task_instance t ON t.id = r.ti_id",
        "hitl_detail": "SELECT COUNT(*) FROM hitl_detail h JOIN task_instance t ON t.id = h.ti_id",
    }
    with engine.connect() as conn:
        before = {k: conn.exec_driver_sql(q).scalar() for k, q in joins.items()}
    assert before == {"task_instance_note": 1, "task_reschedule": 2, "hitl_detail": 1}
    with engine.begin() as conn:
        changes = ids.find_mangled(conn)
        # task_reschedule_ti_fkey does not cascade (3.1.8's schema): the repair must switch the checks off
        assert ids.apply(conn, changes) == 11
        assert conn.exec_driver_sql("SELECT @@SESSION.foreign_key_checks").scalar() == 1
    with engine.connect() as conn:
        assert ids.find_mangled(conn) == []
        after = {k: conn.exec_driver_sql(q).scalar() for k, q in joins.items()}
    assert after == before
    for table, column in ids.ID_COLUMNS[:5]:
        values = _values(engine, table, column)
        assert values == sorted(ids.repaired(ids.mangle(v)) for v in downgraded.written[f"{table}.{column}"])
        for v in values:
            u = uuid.UUID(v)
            assert str(u) == v and u.version == 7
    # the surviving digits are the 3.2 writer's own
    for v, orig in zip(_values(engine, "task_instance", "id"), sorted(downgraded.written["task_instance.id"])):
        assert v[:32] == orig[:32]
    # 3.1.8's own ORM reads the repaired ids and their relations
    from sqlalchemy.orm import Session

    from airflow.models.taskinstance import TaskInstance

    with Session(engine) as session:
        tis = {ti.task_id: ti for ti in session.query(TaskInstance).filter_by(dag_id="ids")}
        assert tis["noted"].task_instance_note.content == "a note"
        assert all(uuid.UUID(ti.id) for ti in tis.values())


def test_apply_in_a_rolled_back_transaction_changes_nothing(db) -> None:  # type: ignore[no-untyped-def]
    name, engine = db
    dump = _dump(name)
    with engine.connect() as conn:
        changes = ids.find_mangled(conn)
        conn.rollback()
        with conn.begin() as tx:
            ids.apply(conn, changes)
            tx.rollback()
        assert conn.exec_driver_sql("SELECT @@SESSION.foreign_key_checks").scalar() == 1
    assert _dump(name) == dump


def test_a_repaired_id_already_in_use_is_a_collision_and_nothing_changes(db) -> None:  # type: ignore[no-untyped-def]
    name, engine = db
    with engine.connect() as conn:
        victim = next(c for c in ids.find_mangled(conn) if c.table == "task_instance")
    # a task instance that already holds the id the repair would pick (3.1.8 dashed text)
    _mysql("SET foreign_key_checks = 0; INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, pool, "
           f"pool_slots, try_number, span_status) VALUES ('{victim.new}', 'other', 'ids', 'r1', 7, 'default_pool', 1, "
           "0, 'not_started')", name)
    dump = _dump(name)
    with engine.connect() as conn, pytest.raises(ids.IdCollision) as err:
        ids.find_mangled(conn)
    assert victim.new in str(err.value) and "task_instance.id" in str(err.value)
    with engine.begin() as conn, pytest.raises(ids.IdCollision):
        ids.apply(conn, [victim])
    assert _dump(name) == dump


def test_no_mangled_ids_nothing_to_do(db) -> None:  # type: ignore[no-untyped-def]
    _, engine = db
    with engine.begin() as conn:
        ids.apply(conn, ids.find_mangled(conn))
    with engine.begin() as conn:
        assert ids.find_mangled(conn) == []
        assert ids.apply(conn, []) == 0


def test_the_cli_repairs_the_ids_with_a_backup_and_restore_gives_back_the_dump(downgraded: Mangled, db, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`rewrite --only task_instance.id`: the dry run names every mangled id, --apply repairs them (backup
    first), `restore` puts the mangled originals back byte for byte (mysqldump)."""
    from conftest import run_cli

    name, engine = db
    url = _url(name)
    before = _dump(name)
    p = run_cli("rewrite", "--only", "task_instance.id", "--sql-alchemy-conn", url, "--fernet-key=", "--output", "json")
    assert p.returncode == 1, p.stderr
    listed = json.loads(p.stdout)["columns"][0]
    assert listed["column"] == "task_instance.id" and listed["would_rewrite"] > 0, listed
    assert all(ids.is_mangled(r["id"]) and not ids.is_mangled(r["repaired"]) for r in listed["would_rewrite_rows"])
    assert _dump(name) == before
    backup = tmp_path / "ids.jsonl"
    p = run_cli("rewrite", "--apply", "--only", "task_instance.id", "--backup", str(backup), "--sql-alchemy-conn", url,
                "--fernet-key=", "--output", "json")
    assert p.returncode == 0, p.stderr
    with engine.connect() as conn:
        assert ids.find_mangled(conn) == []
    assert len(backup.read_text().splitlines()) == 1 + listed["would_rewrite"]
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url, "--output", "json")
    assert p.returncode == 0, p.stderr + p.stdout
    assert _dump(name) == before
