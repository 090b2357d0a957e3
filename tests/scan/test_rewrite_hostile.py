"""``rewrite`` on hostile 3.2-format rows (real downgraded SQLite database, see conftest).

Each row is outside data: what the rewrite writes must neither change the value the bridge
reads nor give an unpatched Airflow 3.1.8 (the bridge removed) something it would act on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from conftest import run_cli
from dbrows import RawJSON, connect, insert
from test_rewrite import copy_of, rewrite

pytestmark = pytest.mark.airflow

TUPLE1 = {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1]}


def _gadget(flag: str) -> dict:
    # A user dict as 3.2 stores it (bare); the extra keys keep the bridge from taking it for an
    # envelope. 3.1's BaseSerialization.deserialize reads only __type and __var.
    return {"__type": "base_trigger", "x": 1,
            "__var": ["os.system", {"__type": "dict", "z": 1, "__var": {"command": f"touch {flag}"}}]}


NATIVE_TRIGGER = r"""
import os, sys, sqlite3
os.environ["AIRFLOW__CORE__FERNET_KEY"] = sys.argv[2]
from airflow.models.trigger import Trigger
from airflow.serialization.serialized_objects import smart_decode_trigger_kwargs
stored = sqlite3.connect(sys.argv[1]).execute("SELECT kwargs FROM trigger WHERE id = 901").fetchone()[0]
kwargs = Trigger._decrypt_kwargs(stored)
try:  # what 3.1.8's TriggerRunner.create_triggers does with each kwarg next
    {k: smart_decode_trigger_kwargs(v) for k, v in kwargs.items()}
except Exception:
    pass
"""


def test_trigger_kwargs_the_31_trigger_runner_would_decode_twice_are_left(sqlite_db, tmp_path, request):
    """3.1.8's trigger runner decodes every top-level kwarg that is a dict with ``__type`` once more
    (smart_decode_trigger_kwargs). The bridge guards that second decode; once the rows are rewritten
    the bridge is removed, so a 3.2 row whose data holds such a dict must not be rewritten."""
    url = copy_of(sqlite_db, tmp_path, request)
    flag = tmp_path / "called"
    conn = connect(url)
    with conn.begin():
        insert(conn, "trigger", id=901, classpath="airflow.triggers.temporal.DateTimeTrigger",
               kwargs=json.dumps({"n": TUPLE1, "k": _gadget(str(flag))}), created_date=dt.datetime(2026, 1, 1))
    conn.close()
    code, report, err = rewrite(sqlite_db, url, "--apply", "--backup", str(tmp_path / "b.jsonl"), "--only", "trigger.kwargs")
    col = next(c for c in report["columns"] if c["column"] == "trigger.kwargs")
    assert {"id": 901, "classpath": "airflow.triggers.temporal.DateTimeTrigger"} in [r["row"] for r in col["left_rows"]], col
    assert "touch" not in json.dumps(report)
    # and whatever is in the row now, the unpatched 3.1.8 trigger runner does not run it
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    subprocess.run([sys.executable, "-c", NATIVE_TRIGGER, url.removeprefix("sqlite:///"), sqlite_db.keys],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert not flag.exists(), "the rewritten row ran os.system in an unpatched 3.1.8 triggerer"


def test_integers_beyond_64_bits_are_rewritten_exactly_not_as_floats(sqlite_db, tmp_path, request):
    """orjson (the scan's fast parser) reads an integer beyond 64 bits as a float; Airflow reads it
    with json.loads, exactly. The rewrite must write the integer the bridge reads, not 1e+30."""
    import sqlite3
    import uuid

    url = copy_of(sqlite_db, tmp_path, request)
    big = 2**64 + 1
    text = json.dumps({"t": TUPLE1, "id": big, "ids": [-(2**70)]})
    conn = connect(url)
    with conn.begin():
        insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="hostile", task_id="bigint", run_id="r1",
               map_index=-1, next_kwargs=RawJSON(text))
        insert(conn, "trigger", id=903, classpath="airflow.triggers.temporal.DateTimeTrigger", kwargs=text,
               created_date=dt.datetime(2026, 1, 1))
    conn.close()
    code, report, err = rewrite(sqlite_db, url, "--apply", "--backup", str(tmp_path / "b.jsonl"),
                                "--only", "task_instance.next_kwargs", "--only", "trigger.kwargs")
    assert report["applied"], err
    from cryptography.fernet import Fernet, MultiFernet

    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        ti = json.loads(db.execute("SELECT next_kwargs FROM task_instance WHERE task_id = 'bigint'").fetchone()[0])
        stored = db.execute("SELECT kwargs FROM trigger WHERE id = 903").fetchone()[0]
    finally:
        db.close()
    fernet = MultiFernet([Fernet(k.encode()) for k in sqlite_db.keys.split(",")])
    trig = json.loads(fernet.decrypt(stored.encode()))
    for new in (ti, trig):
        assert new["__type"] == "dict", new  # rewritten
        assert new["__var"]["id"] == big and type(new["__var"]["id"]) is int, new
        assert new["__var"]["ids"] == [-(2**70)], new


@pytest.mark.postgres
def test_restore_puts_back_a_jsonb_row_whose_float_postgresql_respells(postgres_db, tmp_path, request):
    """Python writes the float 12345678901234568.0 as 1.2345678901234568e+16; a JSONB column hands
    it back as 12345678901234568. restore must still see the row it rewrote, not "changed since"."""
    import uuid

    from test_rewrite import dump

    url = copy_of(postgres_db, tmp_path, request)
    conn = connect(url)
    with conn.begin():
        insert(conn, "task_instance", id=str(uuid.uuid4()), dag_id="hostile", task_id="float", run_id="r1",
               map_index=-1, next_kwargs=RawJSON('{"t": %s, "x": 12345678901234567.5, "y": 1e-7}' % json.dumps(TUPLE1)))
    conn.close()
    original = dump(url)
    backup = tmp_path / "b.jsonl"
    code, report, err = rewrite(postgres_db, url, "--apply", "--backup", str(backup), "--only", "task_instance.next_kwargs")
    ti = next(c for c in report["columns"] if c["column"] == "task_instance.next_kwargs")
    assert "float" in [r["task_id"] for r in ti["rewritten_rows"]], ti
    p = run_cli("restore", str(backup), "--sql-alchemy-conn", url, "--output", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert dump(url) == original


def test_trigger_kwargs_stored_as_bytes_are_left_not_rewritten_with_replacement_characters(sqlite_db, tmp_path, request):
    """SQLite lets trigger.kwargs (Text) hold a BLOB. Airflow 3.1 cannot read one, with the bridge or
    without; the scan decodes it with errors="replace" to classify it, and the rewrite stored that
    text: a byte that is not UTF-8 became U+FFFD. Leave such rows as they are."""
    import sqlite3

    url = copy_of(sqlite_db, tmp_path, request)
    stored = b'{"t": ' + json.dumps(TUPLE1).encode() + b', "name": "caf\xe9"}'
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        db.execute("INSERT INTO trigger (id, classpath, kwargs, created_date) VALUES (950, 'x.Y', ?, '2026-01-01 00:00:00')",
                   (stored,))
        db.commit()
    finally:
        db.close()
    code, report, err = rewrite(sqlite_db, url, "--apply", "--backup", str(tmp_path / "b.jsonl"), "--only", "trigger.kwargs")
    col = next(c for c in report["columns"] if c["column"] == "trigger.kwargs")
    assert 950 in [r["row"]["id"] for r in col["left_rows"]], col
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        assert db.execute("SELECT kwargs FROM trigger WHERE id = 950").fetchone()[0] == stored
    finally:
        db.close()
