"""``rewrite`` and ``restore`` against the metadata database.

``rewrite`` pages through each stored column of :data:`~airflow_serde_compat.scan.columns.COLUMNS`
by its primary key (short reads and short writes), decodes and classifies every row exactly as
``scan`` does, and for each 3.2-format row asks the
:class:`~airflow_serde_compat.rewrite.writers.Airflow31Writer` for 3.1's stored form. With
``apply``, each batch's originals go to the backup file (fsynced) and then the batch is updated in
its own transaction, each row only if it still holds what was read (on PostgreSQL and MySQL
while the next batch is read and converted, see :class:`_Batches`). A rerun after a crash finds
converted rows legacy and skips them: nothing is converted twice.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from airflow_serde_compat._errors import OperatorError, first_line, one_line
from airflow_serde_compat.rewrite.backup import (
    BackupError,
    BackupFile,
    Record,
    fingerprint,
    fingerprint_of_dumped,
    line_of,
    read_backup,
)
from airflow_serde_compat.rewrite.conversion import Conversions, forking_pays
from airflow_serde_compat.rewrite.writers import Airflow31Writer, CannotRewrite
from airflow_serde_compat.scan.classify import TOO_DEEP, Bridge, Format, TriggerKwargsReader, undecodable
from airflow_serde_compat.scan.columns import COLUMNS, StoredColumn
from airflow_serde_compat.scan.database import (
    Progress,
    as_utc,
    revision_warnings,
    safe_url,
    schema_revision,
    table_columns,
)

__all__ = [
    "ALIVE_WITHIN",
    "ColumnResult",
    "RewriteError",
    "RewriteResult",
    "live_components",
    "restore_backup",
    "rewrite_database",
]

log = logging.getLogger("airflow_serde_compat")

BATCH_ROWS = 500
#: How long a run that stops lets the batch in flight end on its own before cancelling its update.
STOP_WAIT = 5.0
#: A component whose job heartbeat is younger than this is taken to be running.
ALIVE_WITHIN = dt.timedelta(seconds=120)
_COMPONENT_JOBS = ("SchedulerJob", "TriggererJob", "DagProcessorJob")
#: Database columns whose stored value is JSON (compared as parsed JSON, see backup.fingerprint).
_JSON_COLUMNS = {"next_kwargs", "callback", "data", "value"}
#: Columns whose classify() parses the text once, as is (the others unwrap or decompress first).
_KWARGS_COLUMNS = {"next_kwargs", "kwargs"}
#: Where readers never wait for a writer: a batch commits while the next is read and converted.
_THREADED_DIALECTS = ("postgresql", "mysql", "mariadb")


class RewriteError(OperatorError):
    """A problem the operator must fix before anything is written: one line, exit code 2."""


#: Row identities kept per column and kind for the report (the backup file lists every changed row).
LISTED_ROWS = 10_000


#: ``--only`` name of the task-instance id repair (all six columns that hold the ids).
TASK_INSTANCE_IDS = "task_instance.id"


@dataclass
class ColumnResult:
    column: StoredColumn | None
    present: bool = True
    absent_reason: str = ""
    rows: int = 0
    #: Rows in the 3.2 format that got (in a dry run: would get) 3.1's stored form.
    rewritten: int = 0
    #: Rows in the 3.2 format left as they are, with a value-free reason each.
    left: int = 0
    #: Rows that changed between the read and the write (a component ran meanwhile): a rerun retries them.
    changed_meanwhile: int = 0
    reasons: Counter = field(default_factory=Counter)
    rewritten_rows: list[dict[str, Any]] = field(default_factory=list)
    left_rows: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    changed_rows: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name and self.column is not None:
            self.name = self.column.name

    def add_rewritten(self, ident: dict[str, Any]) -> None:
        self.rewritten += 1
        if len(self.rewritten_rows) < LISTED_ROWS:
            self.rewritten_rows.append(ident)

    def add_left(self, ident: dict[str, Any], reason: str) -> None:
        self.left += 1
        self.reasons[reason] += 1
        if len(self.left_rows) < LISTED_ROWS:
            self.left_rows.append((ident, reason))

    def add_changed(self, ident: dict[str, Any]) -> None:
        self.changed_meanwhile += 1
        if len(self.changed_rows) < LISTED_ROWS:
            self.changed_rows.append(ident)


@dataclass
class RewriteResult:
    database: str
    dialect: str
    applied: bool
    backup: str | None
    columns: list[ColumnResult]
    warnings: list[str] = field(default_factory=list)
    forced_past: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """3.2-format rows still in the database after this run (in a dry run: all of them)."""
        n = sum(c.left + c.changed_meanwhile for c in self.columns)
        if not self.applied:
            n += sum(c.rewritten for c in self.columns)
        return n

    @property
    def exit_code(self) -> int:
        return 1 if self.remaining else 0


def _stored(dialect: str, name: str) -> Any:
    col = sa.column(name)
    # JSON(B) as its text, as the scan reads it; LargeBinary and Text as they are.
    if dialect in ("postgresql", "mysql") and name in _JSON_COLUMNS:
        return sa.cast(col, sa.Text)
    return col


def live_components(conn: sa.Connection, now: dt.datetime | None = None) -> list[str]:
    """Scheduler, triggerer and dag-processor jobs of this database with a recent heartbeat."""
    now = now or dt.datetime.now(dt.timezone.utc)
    job = sa.table("job", sa.column("job_type"), sa.column("hostname"), sa.column("state"),
                   sa.column("latest_heartbeat"))
    stmt = sa.select(job.c.job_type, job.c.hostname, job.c.latest_heartbeat).where(
        job.c.state == "running", job.c.job_type.in_(_COMPONENT_JOBS)
    )
    alive = []
    for job_type, hostname, heartbeat in conn.execute(stmt):
        when = as_utc(heartbeat)
        if when is not None and now - when < ALIVE_WITHIN:
            alive.append(f"{job_type} on {hostname or '?'} (heartbeat {int((now - when).total_seconds())} s ago)")
    return alive


def _still_running(alive: list[str]) -> str:
    # A component killed without its shutdown (SIGKILL, a node lost) leaves its job row 'running': waiting
    # the heartbeat out is as good an answer as --force, and needs no judgement.
    return (
        "Airflow components of this database are running: " + "; ".join(alive)
        + f". Stop them first; a job killed without shutting down counts as running until its last heartbeat "
        f"is {int(ALIVE_WITHIN.total_seconds())} s old (or --force, if those jobs are known to be dead)"
    )


def _check_database(conn: sa.Connection, url: str, force: bool, forced_past: list[str]) -> tuple[set[str], list[str]]:
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if "task_instance" not in tables:
        raise RewriteError(f"{url} has no task_instance table: is it the Airflow metadata database?")
    revision = schema_revision(conn, tables)
    try:
        warnings = revision_warnings(revision)
    except OperatorError as err:
        raise RewriteError(str(err)) from None
    if warnings or "deadline_alert" in tables:
        # 3.2's own rows are right for 3.2: rewriting them before the downgrade would break 3.2.
        raise RewriteError(
            "the database is not on the installed Airflow 3.1's schema (run `airflow db downgrade -n "
            "<your 3.1.x> -y` with the newer Airflow first): rewrite writes 3.1's format only"
        )
    if "job" in tables:
        alive = live_components(conn)
        if alive and not force:
            raise RewriteError(_still_running(alive))
        forced_past.extend(alive)
    return tables, warnings


def rewrite_database(
    engine: sa.Engine,
    *,
    writer: Airflow31Writer,
    fernet_keys: Sequence[str] = (),
    apply: bool = False,
    backup_path: str | None = None,
    force: bool = False,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    batch: int = BATCH_ROWS,
    columns: Iterable[StoredColumn] = COLUMNS,
    processes: bool = True,
) -> RewriteResult:
    """``processes``: with a backup, on PostgreSQL and MySQL, convert in a forked child where a
    second CPU runs it (:mod:`.conversion`); False converts every batch in this process."""
    if apply and not backup_path:
        raise RewriteError("rewrite --apply needs a backup file")
    try:
        reader = TriggerKwargsReader(fernet_keys)
    except ValueError as err:
        raise RewriteError(str(err)) from None
    wanted = set(only) if only else None
    url = safe_url(engine.url)
    dialect = engine.dialect.name
    forced_past: list[str] = []
    with engine.connect() as conn:
        tables, warnings = _check_database(conn, url, force, forced_past)
        inspector = sa.inspect(conn)
        present = {c.table: table_columns(inspector, c.table) for c in columns if c.table in tables}
        # PostgreSQL's bulk update casts its VALUES to the columns' own types.
        types = {c.table: {col["name"].lower(): col["type"] for col in inspector.get_columns(c.table)}
                 for c in columns if c.table in tables} if dialect == "postgresql" else {}
    backup = BackupFile(backup_path, url, dialect) if apply else None
    results: list[ColumnResult] = []
    # Airflow's imports are a large heap that lives for the whole run: each full collection
    # walked all of it (about a fifth of the rewrite's CPU, measured). Frozen, it is not walked.
    gc.collect()
    gc.freeze()
    try:
        if wanted is None or TASK_INSTANCE_IDS in wanted:
            # First: the other columns' rows are then paged and backed up under their repaired ids.
            results.append(_repair_task_instance_ids(engine, backup))
        for column in columns:
            if wanted is not None and column.name not in wanted:
                continue
            result = ColumnResult(column)
            results.append(result)
            names = present.get(column.table)
            if column.reader is None or not writer.handles(column):
                result.present, result.absent_reason = False, "not on a 3.1 schema"
                continue
            if names is None or column.column not in names:
                result.present, result.absent_reason = False, f"no column {column.table}.{column.column}"
                continue
            _rewrite_column(engine, result, names, types.get(column.table, {}), reader, writer, backup, progress, batch,
                            processes)
    except sa.exc.DBAPIError as err:
        raise RewriteError(f"{url}: {first_line(getattr(err, 'orig', err))}") from err
    finally:
        gc.unfreeze()
        if backup is not None:
            backup.close()
    if reader.encrypted and not reader.decrypted:
        raise RewriteError(
            "trigger.kwargs has Fernet-encrypted rows and no given key decrypts them "
            "(check --fernet-key / AIRFLOW__CORE__FERNET_KEY / [core] fernet_key)"
        )
    return RewriteResult(url, dialect, apply, backup_path, results, warnings, forced_past)


def _repair_task_instance_ids(engine: sa.Engine, backup: BackupFile | None) -> ColumnResult:
    """Task-instance ids Airflow's downgrade mangled on MariaDB (:mod:`.task_instance_ids`): one
    transaction for all six columns, so foreign keys never see half a repair."""
    from airflow_serde_compat.rewrite import task_instance_ids

    result = ColumnResult(None, name=TASK_INSTANCE_IDS)
    with engine.connect() as conn:
        changes = task_instance_ids.find_mangled(conn)
        for change in changes:
            ident = {"table": change.table, "column": change.column, "id": change.old, "repaired": change.new}
            result.add_rewritten(ident)
        result.rows = len(changes)
        if backup is None or not changes:
            conn.rollback()
            return result
        for change in changes:
            backup.write(Record(TASK_INSTANCE_IDS, change.table, {change.column: change.new},
                                {change.column: change.old}, {change.column: fingerprint(change.new, json_text=False)}))
        backup.sync()
        task_instance_ids.apply(conn, changes)
        conn.commit()
    return result


def _key_of(mapping: Any, names: Sequence[str]) -> dict[str, Any]:
    return {n: (mapping[n] if isinstance(mapping[n], (int, str)) or mapping[n] is None else str(mapping[n]))
            for n in names}


def _rewrite_column(
    engine: sa.Engine,
    result: ColumnResult,
    names: set[str],
    types: dict[str, Any],
    reader: TriggerKwargsReader,
    writer: Airflow31Writer,
    backup: BackupFile | None,
    progress: Progress | None,
    batch: int,
    processes: bool,
) -> None:
    column = result.column
    dialect = engine.dialect.name
    pk = [c for c in column.primary_key if c in names]
    if len(pk) != len(column.primary_key):
        result.present, result.absent_reason = False, f"{column.table} has no primary key {column.primary_key}"
        return
    stored_names = [column.column, *[c for c in column.extra_columns if c in names]]
    identity = [c for c in column.identity if c in names]
    select_cols = list(dict.fromkeys([*pk, *identity]))
    table = sa.table(column.table, *[sa.column(c) for c in {*select_cols, *stored_names, "dag_hash"}])
    # Named with the table: in ORDER BY a bare name would be the label of what is read, which for a
    # PostgreSQL uuid key is its text (psycopg2 would build a uuid.UUID per row, only for it to be
    # written as text), and text does not sort as uuid does.
    pk_cols = [table.c[c] for c in pk]
    as_text = {c for c in select_cols if c in types and types[c].compile(dialect=engine.dialect) == "UUID"}
    read_cols = [sa.cast(table.c[c], sa.Text).label(c) if c in as_text else table.c[c] for c in select_cols]
    if progress is not None:
        with engine.connect() as conn:
            progress.start(column.name, conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())
    last: tuple | None = None
    names_read = [*stored_names, *select_cols]
    threaded = backup is not None and dialect in _THREADED_DIALECTS
    in_child = threaded and processes and column.name != "serialized_dag.data" and forking_pays()

    def convert(rows: list) -> tuple:
        """A batch's changes and the rows it leaves. From the child, each change is only
        ``(index in rows, new values, their fingerprints)``, and with it comes what its copy of
        the reader counted (the parent's reader saw none of these rows): the parent holds the
        rows, so their originals cross the pipe once."""
        left: list[tuple[dict[str, Any], str]] = []
        if not in_child:
            changes = []
            for row in rows:
                change = _change_for(row._mapping, column, stored_names, pk, identity, reader, writer, left)
                if change is not None:
                    changes.append(change)
            return changes, left, None
        before = (reader.plaintext, reader.encrypted, reader.decrypted)
        converted = []
        for i, row in enumerate(rows):
            got = _new_values_for(dict(zip(names_read, row)), column, identity, reader, writer, left)
            if got is not None:
                converted.append((i, got[0], _after(*got)))
        counts = (reader.plaintext - before[0], reader.encrypted - before[1], reader.decrypted - before[2])
        return converted, left, counts

    def from_child(rows: list, converted: list) -> tuple[list, list[str]]:
        """The changes and their backup lines, from the child's ``(index, new, after)``."""
        changes, lines = [], []
        for i, new, after in converted:
            change = _change(dict(zip(names_read, rows[i])), stored_names, pk, identity, new, {})
            changes.append(change)
            lines.append(line_of(Record(column.name, column.table, change[1], change[2], after)))
        return changes, lines

    try:
        # Forked before the commit thread starts: a fork copies only the thread that calls it.
        with Conversions(convert, in_child=in_child,
                         close_in_child=(backup.fileno(),) if backup is not None else ()) as conversions, \
                _Batches(engine, column, backup, result, types) as batches:
            while True:
                stmt = sa.select(*[_stored(dialect, c).label(c) for c in stored_names],
                                 *read_cols).select_from(table)
                if last is not None:
                    stmt = stmt.where(sa.tuple_(*pk_cols) > sa.tuple_(*last) if len(pk) > 1 else pk_cols[0] > last[0])
                stmt = stmt.order_by(*pk_cols).limit(batch)
                with engine.connect() as conn:
                    rows = conn.execute(stmt).fetchall()
                batches.poll()
                if rows:
                    last = tuple(rows[-1]._mapping[c] for c in pk)
                    result.rows += len(rows)
                    if in_child:
                        rows = [tuple(bytes(v) if v.__class__ is memoryview else v for v in row) for row in rows]
                converted = conversions.feed(rows)
                while converted is not None:
                    batch_rows, (changes, left, counts) = converted
                    lines = None
                    for ident, reason in left:
                        result.add_left(ident, reason)
                    if counts is not None:
                        reader.plaintext += counts[0]
                        reader.encrypted += counts[1]
                        reader.decrypted += counts[2]
                        changes, lines = from_child(batch_rows, changes)
                    if changes:
                        batches.write(changes, lines)
                    # At the end, the batches the child still holds, oldest first.
                    converted = None if rows else conversions.feed([])
                if not rows:
                    break
                if progress is not None:
                    progress.advance(len(rows))
    finally:
        if progress is not None:
            progress.stop()


def _change_for(mapping, column, stored_names, pk, identity, reader, writer, left):
    """The row's change, or None; a 3.2-format row it leaves goes to ``left`` with its reason."""
    got = _new_values_for(mapping, column, identity, reader, writer, left)
    return None if got is None else _change(mapping, stored_names, pk, identity, *got)


def _change(mapping, stored_names, pk, identity, new, parsed):
    before = {c: mapping[c] for c in stored_names}
    if "dag_hash" in new:
        before["dag_hash"] = None  # read in the write transaction, with the row
    return _key_of(mapping, identity), _key_of(mapping, pk), before, new, parsed


def _new_values_for(mapping, column, identity, reader, writer, left):
    """The row's new stored values and the parses of their texts (see ``new_values``), or None."""
    try:
        text, verdict = column.decode(mapping[column.column], mapping, reader)
        payload = legacy = None
        if verdict is None:
            if column.translate is not None:
                verdict, payload, legacy = column.translate(text)
            else:
                verdict, payload = column.classify(text)
        if verdict.format is Format.SERDE and (payload is None or column.column not in _KWARGS_COLUMNS):
            # What gets converted is parsed as Airflow parses it (json.loads). A kwargs column's
            # translate hands back that parse already (orjson's where it is the same: see
            # scan.columns._beyond_64_bits; else the rewrite would store 1e+30 for 10**30).
            payload, legacy = json.loads(text), None
    except RecursionError:
        verdict, payload = undecodable(TOO_DEEP), None
    except ValueError:
        verdict, payload = undecodable("not valid JSON"), None
    if verdict.format is not Format.SERDE:
        return None
    if column.encrypted and isinstance(mapping[column.column], (bytes, bytearray, memoryview)):
        # The scan reads such a value with errors="replace" to classify it; rewriting that text
        # would turn every byte that is not UTF-8 into U+FFFD. 3.1 reads no bytes here, bridge or not.
        left.append((_key_of(mapping, identity),
                     "stored as bytes, not text: Airflow 3.1 cannot read it, with the bridge or without"))
        return None
    if verdict.bridge is Bridge.UNTRANSLATABLE:
        left.append((_key_of(mapping, identity), verdict.reason or "the bridge cannot translate it"))
        return None
    try:
        return writer.new_values(column, payload, mapping, read_back=verdict.bridge is not Bridge.TRANSLATABLE,
                                 legacy=legacy)
    except CannotRewrite as err:
        left.append((_key_of(mapping, identity), str(err)))
        return None


def _matches(col: str, value: Any, dialect: str) -> Any:
    expr = _stored(dialect, col)
    return expr.is_(None) if value is None else expr == value


def _after(new: dict[str, Any], parsed: dict[str, Any]) -> dict[str, str | None]:
    """The new values' fingerprints (``parsed``: the parses the writer made, where it made one)."""
    return {c: fingerprint_of_dumped(v, parsed[c]) if c in parsed else fingerprint(v, json_text=c in _JSON_COLUMNS)
            for c, v in new.items()}


def _backup_lines(column: StoredColumn, changes: list) -> list[str]:
    return [line_of(Record(column.name, column.table, key, before, _after(new, parsed)))
            for _, key, before, new, parsed in changes]


def _write_batch(
    engine: sa.Engine, column: StoredColumn, changes: list, backup: BackupFile, result: ColumnResult, types: dict
) -> None:
    with engine.begin() as conn:
        for ident, key, before, new, parsed in changes:
            if "dag_hash" in before:
                t = sa.table(column.table, sa.column("dag_hash"), *[sa.column(k) for k in key])
                before["dag_hash"] = conn.execute(
                    sa.select(t.c.dag_hash).where(*[sa.column(k) == v for k, v in key.items()])
                ).scalar()
        backup.write_lines(_backup_lines(column, changes))
        # Every original is on disk before the first row of the batch changes.
        backup.sync()
        done = _update(conn, column, changes, types)
    _count(result, changes, done)


def _count(result: ColumnResult, changes: list, done: list[bool]) -> None:
    for (ident, *_), ok in zip(changes, done):
        (result.add_rewritten if ok else result.add_changed)(ident)


def _update(conn: sa.Connection, column: StoredColumn, changes: list, types: dict) -> list[bool]:
    """Each row of the batch updated only if it still holds what was read: whether it was, per row."""
    dialect = conn.dialect.name
    single = all(list(new) == [column.column] and list(before) == [column.column] for _, _, before, new, _ in changes)
    if dialect == "postgresql" and single and types:
        done = _pg_bulk_update(conn, column, changes, types)
        return [tuple(str(v) for v in key.values()) in done for _, key, *_ in changes]
    updated = []
    for ident, key, before, new, _ in changes:
        cols = {*key, *before, *new}
        t = sa.table(column.table, *[sa.column(c) for c in cols])
        where = [sa.column(k) == v for k, v in key.items()]
        where += [_matches(c, v, dialect) for c, v in before.items() if c != "dag_hash"]
        updated.append(conn.execute(sa.update(t).where(*where).values(**new)).rowcount == 1)
    return updated


class _Batches:
    """Writes one column's batches. Where readers never wait for a writer (PostgreSQL, MySQL), a
    batch's update and commit run in a thread while the next batch is read and converted: the
    database's share of the wall time overlaps the conversion's. Everything else stays in the
    calling thread (the backup lines, their fingerprints, the report), so the backup file has
    one writer, and the order that makes a kill safe holds: the thread makes a batch's lines
    durable (fsync) before it updates a row. At most one batch is in flight.

    SQLite keeps a short read, then a short write: it never sees a reader and a writer at once.
    A batch whose backup needs a value read in its own transaction (a serialized DAG's hash)
    is written whole, after the one in flight."""

    def __init__(self, engine: sa.Engine, column: StoredColumn, backup: BackupFile | None, result: ColumnResult,
                 types: dict):
        self._engine, self._column, self._backup, self._result, self._types = engine, column, backup, result, types
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="serde-compat-commit")
                      if backup is not None and engine.dialect.name in _THREADED_DIALECTS else None)
        self._pending: tuple[list, Future] | None = None
        self._committing: Any = None  # the DBAPI connection of the update in flight

    def write(self, changes: list, lines: list[str] | None = None) -> None:
        """``lines``: the batch's backup lines, where they were made already (the conversion's child)."""
        if self._backup is None:
            for ident, *_ in changes:
                self._result.add_rewritten(ident)
            return
        if self._pool is None or any("dag_hash" in before for _, _, before, _, _ in changes):
            self._wait()
            _write_batch(self._engine, self._column, changes, self._backup, self._result, self._types)
            return
        self._backup.write_lines(_backup_lines(self._column, changes) if lines is None else lines)
        self._backup.flush()
        self._wait()
        self._pending = changes, self._pool.submit(self._commit, changes)

    def _commit(self, changes: list) -> list[bool]:
        self._backup.fsync()
        with self._engine.begin() as conn:
            self._committing = conn.connection.dbapi_connection
            try:
                return _update(conn, self._column, changes, self._types)
            finally:
                self._committing = None

    def poll(self) -> None:
        """A batch that failed in the thread stops the run now, not after the rest of the
        table was read (a table whose remaining rows need no change submits nothing more)."""
        if self._pending is not None and self._pending[1].done():
            self._wait()

    def _wait(self) -> None:
        if self._pending is None:
            return
        changes, future = self._pending
        try:
            done = future.result()
        except BaseException:
            if future.done():  # its error is the run's: __exit__ has nothing more to wait for
                self._pending = None
            raise  # else Ctrl-C while waiting for it: __exit__ stops it
        self._pending = None
        _count(self._result, changes, done)

    def __enter__(self) -> "_Batches":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._wait()
            elif self._pending is not None:
                # The batch in flight is whole (its lines are on disk): let it commit; what
                # stopped the run is what is raised.
                self._end_in_flight(self._pending[1])
        finally:
            if self._pool is not None:
                self._pool.shutdown()

    def _end_in_flight(self, future: Future) -> None:
        """Waits for the batch in flight when the run stops, and logs what the operator needs to
        know of it beyond the run's own error. A batch commits in well under a second; one still
        running after :data:`STOP_WAIT` waits on a lock (a component's open transaction holds a
        row), and Ctrl-C must not wait for that: its update is cancelled and rolled back, and a
        rerun converts its rows again (their lines are on disk)."""
        cancelled = False
        try:
            future.exception(timeout=STOP_WAIT)
        except (FutureTimeout, KeyboardInterrupt):  # or a second Ctrl-C: no more waiting
            cancelled = self._cancel()
        failed = future.exception()
        if failed is None:
            return
        if cancelled:
            log.error("the batch being written was still waiting after %.0f s (on a lock another transaction "
                      "holds?): its update was cancelled and rolled back; a rerun converts its rows", STOP_WAIT)
        else:
            # A second fact the operator needs: the database may be what failed both.
            log.error("the batch being written when the run stopped failed too: %s", one_line(failed))

    def _cancel(self) -> bool:
        committing = self._committing
        if committing is None:
            return False
        try:
            if self._engine.dialect.name == "postgresql":
                committing.cancel()  # psycopg2's, made to be called from another thread
            else:
                with self._engine.connect() as conn:
                    conn.exec_driver_sql(f"KILL QUERY {int(committing.thread_id())}")
        except Exception as err:  # noqa: BLE001 - the run is stopping anyway; say why it may not be quick
            log.error("could not cancel the update in flight (%s): the run stops when it ends", one_line(err))
            return False
        return True


def _pg_bulk_update(conn: sa.Connection, column: StoredColumn, changes: list, types: dict) -> set[tuple]:
    """One ``UPDATE ... FROM unnest(arrays) ... RETURNING`` per batch: a round trip per row would
    cap the rate at the network's latency, and one text array per field is adapted by psycopg2 in
    C (``execute_values`` formats each row in Python: measured 8 % of the rewrite's CPU). Each row
    is still only updated if it holds what was read."""
    keys = list(changes[0][1])
    name = column.column
    quote = conn.dialect.identifier_preparer.quote
    type_of = {c: types[c].compile(dialect=conn.dialect) for c in (*keys, name)}
    alias = ", ".join([*(f"k{i}" for i in range(len(keys))), "old", "new"])
    sql = (
        f"UPDATE {quote(column.table)} AS t SET {quote(name)} = CAST(v.new AS {type_of[name]}) "
        f"FROM unnest({', '.join(['%s::text[]'] * (len(keys) + 2))}) AS v({alias}) WHERE "
        + " AND ".join(f"t.{quote(k)} = CAST(v.k{i} AS {type_of[k]})" for i, k in enumerate(keys))
        + f" AND CAST(t.{quote(name)} AS TEXT) = v.old RETURNING "
        # As text: psycopg2 would build a uuid.UUID per id, only for it to be compared as str.
        + ", ".join(f"CAST(t.{quote(k)} AS TEXT)" for k in keys)
    )
    arrays = [[str(key[k]) for _, key, *_ in changes] for k in keys]
    arrays.append([before[name] for _, _, before, _, _ in changes])
    arrays.append([new[name] for _, _, _, new, _ in changes])
    # A batch is a few hundred rows found by primary key. Costed against the arrays' default
    # estimates, PostgreSQL may hash-join instead, scanning the whole table (and casting every
    # row's JSON to text) per batch: measured 4x slower at 20 k rows, and growing with the table.
    # For this transaction only. Through SQLAlchemy, so that a failure is its DBAPIError, which
    # names the database in the one-line error like every other.
    conn.exec_driver_sql("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    return {tuple(row) for row in conn.exec_driver_sql(sql, tuple(arrays))}


# --- restore -----------------------------------------------------------------------------


@dataclass
class RestoreResult:
    database: str
    restored: Counter = field(default_factory=Counter)
    #: (column, key, why): rows that no longer hold what rewrite wrote, left alone.
    skipped: list[tuple[str, dict, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.skipped else 0


def restore_backup(engine: sa.Engine, path: str, *, force: bool = False, progress: Progress | None = None) -> RestoreResult:
    url = safe_url(engine.url)
    # The whole file is checked before the first row is put back.
    for _ in _checked(path, *read_backup(path))[1]:
        pass
    header, records = read_backup(path)
    if header.get("database") != url:
        raise BackupError(f"{path!r} is the backup of {header.get('database')!r}, not of {url!r}")
    result = RestoreResult(url)
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if "job" in set(sa.inspect(conn).get_table_names()):
            alive = live_components(conn)
            if alive and not force:
                raise RewriteError(_still_running(alive))
    if progress is not None:
        progress.start("restore", None)
    # A row backed up twice (killed between a batch's backup and its commit, then rewritten again
    # by the rerun) holds neither record's "after" at first: retried once everything else is back.
    retry: list[Record] = []
    ids: list[Record] = []
    try:
        batch: list[Record] = []
        for record in records:
            if record.column == TASK_INSTANCE_IDS:
                ids.append(record)  # after the values, which were backed up under the repaired ids
                continue
            batch.append(record)
            if len(batch) >= BATCH_ROWS:
                _restore_batch(engine, batch, dialect, result, progress, retry)
                batch = []
        if batch:
            _restore_batch(engine, batch, dialect, result, progress, retry)
        for start in range(0, len(retry), BATCH_ROWS):
            _restore_batch(engine, retry[start:start + BATCH_ROWS], dialect, result, progress, None)
        if ids:
            _restore_task_instance_ids(engine, ids, result)
    except sa.exc.DBAPIError as err:
        raise RewriteError(f"{url}: {first_line(getattr(err, 'orig', err))}") from err
    finally:
        if progress is not None:
            progress.stop()
    return result


def _restore_task_instance_ids(engine: sa.Engine, records: list[Record], result: RestoreResult) -> None:
    from airflow_serde_compat.rewrite import task_instance_ids

    changes = []
    for record in records:
        (column, new), = record.key.items()
        changes.append(task_instance_ids.Change(record.table, column, new, record.before[column]))
    with engine.begin() as conn:
        task_instance_ids.apply(conn, changes, restoring=True)
    result.restored[TASK_INSTANCE_IDS] += len(changes)


def _checked(path: str, header: Any, records: Iterable[Record]) -> tuple[Any, Iterable[Record]]:
    """Only what rewrite writes may be put back: the registry's tables, keys and columns. A
    backup file is input too; it must not become a way to write any column of any table."""
    from airflow_serde_compat.rewrite.task_instance_ids import ID_COLUMNS

    by_name = {c.name: c for c in COLUMNS}

    def valid() -> Any:
        for number, record in enumerate(records, start=2):
            if record.column == TASK_INSTANCE_IDS:
                column = next(iter(record.key), None) if len(record.key) == 1 else None
                if ((record.table, column) not in ID_COLUMNS or set(record.before) != {column}
                        or set(record.after) != {column}
                        or not all(v.__class__ is str for v in (*record.key.values(), *record.before.values()))):
                    raise BackupError(f"{path!r} line {number} is not a row rewrite writes: nothing was restored")
                yield record
                continue
            column = by_name.get(record.column)
            if column is None or not _is_rewrite_record(record, column):
                raise BackupError(f"{path!r} line {number} is not a row rewrite writes: nothing was restored")
            yield record

    return header, valid()


_INT64 = range(-(2**63), 2**63)


def _is_rewrite_record(record: Record, column: StoredColumn) -> bool:
    """What rewrite writes for ``column``: its table and primary key, the stored column (for a
    serialized DAG also data_compressed and dag_hash), a fingerprint of each value written (without
    them restore would overwrite the row whatever it holds now), and values of the types these
    columns hold (else a driver error half-way through the restore)."""
    written = {column.column, *column.extra_columns}
    if column.name == "serialized_dag.data":
        written.add("dag_hash")
    if (record.table != column.table or set(record.key) != set(column.primary_key)
            or column.column not in record.before or not set(record.before) <= written
            or set(record.after) != set(record.before)):
        return False
    if not all(v.__class__ is str or (v.__class__ is int and v in _INT64) for v in record.key.values()):
        return False
    if not all(v is None or v.__class__ in (str, bytes) for v in record.before.values()):
        return False
    return all(v is None or (v.__class__ is str and len(v) == 64 and not v.strip("0123456789abcdef"))
               for v in record.after.values())


def _restore_batch(
    engine: sa.Engine, batch: list[Record], dialect: str, result: RestoreResult, progress: Any,
    retry: list[Record] | None,
) -> None:
    with engine.begin() as conn:
        for record in batch:
            cols = {*record.key, *record.before}
            t = sa.table(record.table, *[sa.column(c) for c in cols])
            where = [sa.column(k) == v for k, v in record.key.items()]
            names = list(dict.fromkeys([*record.after, *record.before]))
            current = conn.execute(
                sa.select(*[_stored(dialect, c).label(c) for c in names]).select_from(t).where(*where)
            ).fetchone()
            if current is None:
                result.skipped.append((record.column, record.key, "the row is gone"))
                continue
            now = {c: fingerprint(current._mapping[c], json_text=c in _JSON_COLUMNS) for c in record.after}
            if now != record.after:
                original = {c: fingerprint(v, json_text=c in _JSON_COLUMNS) for c, v in record.before.items()}
                if {c: fingerprint(current._mapping[c], json_text=c in _JSON_COLUMNS) for c in record.before} == original:
                    continue  # already holds its original: a duplicate record of a rerun
                if retry is not None:
                    retry.append(record)
                    continue
                # A 3.1 component changed it since (a resumed task cleared next_kwargs, say):
                # putting the 3.2 value back would undo what 3.1 did.
                result.skipped.append((record.column, record.key, "changed since the rewrite"))
                continue
            conn.execute(sa.update(t).where(*where).values(**record.before))
            result.restored[record.column] += 1
    if progress is not None:
        progress.advance(len(batch))
