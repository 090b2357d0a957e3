"""Mangled task-instance ids: the shape comes from migration f8c9d7e6b5a4's own downgrade SQL.

The real Airflow 3.2.1 migration file (venv 321) runs with a recording stand-in for alembic's ``op``;
the UPDATE it issues on SQLite is executed by sqlite3 on dashed ids (what MariaDB's native UUID
column turns into on ``ALTER ... VARCHAR(36)``), and its MySQL branch is checked to use the same
offsets. Nothing here is a hand-typed mangled id.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_serde_compat.rewrite import task_instance_ids as ids

REPO = Path(__file__).resolve().parents[2]


def _migration_path() -> Path:
    out = subprocess.run(["bash", str(REPO / "tools/venvs.sh"), "321"], check=True, stdout=subprocess.PIPE,
                         text=True, timeout=1800).stdout.split()
    found = sorted(Path(out[-1]).glob("lib/python3*/site-packages/airflow/migrations/versions/*_fix_uuid_column_types.py"))
    assert found, f"no fix_uuid_column_types migration in {out[-1]}"
    return found[0]


class _Recorder:
    """alembic's ``op`` for a downgrade() run: records the SQL it executes, ignores the DDL."""

    def __init__(self, dialect: str):
        self.sql: list[str] = []
        rec = self

        class _Conn:
            class dialect:  # noqa: N801
                name = dialect

            def execute(self, clause):
                rec.sql.append(str(clause))

        self._conn = _Conn()

    def get_bind(self):
        return self._conn

    @contextlib.contextmanager
    def batch_alter_table(self, *a, **k):
        class _Batch:
            def __getattr__(self, name):
                return lambda *a, **k: None

        yield _Batch()


def downgrade_sql(dialect: str) -> dict[tuple[str, str], str]:
    spec = importlib.util.spec_from_file_location("f8c9d7e6b5a4", _migration_path())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.revision == "f8c9d7e6b5a4"
    rec = _Recorder(dialect)
    mod.op = rec
    mod.downgrade()
    out = {}
    for sql in rec.sql:
        m = re.match(r"UPDATE (\w+) SET (\w+) = ", sql)
        assert m, sql
        out[(m.group(1), m.group(2))] = sql
    return out


@pytest.fixture(scope="module")
def sqlite_sql() -> dict[tuple[str, str], str]:
    return downgrade_sql("sqlite")


def mangled_by_migration(sql: dict[tuple[str, str], str], table: str, column: str, values: list[str]) -> list[str]:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE {table} (n INTEGER PRIMARY KEY, {column} VARCHAR(36))")
    db.executemany(f"INSERT INTO {table} (n, {column}) VALUES (?, ?)", list(enumerate(values)))
    db.execute(sql[(table, column)])
    return [r[0] for r in db.execute(f"SELECT {column} FROM {table} ORDER BY n")]


def test_the_migration_rewrites_exactly_the_six_columns(sqlite_sql):
    assert set(sqlite_sql) == set(ids.ID_COLUMNS)
    mysql = downgrade_sql("mysql")
    assert set(mysql) == set(ids.ID_COLUMNS)
    # same offsets in both branches: SUBSTR(c, 1, 8) ... SUBSTR(c, 21, 12)
    for key in ids.ID_COLUMNS:
        offsets = re.findall(r"SUBSTR\(\w+, (\d+), (\d+)\)", mysql[key])
        assert offsets == re.findall(r"SUBSTR\(\w+, (\d+), (\d+)\)", sqlite_sql[key])
        assert offsets == [("1", "8"), ("9", "4"), ("13", "4"), ("17", "4"), ("21", "12")]


def test_a_32_hex_id_comes_back_right_a_dashed_one_mangled(sqlite_sql):
    u = uuid.UUID("01a212a6-1da1-7d78-b881-d0818e21c0de")
    right, wrong = mangled_by_migration(sqlite_sql, "task_instance", "id", [u.hex, str(u)])
    assert right == str(u)  # what the migration is written for (CHAR(32) on SQLAlchemy 2.0)
    assert wrong == "01a212a6--1da-1-7d-78-b-881-d0818e21"  # the id seen on MariaDB: 3.1.8's scheduler exits
    assert ids.is_mangled(wrong) and not ids.is_mangled(right) and not ids.is_mangled(u.hex)
    assert ids.mangle(str(u)) == wrong


@given(st.lists(st.uuids(), min_size=1, max_size=20, unique=True))
def test_every_mangled_id_is_recognized_and_repaired_to_a_valid_uuid(sqlite_sql, uuids):
    dashed = [str(u) for u in uuids]
    for table, column in ids.ID_COLUMNS:
        out = mangled_by_migration(sqlite_sql, table, column, dashed)
        assert out == [ids.mangle(d) for d in dashed]
        for original, m in zip(uuids, out):
            assert ids.is_mangled(m)
            new = ids.repaired(m)
            assert str(uuid.UUID(new)) == new  # valid, canonical (3.1.8's own text form)
            assert new.replace("-", "")[:28] == original.hex[:28]  # the surviving digits, in place
            assert ids.repaired(m) == new


def test_repair_is_deterministic_and_keeps_uuid7_fields(sqlite_sql):
    import uuid6  # Airflow's own uuid7 (a dependency of 3.1.8)

    originals = [uuid6.uuid7() for _ in range(200)]
    mangled = mangled_by_migration(sqlite_sql, "task_reschedule", "ti_id", [str(u) for u in originals])
    news = [ids.repaired(m) for m in mangled]
    assert len(set(news)) == len(news)
    for u, new in zip(originals, news):
        n = uuid.UUID(new)
        assert (n.version, n.variant) == (7, uuid.RFC_4122)
        assert n.int >> 80 == u.int >> 80  # the 48-bit millisecond timestamp
    again = mangled_by_migration(sqlite_sql, "hitl_detail_history", "ti_history_id", [str(u) for u in originals])
    assert [ids.repaired(m) for m in again] == news  # same input, same output, whatever the column


@pytest.mark.parametrize("value", [
    None, 1, b"01a212a6--1da-1-7d-78-b-881-d0818e21", "", "01a212a6-1da1-7d78-b881-d0818e21c0de",
    "01a212a61da17d78b881d0818e21c0de", "01A212A6--1DA-1-7D-78-B-881-D0818E21",
    "01a212a6--1da-1-7d-78-b-881-d0818e2", "01a212a6--1da-1-7d-78-b-881-d0818e21x", " 01a212a6--1da-1-7d-78-b-881-d0818e21",
    "01a212a6--1da-1-7d-78-b-881-d0818e2g", "01a212a6--1da-1-7d-78-b-881-d0818e21\n",
])
def test_anything_else_is_not_mangled(value):
    assert not ids.is_mangled(value)
    if isinstance(value, str):
        with pytest.raises(ValueError):
            ids.repaired(value)


def test_valid_ids_are_never_taken_for_mangled():
    for _ in range(1000):
        u = uuid.uuid4()
        assert not ids.is_mangled(str(u)) and not ids.is_mangled(u.hex)
