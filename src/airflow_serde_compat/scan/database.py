"""Reading the metadata database: every stored column of :data:`COLUMNS`, in batches.

read (a server-side cursor, never a whole table in memory) -> decode and classify
(:attr:`StoredColumn.decode`/``classify``) -> verify (``--verify``) -> aggregate into a
:class:`ScanReport`. Works on a downgraded 3.1 schema and, as a preflight, on a 3.2 schema;
tables or columns that the schema does not have are reported as absent. Read-only: nothing is
ever written.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from typing import Any, Iterable, Iterator, Protocol, Sequence

import sqlalchemy as sa

from airflow_serde_compat._errors import OperatorError, first_line
from airflow_serde_compat.scan.classify import TOO_DEEP, Bridge, Format, TriggerKwargsReader, Verdict, undecodable
from airflow_serde_compat.scan.columns import COLUMNS, StoredColumn
from airflow_serde_compat.scan.report import ColumnReport, ScanReport
from airflow_serde_compat.scan.verify import Outcome, Verifier

__all__ = ["Progress", "ScanError", "as_utc", "revision_warnings", "safe_url", "scan_database", "schema_revision", "table_columns"]

BATCH_ROWS = 2000
_AGE = "serde_compat_age"
HOLDER_LOOKUP_CHUNK = 500


class ScanError(OperatorError):
    """A problem the operator must fix (connection, key, wrong database): one line, no trace."""


class Progress(Protocol):
    def start(self, name: str, total: int | None) -> None: ...

    def advance(self, n: int) -> None: ...

    def stop(self) -> None: ...


# --- schema inspection -----------------------------------------------------------------------


def table_columns(inspector: Any, table: str) -> set[str] | None:
    try:
        if not inspector.has_table(table):
            return None
        return {c["name"].lower() for c in inspector.get_columns(table)}
    except sa.exc.NoSuchTableError:
        return None


def schema_revision(conn: sa.Connection, tables: set[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    try:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        return None


# --- reading ---------------------------------------------------------------------------------


def _payload_column(dialect: str, name: str) -> Any:
    col = sa.column(name)
    # Read JSON as text and parse it here (orjson): PostgreSQL drivers would otherwise
    # json.loads every JSONB value themselves, which is the slow path.
    if dialect == "postgresql":
        return sa.cast(col, sa.Text).label(name)
    return col


def _partitions(conn: sa.Connection, stmt: Any, batch: int) -> Iterator[Sequence[Any]]:
    """Batches of rows (tuples or SQLAlchemy rows: read by position), at most two in memory."""
    if conn.dialect.driver == "psycopg2":
        parts: Iterator[Sequence[Any]] = _named_cursor_partitions(conn, stmt, batch)
    else:
        # A server-side cursor (MySQL SSCursor); SQLite's in-process one.
        parts = _closing(conn.execution_options(stream_results=True, yield_per=batch).execute(stmt))
    try:
        # SQLite is in-process: no server works while Python classifies, so nothing to overlap.
        yield from parts if conn.dialect.name == "sqlite" else _prefetched(parts)
    finally:
        parts.close()  # type: ignore[attr-defined]


def _closing(result: Any) -> Iterator[Sequence[Any]]:
    try:
        yield from result.partitions()
    finally:
        result.close()


def _named_cursor_partitions(conn: sa.Connection, stmt: Any, batch: int) -> Iterator[Sequence[Any]]:
    """psycopg2's own server-side cursor: plain tuples.

    SQLAlchemy's rows over the same cursor cost the scan a microsecond each (1 s of CPU per
    million rows, a seventh of the whole scan); the statement has no parameters and is compiled
    by SQLAlchemy for this dialect, so nothing else changes.
    """
    sql = str(stmt.compile(dialect=conn.dialect))
    cursor = conn.connection.dbapi_connection.cursor(name="airflow_serde_compat_scan")  # type: ignore[union-attr]
    cursor.itersize = batch
    try:
        cursor.execute(sql)
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield rows
    finally:
        cursor.close()


_DONE: Any = object()


def _prefetched(parts: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """``parts``, the next batch fetched on a thread while this one is classified.

    The driver waits for the server without the GIL, so the server's share of the scan (sending
    and converting rows) overlaps with Python's instead of adding to it. Two batches ahead at most.
    """
    handoff: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            for part in parts:
                if not put(part):
                    return
            put(_DONE)
        except BaseException as err:  # handed over and raised in the scanning thread
            put(err)

    fetcher = threading.Thread(target=fetch, name="airflow-serde-compat scan reader", daemon=True)
    fetcher.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The connection is the fetcher's until it has stopped: only then may the caller close
        # the cursor or use the connection again.
        stop.set()
        fetcher.join()


def as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if value.__class__ is dt.datetime and value.tzinfo is dt.timezone.utc:
        return value  # what psycopg2 hands back when the session time zone is UTC
    if not isinstance(value, dt.datetime):
        return None
    # Airflow stores UTC; SQLite hands back naive text.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def scan_database(
    engine: sa.Engine,
    *,
    fernet_keys: Sequence[str] = (),
    verifier: Verifier | None = None,
    progress: Progress | None = None,
    batch: int = BATCH_ROWS,
    columns: Iterable[StoredColumn] = COLUMNS,
    now: dt.datetime | None = None,
) -> ScanReport:
    """Scan every column; raise :class:`ScanError` for problems the operator must fix.

    ``verifier`` (``--verify``) checks every 3.2-format row the way the bridge will read it.
    """
    try:
        trigger_reader = TriggerKwargsReader(fernet_keys)
    except ValueError as err:
        raise ScanError(str(err)) from None
    columns = tuple(columns)
    started = now or dt.datetime.now(dt.timezone.utc)
    reports: list[ColumnReport] = []
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # The scan never writes; make sure of it where the server can enforce it.
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        if not any(c.table in tables for c in columns):
            raise ScanError(
                f"{safe_url(engine.url)} has none of the tables to scan "
                f"({', '.join(sorted({c.table for c in columns}))}): is it the Airflow metadata database?"
            )
        revision = schema_revision(conn, tables)
        warnings = revision_warnings(revision)
        family = "3.2+ (not downgraded yet)" if "deadline_alert" in tables else "3.1"
        for column in columns:
            report = ColumnReport(column)
            reports.append(report)
            present = table_columns(inspector, column.table) if column.table in tables else None
            if present is None:
                report.present, report.absent_reason = False, f"no table {column.table}"
                continue
            if column.column not in present:
                report.present, report.absent_reason = False, f"no column {column.table}.{column.column}"
                continue
            _scan_column(conn, report, present, trigger_reader, verifier, progress, batch)
            if column.holder_lookup is not None and report.holder_keys:
                _resolve_holders(conn, report, tables, inspector)
        if trigger_reader.encrypted and not trigger_reader.decrypted:
            given = "no Fernet key was given" if not trigger_reader.has_keys else "the given Fernet key(s) decrypt none"
            raise ScanError(
                f"trigger.kwargs has {trigger_reader.encrypted} Fernet-encrypted row(s) and {given} of them "
                "(check --fernet-key / AIRFLOW__CORE__FERNET_KEY / [core] fernet_key)"
            )
        conn.rollback()
    return ScanReport(
        database=safe_url(engine.url),
        dialect=engine.dialect.name,
        schema_revision=revision,
        schema_family=family,
        started=started,
        columns=reports,
        verify_mode=verifier.mode if verifier is not None else None,
        verify_note=verifier.note if verifier is not None else None,
        warnings=warnings,
    )


def revision_warnings(revision: str | None) -> list[str]:
    """Refuse a schema scan cannot vouch for; warn if it is newer than the installed Airflow's.

    Counting no 3.2 rows on a database whose schema is unknown would tell the operator the
    bridge can come out, which nothing here has shown.
    """
    from airflow_serde_compat import _revisions
    from airflow_serde_compat._bootstrap import airflow_core_version

    if revision is None:
        raise ScanError(
            "the database has no alembic_version row: not an Airflow metadata database, or never "
            "migrated (`airflow db migrate`); nothing can be said about its rows"
        )
    shown = revision if revision.__class__ is str and revision.isalnum() and len(revision) <= 32 else "<not a revision>"
    version = _revisions.version_of(revision)
    if version is None:
        raise ScanError(
            f"the database is at alembic revision {shown!r}, which is no migration of Airflow "
            f"{_revisions.KNOWN_RANGE}: written by a newer Airflow than this airflow-serde-compat knows "
            "(upgrade it), or not an Airflow metadata database"
        )
    installed = airflow_core_version()
    if installed is not None and _revisions.is_newer(revision, installed):
        return [
            f"the database schema ({shown}, Airflow {version}) is newer than the installed "
            f"apache-airflow-core {installed}'s: Airflow {installed} will refuse to start on it. Downgrade "
            f"with the newer Airflow: `airflow db downgrade -n {installed} -y`"
        ]
    return []


def safe_url(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _scan_column(
    conn: sa.Connection,
    report: ColumnReport,
    present: set[str],
    trigger_reader: TriggerKwargsReader,
    verifier: Verifier | None,
    progress: Progress | None,
    batch: int,
) -> None:
    column = report.column
    dialect = conn.dialect.name
    identity = [c for c in column.identity if c in present]
    timestamps = [c for c in column.timestamps if c in present]
    holders = [c for c in column.holder_columns if c in present]
    lookup = column.holder_lookup
    lookup_col = lookup.row_column if lookup is not None and lookup.row_column in present else None
    extra = [c for c in column.extra_columns if c in present]
    # Identity only names the rows of --verify failures; of the timestamps only the first one set
    # is the row's age, which PostgreSQL can pick (SQLite's text needs as_utc's parsing per column).
    named = identity if verifier is not None else []
    ages: list[Any] = [sa.column(c) for c in timestamps]
    if dialect == "postgresql" and len(timestamps) > 1:
        ages, timestamps = [sa.func.coalesce(*ages).label(_AGE)], [_AGE]
    wanted = list(dict.fromkeys([*named, *holders, *([lookup_col] if lookup_col else [])]))
    stmt = sa.select(
        _payload_column(dialect, column.column),
        *[sa.column(c) for c in extra],
        *[sa.column(c) for c in wanted],
        *ages,
    ).select_from(sa.table(column.table))
    if progress is not None:
        total = conn.execute(sa.select(sa.func.count()).select_from(sa.table(column.table))).scalar()
        progress.start(column.name, total)
    encrypted_before = trigger_reader.encrypted
    plaintext_before = trigger_reader.plaintext
    counts = report.counts
    decode, classify = column.decode, column.classify
    # Rows are read by position (the driver's tuples, see _named_cursor_partitions); decode gets
    # the extra columns it asks for by name.
    names = [column.column, *extra, *wanted, *timestamps]
    at = {c: names.index(c) for c in names}
    extra_at = [(c, at[c]) for c in extra]
    identity_at = [(c, at[c]) for c in identity] if verifier is not None else []
    age_at = [at[c] for c in timestamps]
    holders_at = [at[c] for c in holders]
    lookup_at = at[lookup_col] if lookup_col is not None else None
    no_extra: dict[str, Any] = {}
    legacy_format, null_format, undecodable_format = Format.LEGACY, Format.NULL, Format.UNDECODABLE
    # Rows of one kind share one verdict: counted per verdict here, added up once at the end.
    serde: dict[Verdict, int] = {}
    try:
        for rows in _partitions(conn, stmt, batch):
            # Legacy and NULL rows (most of them, long after the rollback) cost two identity
            # checks here; everything else is rare enough for the slow path.
            legacy = nulls = 0
            for row in rows:
                try:
                    text, verdict = decode(row[0], {c: row[i] for c, i in extra_at} if extra_at else no_extra, trigger_reader)
                    payload = None
                    if verdict is None:
                        verdict, payload = classify(text)
                except RecursionError:
                    verdict, payload = undecodable(TOO_DEEP), None
                fmt = verdict.format
                if fmt is legacy_format:
                    legacy += 1
                    continue
                if fmt is null_format:
                    nulls += 1
                    continue
                if fmt is undecodable_format:
                    counts[fmt.value] += 1
                    report.reasons[verdict.reason or "undecodable"] += 1
                    if verifier is not None:
                        report.add_failure(_identity(row, identity_at), None, verdict.reason or "undecodable")
                    continue
                serde[verdict] = serde.get(verdict, 0) + 1
                _count_age_and_holder(report, row, age_at, holders_at, lookup_at)
                if verifier is not None:
                    _verify_row(report, verifier, payload, verdict, _identity(row, identity_at))
            counts[legacy_format.value] += legacy
            counts[null_format.value] += nulls
            report.rows += len(rows)
            if progress is not None:
                progress.advance(len(rows))
    except sa.exc.DBAPIError as err:
        raise ScanError(f"reading {column.table}.{column.column} failed: {first_line(err.orig)}") from err
    except conn.dialect.loaded_dbapi.Error as err:  # the driver's own cursor (_named_cursor_partitions)
        # SQLAlchemy did not see the error, so it would roll back on a connection the server may
        # have dropped, and that error would replace this one.
        conn.invalidate()
        raise ScanError(f"reading {column.table}.{column.column} failed: {first_line(err)}") from err
    finally:
        if progress is not None:
            progress.stop()
    _count_serde(report, serde)
    report.encrypted = trigger_reader.encrypted - encrypted_before
    report.plaintext = trigger_reader.plaintext - plaintext_before


def _count_serde(report: ColumnReport, serde: dict[Verdict, int]) -> None:
    for verdict, n in serde.items():
        assert verdict.bridge is not None
        report.counts[verdict.format.value] += n
        report.counts[verdict.bridge.value] += n
        for name in verdict.classnames:
            report.classnames[name] += n
        if verdict.bridge is not Bridge.TRANSLATABLE and verdict.reason:
            report.reasons[verdict.reason] += n


def _count_age_and_holder(
    report: ColumnReport, row: Sequence[Any], age_at: list[int], holders_at: list[int], lookup_at: int | None
) -> None:
    for i in age_at:
        when = as_utc(row[i])
        if when is not None:
            if report.oldest_serde is None or when < report.oldest_serde:
                report.oldest_serde = when
            break
    if lookup_at is not None:
        report.holder_keys[row[lookup_at]] += 1  # named after the pass (_resolve_holders)
    elif holders_at:
        report.holders[tuple(row[i] for i in holders_at)] += 1


def _identity(row: Sequence[Any], columns: list[tuple[str, int]]) -> dict[str, Any]:
    return {c: (row[i] if isinstance(row[i], (int, str)) else str(row[i])) for c, i in columns}


def _verify_row(report: ColumnReport, verifier: Verifier, payload: Any, verdict: Verdict, identity: dict) -> None:
    check = verifier.check(report.column, payload, verdict)
    if check.outcome is Outcome.VERIFIED:
        report.verified += 1
    elif check.outcome is Outcome.UNVERIFIED:
        for name in verdict.resolver_classnames or verdict.classnames:
            report.unverified[name] += 1
    else:
        report.add_failure(identity, check.classname, check.reason)


def _resolve_holders(conn: sa.Connection, report: ColumnReport, tables: set[str], inspector: Any) -> None:
    lookup = report.column.holder_lookup
    assert lookup is not None
    keyed = report.holder_keys
    columns = table_columns(inspector, lookup.table) if lookup.table in tables else None
    if not columns or lookup.key not in columns:
        for key, n in keyed.items():
            report.holders[(f"{lookup.row_column}={key}",)] += n
        return
    names = [c for c in ("dag_id", "task_id") if c in columns]
    found: dict[Any, tuple] = {}
    keys = [k for k in keyed if k is not None]
    for start in range(0, len(keys), HOLDER_LOOKUP_CHUNK):
        chunk = keys[start : start + HOLDER_LOOKUP_CHUNK]
        stmt = sa.select(sa.column(lookup.key), *[sa.column(c) for c in names]).select_from(
            sa.table(lookup.table)
        ).where(sa.column(lookup.key).in_(chunk))
        for row in conn.execute(stmt):
            found.setdefault(_key(row[0]), tuple(row[1:]))
    for key, n in keyed.items():
        report.holders[found.get(_key(key), ("(no holder)",))] += n


def _key(value: Any) -> Any:
    # UUID columns come back as str, uuid.UUID or 32-hex text depending on dialect.
    return str(value).replace("-", "") if value is not None and not isinstance(value, int) else value
