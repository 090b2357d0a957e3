"""The rewrite backup file and the pure parts of the writers: no database, no Airflow."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from airflow_serde_compat.rewrite.backup import BackupError, BackupFile, Record, fingerprint, read_backup
from airflow_serde_compat.rewrite.writers import CannotRewrite, uuids_as_text

URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"


def record(n: int = 1) -> Record:
    return Record("trigger.kwargs", "trigger", {"id": n}, {"kwargs": "gAAAAB-token"}, {"kwargs": "ab" * 32})


def test_a_json_fingerprint_ignores_how_the_database_spells_the_json():
    written = json.dumps({"__var": {"b": 1, "a": [1.5, None]}, "__type": "dict"})
    # what PostgreSQL's JSONB hands back for the same value: its own key order and spacing
    jsonb = '{"__var": {"a": [1.5, null], "b": 1}, "__type": "dict"}'
    assert fingerprint(written, json_text=True) == fingerprint(jsonb, json_text=True)
    assert fingerprint(written, json_text=True) != fingerprint(written.replace("1.5", "2.5"), json_text=True)
    # text columns (Fernet tokens) and bytes are compared as they are
    assert fingerprint("abc", json_text=False) != fingerprint("abd", json_text=False)
    assert fingerprint(b"\x00\x01", json_text=False) == fingerprint(memoryview(b"\x00\x01"), json_text=False)
    assert fingerprint(None, json_text=True) is None


def test_the_backup_is_private_has_one_header_and_round_trips_bytes(tmp_path):
    path = tmp_path / "b.jsonl"
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(1))
    b.write(Record("serialized_dag.data", "serialized_dag", {"id": "x"}, {"data": None, "data_compressed": b"\x78\x9c"},
                   {"data": None, "data_compressed": "00"}))
    b.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # a rerun after a crash appends to the same file, under the same header
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(2))
    b.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["database"] == URL
    header, records = read_backup(str(path))
    got = list(records)
    assert [r.key for r in got] == [{"id": 1}, {"id": "x"}, {"id": 2}]
    assert got[1].before == {"data": None, "data_compressed": b"\x78\x9c"}


def test_a_backup_of_another_database_or_no_backup_at_all_is_refused(tmp_path):
    path = tmp_path / "b.jsonl"
    BackupFile(str(path), URL, "postgresql").close()
    with pytest.raises(BackupError, match="not of"):
        BackupFile(str(path), URL.replace("airflow", "other"), "postgresql")
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    with pytest.raises(BackupError, match="not an airflow-serde-compat backup"):
        BackupFile(str(other), URL, "postgresql")
    with pytest.raises(BackupError, match="not an airflow-serde-compat backup"):
        read_backup(str(other))
    assert other.read_text() == "my notes\n"


def test_a_torn_last_line_is_skipped_a_broken_middle_line_is_an_error(tmp_path):
    path = tmp_path / "b.jsonl"
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(1))
    b.close()
    with open(path, "a") as f:
        f.write('{"column": "trigger.kwargs", "tab')  # killed mid-write: its batch never committed
    assert [r.key for r in read_backup(str(path))[1]] == [{"id": 1}]
    with open(path, "a") as f:
        f.write('\n{"column": 1}\n')
    with pytest.raises(BackupError, match="line 3"):
        list(read_backup(str(path))[1])


def test_uuid_envelopes_become_their_text_anywhere_and_nothing_else_changes():
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    env = {"__classname__": "uuid.UUID", "__version__": 1, "__data__": str(u)}
    value = {"id": env, "ids": [env, {"n": 1, "deep": [env]}], "s": "uuid.UUID", "t": {"__classname__": "builtins.tuple",
                                                                                      "__version__": 1, "__data__": [1]}}
    out = uuids_as_text(value)
    assert out == {"id": str(u), "ids": [str(u), {"n": 1, "deep": [str(u)]}], "s": "uuid.UUID", "t": value["t"]}
    assert uuids_as_text({"__classname__": "uuid.UUID", "__version__": 0, "__data__": u.int}) == str(u)
    for bad in ("not-a-uuid", None, [1]):
        with pytest.raises(CannotRewrite, match="not a UUID"):
            uuids_as_text({"__classname__": "uuid.UUID", "__version__": 1, "__data__": bad})


def test_a_rerun_after_a_torn_last_line_leaves_a_file_restore_can_read(tmp_path):
    """kill -9 while a batch's lines are being written (Python flushes its buffer at 8 KiB, not at
    line ends) leaves a torn last line; that batch was never committed. The rerun appends to the
    same file: the torn fragment must not glue onto its first line, or restore refuses the file."""
    path = tmp_path / "b.jsonl"
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(1))
    b.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"column": "trigger.kwargs", "table": "trig')
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(2))
    b.close()
    _, records = read_backup(str(path))
    assert [r.key for r in records] == [{"id": 1}, {"id": 2}]


def test_an_existing_file_readable_by_others_is_made_private_before_a_row_is_written(tmp_path):
    """The backup holds 3.2.1's plaintext trigger kwargs: a file that existed (touched, or made by
    a tool with umask 022) must not stay world-readable."""
    path = tmp_path / "b.jsonl"
    path.touch()
    os.chmod(path, 0o644)
    b = BackupFile(str(path), URL, "postgresql")
    b.write(record(1))
    b.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_only_a_regular_file_is_a_backup(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(BackupError, match="not a regular file"):
        BackupFile(str(fifo), URL, "postgresql")


def test_a_second_rewrite_writing_to_the_same_backup_is_refused(tmp_path):
    """Two processes appending buffered lines to one file interleave them mid-line."""
    path = tmp_path / "b.jsonl"
    first = BackupFile(str(path), URL, "postgresql")
    try:
        with pytest.raises(BackupError, match="another rewrite"):
            BackupFile(str(path), URL, "postgresql")
    finally:
        first.close()
    BackupFile(str(path), URL, "postgresql").close()  # free again once the first one is done


def test_a_fingerprint_tells_integers_beyond_64_bits_apart():
    # orjson reads both as the float 1.8446744073709552e+19
    assert fingerprint(f'{{"n": {2**64}}}', json_text=True) != fingerprint(f'{{"n": {2**64 + 1}}}', json_text=True)
    assert fingerprint(f'{{"n": {2**64}}}', json_text=True) == fingerprint(f'{{ "n":{2**64}}}', json_text=True)


@pytest.mark.parametrize("value", [5, 1.5, "{not json", "[" * 100_000 + "]" * 100_000, '{"n": 1e999999}', b"\xff"])
def test_any_value_a_row_holds_now_has_a_fingerprint(value):
    """restore fingerprints what each row holds now, which a 3.1 component may have written since
    (SQLite hands back a number as an int or float; SQLite lets a JSON column hold anything): one
    such row must not take restore down half-way."""
    assert fingerprint(value, json_text=True) != fingerprint('{"__type": "dict", "__var": {}}', json_text=True)


@pytest.mark.parametrize("written, jsonb", [
    # what Python's json writes for a float, and how PostgreSQL's JSONB (numeric) hands it back
    ('{"x": 1.2345678901234568e+16}', '{"x": 12345678901234568}'),
    ('{"x": 1e-07}', '{"x": 0.0000001}'),
    ('{"x": 1.7e+308}', '{"x": ' + "17" + "0" * 307 + "}"),
])
def test_a_json_fingerprint_ignores_how_jsonb_spells_a_number(written, jsonb):
    """restore compares what a row holds now with what rewrite wrote: a JSONB column respells
    Python's exponent floats, and a row rewrite wrote must not look changed since."""
    assert fingerprint(written, json_text=True) == fingerprint(jsonb, json_text=True)
    assert fingerprint(written, json_text=True) != fingerprint(jsonb.replace("}", "1}"), json_text=True)


def test_a_file_that_is_no_backup_is_refused_untouched(tmp_path):
    """--backup naming the wrong file: refused before anything about it changes (no cut-off last
    line, no chmod)."""
    other = tmp_path / "notes.txt"
    other.write_text("line one\nline two without an end")
    os.chmod(other, 0o644)
    with pytest.raises(BackupError, match="not an airflow-serde-compat backup"):
        BackupFile(str(other), URL, "postgresql")
    assert other.read_text() == "line one\nline two without an end"
    assert oct(os.stat(other).st_mode & 0o777) == "0o644"
