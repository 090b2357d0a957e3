"""``airflow-serde-compat scan``: which metadata rows are still in the Airflow 3.2 format.

Reads every affected table/column in batches over a server-side cursor (never a whole
table in memory), classifies each value with :mod:`airflow_serde_compat.scan_classify`,
and aggregates counts, the oldest 3.2-format row and the DAGs/tasks holding them. Works on
a downgraded 3.1 schema and, as a preflight, on a 3.2 schema; tables or columns that the
schema does not have are reported as absent. Read-only: nothing is ever written.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa

from airflow_serde_compat.scan_classify import (
    NULL,
    Bridge,
    Format,
    TriggerKwargsReader,
    Verdict,
    deadline_alert_verdict,
    deadline_callback_verdict,
    kwargs_verdict,
    loads_json,
    serialized_dag_payload,
    serialized_dag_verdict,
    undecodable,
    xcom_verdict,
)

__all__ = ["SOURCES", "ScanError", "ScanReport", "Source", "SourceReport", "scan_database"]

BATCH_ROWS = 2000
#: Rows kept per source for the verify listing; the counts are always complete.
MAX_LISTED_FAILURES = 1000
HOLDER_LOOKUP_CHUNK = 500


class ScanError(RuntimeError):
    """A problem the operator must fix (connection, key, wrong database): one line, no trace."""


@dataclass(frozen=True)
class HolderLookup:
    """Where the DAG/task of a row lives when the row itself does not name them."""

    table: str
    key: str  # column of ``table`` matched against ``row_column``
    row_column: str


@dataclass(frozen=True)
class Source:
    name: str
    table: str
    column: str
    #: "kwargs" | "trigger_kwargs" | "deadline_callback" | "deadline_alert" | "serialized_dag" | "xcom"
    kind: str
    identity: tuple[str, ...]
    #: First non-NULL one is the row's age.
    timestamps: tuple[str, ...] = ()
    holder_columns: tuple[str, ...] = ("dag_id", "task_id")
    holder_lookup: HolderLookup | None = None
    extra_columns: tuple[str, ...] = ()
    note: str = ""


_TI_KEY = ("dag_id", "task_id", "run_id", "map_index")

SOURCES: tuple[Source, ...] = (
    Source(
        "task_instance.next_kwargs", "task_instance", "next_kwargs", "kwargs",
        identity=_TI_KEY, timestamps=("start_date", "queued_dttm", "updated_at"),
    ),
    Source(
        "task_instance_history.next_kwargs", "task_instance_history", "next_kwargs", "kwargs",
        identity=(*_TI_KEY, "try_number"), timestamps=("start_date", "queued_dttm", "updated_at"),
    ),
    Source(
        "trigger.kwargs", "trigger", "kwargs", "trigger_kwargs",
        identity=("id", "classpath"), timestamps=("created_date",), holder_columns=(),
        holder_lookup=HolderLookup("task_instance", "trigger_id", "id"),
    ),
    Source(
        "deadline.callback", "deadline", "callback", "deadline_callback",
        identity=("id",), timestamps=("created_at", "last_updated_at"), holder_columns=(),
        holder_lookup=HolderLookup("dag_run", "id", "dagrun_id"),
        note="recreated by the 3.2 -> 3.1.8 downgrade; absent on 3.2 schemas",
    ),
    Source(
        "deadline_alert.callback_def", "deadline_alert", "callback_def", "deadline_alert",
        identity=("id",), timestamps=("created_at",), holder_columns=(),
        holder_lookup=HolderLookup("serialized_dag", "id", "serialized_dag_id"),
        note="3.2 schemas only: the downgrade copies it into serialized_dag.data",
    ),
    Source(
        "serialized_dag.data", "serialized_dag", "data", "serialized_dag",
        identity=("dag_id", "id"), timestamps=("last_updated", "created_at"), holder_columns=("dag_id",),
        extra_columns=("data_compressed",),
    ),
    Source(
        "xcom.value", "xcom", "value", "xcom",
        identity=(*_TI_KEY, "key"), timestamps=("timestamp",),
    ),
)


@dataclass
class SourceReport:
    source: Source
    present: bool = True
    absent_reason: str | None = None
    rows: int = 0
    counts: Counter = field(default_factory=Counter)  # Format and Bridge values -> rows
    plaintext: int = 0
    encrypted: int = 0
    classnames: Counter = field(default_factory=Counter)  # rows in 3.2 format per kind
    reasons: Counter = field(default_factory=Counter)  # untranslatable/undecodable reasons
    oldest_serde: dt.datetime | None = None
    holders: Counter = field(default_factory=Counter)  # (dag_id, task_id) -> 3.2-format rows
    verified: int = 0
    unverified: Counter = field(default_factory=Counter)  # classname -> rows not verifiable here
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_count: int = 0

    @property
    def serde(self) -> int:
        return self.counts[Format.SERDE.value]

    @property
    def undecodable(self) -> int:
        return self.counts[Format.UNDECODABLE.value]

    def add_failure(self, identity: dict[str, Any], classname: str | None, reason: str) -> None:
        self.failure_count += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"row": identity, "classname": classname, "reason": reason})


@dataclass
class ScanReport:
    database: str
    dialect: str
    schema_revision: str | None
    schema_family: str
    started: dt.datetime
    sources: list[SourceReport]
    verify_mode: str | None = None  # None: no --verify; "airflow-3.1" or "pure"
    verify_note: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def serde_rows(self) -> int:
        return sum(s.serde for s in self.sources)

    @property
    def undecodable_rows(self) -> int:
        return sum(s.undecodable for s in self.sources)

    @property
    def exit_code(self) -> int:
        # Undecodable rows count as "remaining": they may be 3.2 rows we could not read
        # (e.g. encrypted with a key that was not given), so removing the bridge is not proven safe.
        return 1 if self.serde_rows or self.undecodable_rows else 0


#: Called per scanned row with the source and the row's parsed payload (for --verify).
RowVerifier = Callable[[Source, Any, Verdict], "tuple[str | None, str] | None | str"]


# --- schema inspection -----------------------------------------------------------------------


def _columns(inspector: Any, table: str) -> set[str] | None:
    try:
        if not inspector.has_table(table):
            return None
        return {c["name"].lower() for c in inspector.get_columns(table)}
    except sa.exc.NoSuchTableError:
        return None


def _schema_revision(conn: sa.Connection, tables: set[str]) -> str | None:
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
    # A server-side cursor (psycopg2 named cursor, MySQL SSCursor): at most one batch in memory.
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
    try:
        yield from result.partitions()
    finally:
        result.close()


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    # Airflow stores UTC; SQLite hands back naive text.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _verdict(source: Source, row: Any, trigger_reader: TriggerKwargsReader | None) -> tuple[Verdict, Any]:
    """Verdict and parsed payload (None unless parsed) for one row."""
    value = row[source.column]
    kind = source.kind
    if kind == "serialized_dag":
        text, failed = serialized_dag_payload(value, row.get("data_compressed"))
        if failed is not None:
            return failed, None
        return serialized_dag_verdict(text), text
    if kind == "xcom":
        return xcom_verdict(value), value
    if value is None:
        return NULL, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
    if kind == "trigger_kwargs":
        assert trigger_reader is not None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        value, failed = trigger_reader.text(value)
        if failed is not None:
            return failed, None
    try:
        payload = loads_json(value)
        if kind == "deadline_callback" and isinstance(payload, str) and payload[:1] == "{":
            payload = loads_json(payload)  # SQLite/MySQL downgrade wrote JSON text into JSON
    except (ValueError, TypeError, UnicodeDecodeError):
        return undecodable("not valid JSON"), None
    except RecursionError:
        return undecodable(TOO_DEEP), None
    if kind == "deadline_callback":
        return deadline_callback_verdict(payload), payload
    if kind == "deadline_alert":
        return deadline_alert_verdict(payload), payload
    return kwargs_verdict(payload, enum_keys=kind == "trigger_kwargs"), payload


#: One row nested deeper than a JSON reader follows is that row's problem, not the scan's.
TOO_DEEP = "nested deeper than Airflow's JSON readers follow"



def scan_database(
    engine: sa.Engine,
    *,
    fernet_keys: Sequence[str] = (),
    verifier: Any = None,
    progress: Any = None,
    batch: int = BATCH_ROWS,
    sources: Iterable[Source] = SOURCES,
    now: dt.datetime | None = None,
) -> ScanReport:
    """Scan every source; raise :class:`ScanError` for problems the operator must fix.

    ``verifier`` (``--verify``) is called for every 3.2-format row: ``verifier.check(source,
    payload, verdict)`` returns None when the bridge decodes it, ``("unverified", classname)``
    when it cannot tell here, or ``(classname, reason)`` for a failure.
    ``progress`` gets ``start(name, total)``, ``advance(n)`` and ``stop()``.
    """
    try:
        trigger_reader = TriggerKwargsReader(fernet_keys)
    except ValueError as err:
        raise ScanError(str(err)) from None
    started = now or dt.datetime.now(dt.timezone.utc)
    reports: list[SourceReport] = []
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # The scan never writes; make sure of it where the server can enforce it.
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        scanned = [s for s in sources if s.table in tables]
        if not scanned:
            raise ScanError(
                f"{_safe_url(engine.url)} has none of the tables to scan "
                f"({', '.join(sorted({s.table for s in sources}))}): is it the Airflow metadata database?"
            )
        revision = _schema_revision(conn, tables)
        warnings = _revision_warnings(revision)
        family = "3.2+ (not downgraded yet)" if "deadline_alert" in tables else "3.1"
        for source in sources:
            report = SourceReport(source)
            reports.append(report)
            columns = _columns(inspector, source.table) if source.table in tables else None
            if columns is None:
                report.present, report.absent_reason = False, f"no table {source.table}"
                continue
            if source.column not in columns:
                report.present, report.absent_reason = False, f"no column {source.table}.{source.column}"
                continue
            _scan_source(conn, report, columns, trigger_reader, verifier, progress, batch, started)
            if source.holder_lookup is not None and report.holders:
                _resolve_holders(conn, report, tables, inspector)
        if trigger_reader.encrypted and not trigger_reader.decrypted:
            given = "no Fernet key was given" if not trigger_reader.has_keys else "the given Fernet key(s) decrypt none"
            raise ScanError(
                f"trigger.kwargs has {trigger_reader.encrypted} Fernet-encrypted row(s) and {given} of them "
                "(check --fernet-key / AIRFLOW__CORE__FERNET_KEY / [core] fernet_key)"
            )
        conn.rollback()
    return ScanReport(
        database=_safe_url(engine.url),
        dialect=engine.dialect.name,
        schema_revision=revision,
        schema_family=family,
        started=started,
        sources=reports,
        verify_mode=getattr(verifier, "mode", None),
        verify_note=getattr(verifier, "note", None),
        warnings=warnings,
    )


def _revision_warnings(revision: str | None) -> list[str]:
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


def _safe_url(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _scan_source(
    conn: sa.Connection,
    report: SourceReport,
    columns: set[str],
    trigger_reader: TriggerKwargsReader,
    verifier: Any,
    progress: Any,
    batch: int,
    now: dt.datetime,
) -> None:
    source = report.source
    dialect = conn.dialect.name
    identity = [c for c in source.identity if c in columns]
    timestamps = [c for c in source.timestamps if c in columns]
    holders = [c for c in source.holder_columns if c in columns]
    lookup = source.holder_lookup
    lookup_col = lookup.row_column if lookup is not None and lookup.row_column in columns else None
    extra = [c for c in source.extra_columns if c in columns]
    wanted = list(dict.fromkeys([*identity, *timestamps, *holders, *([lookup_col] if lookup_col else [])]))
    stmt = sa.select(
        _payload_column(dialect, source.column),
        *[sa.column(c) for c in extra],
        *[sa.column(c) for c in wanted],
    ).select_from(sa.table(source.table))
    if progress is not None:
        total = conn.execute(sa.select(sa.func.count()).select_from(sa.table(source.table))).scalar()
        progress.start(source.name, total)
    encrypted_before = trigger_reader.encrypted
    plaintext_before = trigger_reader.plaintext
    counts = report.counts
    legacy_format, null_format, undecodable_format = Format.LEGACY, Format.NULL, Format.UNDECODABLE
    try:
        for rows in _partitions(conn, stmt, batch):
            # Legacy and NULL rows (most of them, long after the rollback) cost two identity
            # checks here; everything else is rare enough for the slow path.
            legacy = nulls = 0
            for row in rows:
                mapping = row._mapping
                try:
                    verdict, payload = _verdict(source, mapping, trigger_reader)
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
                        report.add_failure(_identity(mapping, identity), None, verdict.reason or "undecodable")
                    continue
                counts[fmt.value] += 1
                _count_serde(report, verdict, mapping, timestamps, holders, lookup_col)
                if verifier is not None:
                    _verify_row(report, verifier, source, payload, verdict, _identity(mapping, identity))
            counts[legacy_format.value] += legacy
            counts[null_format.value] += nulls
            report.rows += len(rows)
            if progress is not None:
                progress.advance(len(rows))
    except sa.exc.DBAPIError as err:
        raise ScanError(f"reading {source.table}.{source.column} failed: {_first_line(err.orig)}") from err
    finally:
        if progress is not None:
            progress.stop()
    report.encrypted = trigger_reader.encrypted - encrypted_before
    report.plaintext = trigger_reader.plaintext - plaintext_before


def _count_serde(
    report: SourceReport,
    verdict: Verdict,
    mapping: Any,
    timestamps: list[str],
    holders: list[str],
    lookup_col: str | None,
) -> None:
    assert verdict.bridge is not None
    report.counts[verdict.bridge.value] += 1
    for name in verdict.classnames:
        report.classnames[name] += 1
    if verdict.bridge is not Bridge.TRANSLATABLE and verdict.reason:
        report.reasons[verdict.reason] += 1
    for column in timestamps:
        when = _as_utc(mapping[column])
        if when is not None:
            if report.oldest_serde is None or when < report.oldest_serde:
                report.oldest_serde = when
            break
    if lookup_col is not None:
        # Resolved to DAG/task names after the pass (_resolve_holders).
        report.holders[("?", mapping[lookup_col])] += 1
    elif holders:
        report.holders[tuple(mapping[c] for c in holders)] += 1


def _identity(mapping: Any, columns: list[str]) -> dict[str, Any]:
    return {c: (str(mapping[c]) if not isinstance(mapping[c], (int, str)) else mapping[c]) for c in columns}


def _verify_row(report: SourceReport, verifier: Any, source: Source, payload: Any, verdict: Verdict, identity: dict) -> None:
    outcome = verifier.check(source, payload, verdict)
    if outcome is None:
        report.verified += 1
        return
    classname, reason = outcome
    if classname == "unverified":
        for name in verdict.resolver_classnames or verdict.classnames:
            report.unverified[name] += 1
        return
    report.add_failure(identity, classname, reason)


def _resolve_holders(conn: sa.Connection, report: SourceReport, tables: set[str], inspector: Any) -> None:
    lookup = report.source.holder_lookup
    assert lookup is not None
    keyed = report.holders
    report.holders = Counter()
    columns = _columns(inspector, lookup.table) if lookup.table in tables else None
    if not columns or lookup.key not in columns:
        for (_, key), n in keyed.items():
            report.holders[(f"{lookup.row_column}={key}",)] += n
        return
    names = [c for c in ("dag_id", "task_id") if c in columns]
    found: dict[Any, tuple] = {}
    keys = [k for (_, k) in keyed if k is not None]
    for start in range(0, len(keys), HOLDER_LOOKUP_CHUNK):
        chunk = keys[start : start + HOLDER_LOOKUP_CHUNK]
        stmt = sa.select(sa.column(lookup.key), *[sa.column(c) for c in names]).select_from(
            sa.table(lookup.table)
        ).where(sa.column(lookup.key).in_(chunk))
        for row in conn.execute(stmt):
            found.setdefault(_key(row[0]), tuple(row[1:]))
    for (_, key), n in keyed.items():
        report.holders[found.get(_key(key), ("(no holder)",))] += n


def _key(value: Any) -> Any:
    # UUID columns come back as str, uuid.UUID or 32-hex text depending on dialect.
    return str(value).replace("-", "") if value is not None and not isinstance(value, int) else value


def _first_line(err: Any) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def count_rows(engine: sa.Engine) -> dict[str, int]:  # pragma: no cover - used by the benchmark
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        return {
            s.table: conn.execute(sa.select(sa.func.count()).select_from(sa.table(s.table))).scalar()
            for s in SOURCES
            if s.table in tables
        }
