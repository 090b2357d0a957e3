"""``scan`` on hostile or unexpected databases: one bad row is one row, unknown schemas are errors."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import BuiltDatabase, run_cli

pytestmark = pytest.mark.airflow


def _copy(db: BuiltDatabase, tmp_path: Path) -> Path:
    src = Path(db.url.removeprefix("sqlite:///"))
    dst = tmp_path / "copy.db"
    shutil.copy(src, dst)
    return dst


def _scan(url: str, db: BuiltDatabase, *extra: str):
    return run_cli("scan", "--sql-alchemy-conn", url, f"--fernet-key={db.keys}", "--output", "json", *extra)


def test_a_row_nested_deeper_than_the_json_reader_is_one_undecodable_row(sqlite_db, tmp_path):
    path = _copy(sqlite_db, tmp_path)
    before = json.loads(_scan(f"sqlite:///{path}", sqlite_db).stdout)
    con = sqlite3.connect(path)
    deep = '{"k":' * 100_000 + "1" + "}" * 100_000
    con.execute("UPDATE task_instance SET next_kwargs = ? WHERE rowid = (SELECT min(rowid) FROM task_instance "
                "WHERE next_kwargs IS NULL OR next_kwargs = 'null')", (deep,))
    con.commit()
    con.close()
    p = _scan(f"sqlite:///{path}", sqlite_db, "--verify")
    assert p.returncode == 1, p.stderr
    after = {s["source"]: s for s in json.loads(p.stdout)["sources"]}["task_instance.next_kwargs"]
    was = {s["source"]: s for s in before["sources"]}["task_instance.next_kwargs"]
    assert after["rows"] == was["rows"]
    assert after["undecodable"] == was["undecodable"] + 1
    assert after["null"] == was["null"] - 1
    assert "nested deeper than Airflow's JSON readers follow" in after["reasons"]


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("UPDATE alembic_version SET version_num = 'abcdef123456'", "'abcdef123456', which is no migration of Airflow"),
        ("DELETE FROM alembic_version", "has no alembic_version row"),
        ("UPDATE alembic_version SET version_num = 'x'' OR 1=1; <script>'", "'<not a revision>'"),
    ],
    ids=["unknown", "missing", "hostile"],
)
def test_an_unknown_or_missing_schema_revision_is_an_error_not_a_clean_bill(sqlite_db, tmp_path, sql, words):
    path = _copy(sqlite_db, tmp_path)
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()
    p = run_cli("scan", "--sql-alchemy-conn", f"sqlite:///{path}", f"--fernet-key={sqlite_db.keys}")
    assert p.returncode == 2, p.stdout + p.stderr
    assert words in p.stderr


def test_a_schema_newer_than_the_installed_airflow_is_warned_about(sqlite_db):
    # The preflight DB (3.2 schema, before the downgrade), read with 3.1.8 installed.
    code, report = (lambda p: (p.returncode, json.loads(p.stdout)))(_scan(sqlite_db.pre_url, sqlite_db))
    assert code == 1
    assert len(report["warnings"]) == 1
    assert "newer than the installed apache-airflow-core 3.1." in report["warnings"][0]
    assert "airflow db downgrade -n 3.1." in report["warnings"][0]
    text = run_cli("scan", "--sql-alchemy-conn", sqlite_db.pre_url, f"--fernet-key={sqlite_db.keys}").stdout
    assert "warning: the database schema" in text


def test_read_only_sqlite_uris_are_accepted(sqlite_db, tmp_path):
    path = _copy(sqlite_db, tmp_path)
    plain = json.loads(_scan(f"sqlite:///{path}", sqlite_db).stdout)
    p = _scan(f"sqlite:///file:{path}?immutable=1&uri=true", sqlite_db)
    assert p.returncode == 1, p.stderr
    def counts(report):  # the age fields move with the clock
        return [{k: v for k, v in s.items() if not k.startswith("oldest")} for s in report["sources"]]

    assert counts(json.loads(p.stdout)) == counts(plain)
    missing = _scan(f"sqlite:///file:{tmp_path / 'nope.db'}?mode=ro&uri=true", sqlite_db)
    assert missing.returncode == 2 and "no SQLite database file" in missing.stderr


def test_verify_reports_carry_no_decrypted_values(sqlite_db, tmp_path):
    # A zone name taken from the row: 3.1's tz lookup quotes it in its exception message.
    secret = "Secret/s3cr3t-zone-value"
    path = _copy(sqlite_db, tmp_path)
    con = sqlite3.connect(path)
    row = {"when": {"__classname__": "pendulum.tz.timezone.Timezone", "__version__": 1, "__data__": secret}}
    con.execute("UPDATE task_instance SET next_kwargs = ? WHERE rowid = (SELECT min(rowid) FROM task_instance "
                "WHERE next_kwargs IS NULL OR next_kwargs = 'null')", (json.dumps(row),))
    con.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('x.Y', ?, '2026-01-01')",
                (json.dumps(row),))
    con.commit()
    con.close()
    for output in ("json", "table"):
        p = run_cli("scan", "--sql-alchemy-conn", f"sqlite:///{path}", f"--fernet-key={sqlite_db.keys}",
                    "--verify", "--output", output)
        assert p.returncode == 1, p.stderr
        assert "s3cr3t" not in p.stdout + p.stderr
        assert "_NeedsPath" not in p.stdout
    report = json.loads(p.stdout if output == "json" else _scan(f"sqlite:///{path}", sqlite_db, "--verify").stdout)
    failed = [r for s in report["sources"] for r in s.get("verify", {}).get("failed_rows", [])]
    assert any("Airflow 3.1 could not build the translated value" in r["reason"] for r in failed), failed


def test_a_number_stored_in_a_sqlite_json_column_is_read_as_its_json(sqlite_db, tmp_path):
    # SQLite gives a JSON column numeric affinity: the XCom value '12345' (what 3.1.8 stores for
    # `return 12345`) comes back from the driver as the int 12345, and a REAL as a float.
    path = _copy(sqlite_db, tmp_path)
    before = json.loads(_scan(f"sqlite:///{path}", sqlite_db).stdout)
    con = sqlite3.connect(path)
    legacy = "SELECT rowid FROM xcom WHERE CAST(value AS TEXT) NOT LIKE '%uuid.UUID%' ORDER BY rowid LIMIT 2"
    first, second = (r[0] for r in con.execute(legacy).fetchall())
    con.execute("UPDATE xcom SET value = '12345' WHERE rowid = ?", (first,))
    con.execute("UPDATE xcom SET value = '1.5' WHERE rowid = ?", (second,))
    con.commit()
    assert [t for (t,) in con.execute("SELECT typeof(value) FROM xcom WHERE rowid IN (?, ?) ORDER BY rowid",
                                     (first, second))] == ["integer", "real"]
    con.close()
    p = _scan(f"sqlite:///{path}", sqlite_db)
    assert p.returncode == before["exit_code"], p.stderr
    after = {s["source"]: s for s in json.loads(p.stdout)["sources"]}["xcom.value"]
    was = {s["source"]: s for s in before["sources"]}["xcom.value"]
    assert {k: after[k] for k in ("rows", "legacy", "serde", "undecodable")} == {
        k: was[k] for k in ("rows", "legacy", "serde", "undecodable")}
