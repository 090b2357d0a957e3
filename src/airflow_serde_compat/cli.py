"""The ``airflow-serde-compat`` command: ``scan`` (which rows still need the bridge) and ``doctor``.

Exit codes: 0 nothing in the 3.2 format (the bridge can be removed), 1 rows remain, 2 error
(one line on stderr; the traceback only with ``--debug``). Airflow is imported only when
needed: for its configuration when neither a flag nor the environment gives the connection or
the Fernet key, and for ``scan --verify`` in an Airflow 3.1 environment.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import traceback
from typing import Any, Callable, Sequence

from airflow_serde_compat._errors import OperatorError, first_line, one_line

__all__ = ["main"]

PROG = "airflow-serde-compat"
EXIT_CLEAN, EXIT_ROWS_REMAIN, EXIT_ERROR = 0, 1, 2
CONN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
FERNET_ENV = "AIRFLOW__CORE__FERNET_KEY"


class CliError(OperatorError):
    """Shown as one line on stderr, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Lets Apache Airflow 3.1 read rows written by Airflow 3.2+ after a rollback."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scan = sub.add_parser(
        "scan",
        help="count the metadata rows still in the Airflow 3.2 format",
        description=(
            "Count, per affected table/column, the rows 3.1.8 reads natively (legacy), the rows in the "
            "Airflow 3.2 format that need the bridge, and undecodable rows. Exit 0: none in the 3.2 "
            "format; 1: rows remain; 2: error. Read-only."
        ),
    )
    scan.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    scan.add_argument(
        "--sql-alchemy-conn",
        metavar="URL",
        help=f"database URL (default: ${CONN_ENV}, else Airflow's [database] sql_alchemy_conn)",
    )
    scan.add_argument(
        "--fernet-key",
        metavar="KEYS",
        help=(
            f"comma-separated Fernet keys, newest first (default: ${FERNET_ENV}, else Airflow's "
            "[core] fernet_key); an empty value means plaintext only. Write --fernet-key=KEYS: "
            "a key may start with '-'"
        ),
    )
    scan.add_argument("--verify", action="store_true", help="decode every 3.2-format row as the bridge will")
    scan.add_argument("--output", choices=("table", "json"), default="table", help="output format")
    scan.add_argument("--batch-size", type=int, default=2000, metavar="N", help="rows per fetch (default 2000)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    rewrite = sub.add_parser(
        "rewrite",
        help="rewrite the 3.2-format rows into what Airflow 3.1 writes (dry run unless --apply)",
        description=(
            "Rewrite every row scan counts as 3.2 format into exactly what the installed Airflow 3.1 "
            "writes for the same value, so the bridge can be removed. Dry run by default (writes "
            "nothing). Exit 0: nothing left in the 3.2 format; 1: rows would change or are left; 2: error. "
            "Needs Airflow 3.1 installed next to it, on the downgraded database, with every scheduler, "
            "triggerer and dag-processor stopped."
        ),
    )
    _connection_arguments(rewrite)
    rewrite.add_argument("--apply", action="store_true", help="write the changes (after backing them up)")
    rewrite.add_argument(
        "--backup", metavar="FILE",
        help="JSON-lines file for the original rows (default: airflow-serde-compat-backup-<UTC time>.jsonl; "
        "a rerun after a crash appends to the same file)",
    )
    rewrite.add_argument("--only", metavar="COLUMN", action="append",
                         help="only this stored column (table.column as scan names it), or task_instance.id for "
                         "the task-instance ids Airflow's downgrade mangled on MariaDB; repeatable")
    rewrite.add_argument(
        "--xcom-uuid", choices=("keep", "str"), default="keep",
        help="uuid.UUID XCom values have no 3.1 encoding: keep them (the bridge stays needed) or store "
        "the UUID's text (default: keep)",
    )
    rewrite.add_argument("--force", action="store_true", help="run although components' heartbeats are recent")
    rewrite.add_argument("--batch-size", type=int, default=500, metavar="N", help="rows per transaction (default 500)")
    rewrite.add_argument(
        "--no-conversion-process", dest="conversion_process", action="store_false",
        help="convert in this process only (by default, with --apply on PostgreSQL or MySQL and two CPUs, "
        "a forked child converts up to two batches ahead)",
    )
    restore = sub.add_parser(
        "restore",
        help="put back every row a rewrite backup file holds, byte-identical",
        description=(
            "Put back the original stored values from a `rewrite --apply` backup file. A row that changed "
            "since the rewrite (a component ran) is left alone and reported. Exit 0: all restored; 1: some "
            "left; 2: error."
        ),
    )
    restore.add_argument("file", metavar="FILE", help="the backup file rewrite --apply wrote")
    _connection_arguments(restore, fernet=False)
    restore.add_argument("--force", action="store_true", help="run although components' heartbeats are recent")
    doctor = sub.add_parser("doctor", help="show how the bridge is set up in this environment")
    doctor.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _connection_arguments(parser: argparse.ArgumentParser, *, fernet: bool = True) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sql-alchemy-conn", metavar="URL",
        help=f"database URL (default: ${CONN_ENV}, else Airflow's [database] sql_alchemy_conn)",
    )
    if fernet:
        parser.add_argument(
            "--fernet-key", metavar="KEYS",
            help=(f"comma-separated Fernet keys, newest first (default: ${FERNET_ENV}, else Airflow's "
                  "[core] fernet_key); the first one encrypts the rewritten trigger kwargs, as in Airflow"),
        )
    parser.add_argument("--output", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # alembic >= 1.17 logs six "setup plugin" lines at INFO when Airflow's models import it: noise in an
    # operator's terminal, next to the one line that matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "scan":
            return _scan(args)
        if args.command == "rewrite":
            return _rewrite(args)
        if args.command == "restore":
            return _restore(args)
        return _doctor()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # noqa: BLE001 - the one place errors become exit code 2
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


# --- configuration ---------------------------------------------------------------------------


@contextlib.contextmanager
def _airflow_quiet() -> Any:
    # Whatever Airflow prints while importing must not end up in our stdout (--output json).
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _airflow_conf() -> Any:
    try:
        with _airflow_quiet():
            from airflow.configuration import conf
    except ImportError:
        return None
    return conf


def _database_url(flag: str | None) -> str:
    if flag:
        return flag
    if os.environ.get(CONN_ENV):
        return os.environ[CONN_ENV]
    conf = _airflow_conf()
    if conf is None:
        raise CliError(f"no database given: pass --sql-alchemy-conn or set {CONN_ENV} (Airflow is not importable)")
    with _airflow_quiet():
        return conf.get("database", "sql_alchemy_conn")


def _fernet_text(flag: str | None) -> str:
    if flag is not None:
        return flag
    if FERNET_ENV in os.environ:
        return os.environ[FERNET_ENV]
    conf = _airflow_conf()
    if conf is None:
        return ""
    with _airflow_quiet():
        return conf.get("core", "fernet_key", fallback="") or ""


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        # Do not echo it: it may hold a password.
        raise CliError("the database URL is not a valid SQLAlchemy URL (dialect://user@host/db)") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database.startswith("file:") and parsed.query.get("uri") in ("true", "1"):
            # An SQLite URI (e.g. file:...?mode=ro / immutable=1 for a read-only copy): its path is
            # the part before '?', and sqlite itself reports a missing file.
            database = database[len("file:"):].split("?", 1)[0]
        if not database or database == ":memory:" or not os.path.exists(database):
            raise CliError(f"no SQLite database file at {database or '(empty path)'!r}")
    try:
        # Pooled: rewrite and restore open a connection per batch (short transactions), and a
        # new PostgreSQL connection costs 4 ms, a tenth of a batch's own time.
        return sa.create_engine(parsed, pool_size=2, max_overflow=4)
    except sa.exc.NoSuchModuleError:
        raise CliError(f"no SQLAlchemy dialect for {parsed.drivername!r}") from None
    except ImportError as err:
        raise CliError(f"the database driver for {parsed.drivername!r} is not installed ({err.name or err})") from None


# --- scan ------------------------------------------------------------------------------------


class _RichProgress:
    """One bar per source on stderr (rich ships with Airflow 3.1 and 3.2).

    Redrawn by the thread that advances it, never by rich's refresh thread: ``rewrite`` forks its
    conversion child, and a thread caught writing to the terminal at the fork would leave the
    child a lock on stderr that nobody releases (its first log line would hang it)."""

    #: Seconds between redraws, as rich's own refresh (10 a second).
    EVERY = 0.1

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            auto_refresh=False,
            # rewrite starts the bar inside _airflow_quiet's redirect of stdout, and stops it after:
            # rich would put back the redirected stdout, and the report would go to stderr.
            redirect_stdout=False,
        )
        self._task: Any = None
        self._drawn = 0.0

    def start(self, name: str, total: int | None) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(name, total=total)
        self._redraw(force=True)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)
        self._redraw()

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= self.EVERY:
            self._drawn = now
            self._progress.refresh()

    def stop(self) -> None:
        pass

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()


def _progress(args: argparse.Namespace) -> Any:
    if args.no_progress or not sys.stderr.isatty():
        return None
    try:
        return _RichProgress()
    except ImportError:
        return None


def _scan(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from airflow_serde_compat.scan import ScanError, scan_database
    from airflow_serde_compat.scan.classify import fernet_keys_from_text
    from airflow_serde_compat.scan.report import report_as_json, report_as_text

    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    url = _database_url(args.sql_alchemy_conn)
    keys = fernet_keys_from_text(_fernet_text(args.fernet_key))
    engine = _engine(url)
    verifier = None
    if args.verify:
        from airflow_serde_compat.scan.verify import verifier_for_installed_airflow

        with _airflow_quiet():
            verifier = verifier_for_installed_airflow()
    try:
        report = _with_progress(args, engine, lambda progress: scan_database(
            engine, fernet_keys=keys, verifier=verifier, progress=progress, batch=args.batch_size))
    except sa.exc.DBAPIError as err:
        raise ScanError(f"cannot read {engine.url.render_as_string(hide_password=True)}: {first_line(getattr(err, 'orig', err))}") from err
    return _printed(args, report, report_as_json, report_as_text)


def _with_progress(args: argparse.Namespace, engine: Any, run: Callable[[Any], Any]) -> Any:
    """``run(progress)``; the progress display closed and the engine disposed however it ends."""
    progress = _progress(args)
    try:
        return run(progress)
    finally:
        if progress is not None:
            progress.close()
        engine.dispose()


def _printed(args: argparse.Namespace, result: Any, as_json: Callable[[Any], str], as_text: Callable[[Any], str]) -> int:
    sys.stdout.write(as_json(result) + "\n" if args.output == "json" else as_text(result))
    sys.stdout.flush()
    return result.exit_code


# --- rewrite / restore -----------------------------------------------------------------------


def _require_airflow_31() -> None:
    from airflow_serde_compat._bootstrap import airflow_core_version, supported

    version = airflow_core_version()
    if version is None or not supported(version):
        found = f"apache-airflow-core {version} is installed" if version else "Airflow is not installed"
        raise CliError(
            f"rewrite needs the Airflow 3.1.x the database was rolled back to, next to it ({found}): "
            "run it in the 3.1 image, where the bridge is installed"
        )


def _rewrite(args: argparse.Namespace) -> int:
    import datetime as dt

    from airflow_serde_compat.rewrite.database import rewrite_database
    from airflow_serde_compat.rewrite.report import rewrite_as_json, rewrite_as_text
    from airflow_serde_compat.rewrite.writers import Airflow31Writer
    from airflow_serde_compat.scan.classify import fernet_keys_from_text
    from airflow_serde_compat.scan.columns import COLUMNS

    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    from airflow_serde_compat.rewrite.database import TASK_INSTANCE_IDS

    known = {c.name for c in COLUMNS} | {TASK_INSTANCE_IDS}
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        raise CliError(f"--only: no stored column {', '.join(unknown)} (one of: {', '.join(sorted(known))})")
    _require_airflow_31()
    url = _database_url(args.sql_alchemy_conn)
    keys = fernet_keys_from_text(_fernet_text(args.fernet_key))
    backup = args.backup
    if args.apply and not backup:
        backup = f"airflow-serde-compat-backup-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.jsonl"
    engine = _engine(url)
    with _airflow_quiet():
        try:
            writer = Airflow31Writer(keys, xcom_uuid=args.xcom_uuid)
        except ValueError as err:
            raise CliError(str(err)) from None

    def run(progress: Any) -> Any:
        with _airflow_quiet():
            return rewrite_database(engine, writer=writer, fernet_keys=keys, apply=args.apply, backup_path=backup,
                                    force=args.force, only=args.only, progress=progress, batch=args.batch_size,
                                    processes=args.conversion_process)

    return _printed(args, _with_progress(args, engine, run), rewrite_as_json, rewrite_as_text)


def _restore(args: argparse.Namespace) -> int:
    from airflow_serde_compat.rewrite.database import restore_backup
    from airflow_serde_compat.rewrite.report import restore_as_json, restore_as_text

    url = _database_url(args.sql_alchemy_conn)
    engine = _engine(url)
    result = _with_progress(args, engine, lambda progress: restore_backup(engine, args.file, force=args.force,
                                                                           progress=progress))
    return _printed(args, result, restore_as_json, restore_as_text)


# --- doctor ----------------------------------------------------------------------------------


def _pth_locations() -> list[str]:
    import site

    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [os.path.join(d, "airflow_serde_compat.pth") for d in dict.fromkeys(dirs) if os.path.exists(os.path.join(d, "airflow_serde_compat.pth"))]


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _doctor() -> int:
    import platform

    from airflow_serde_compat import _bootstrap
    from airflow_serde_compat._settings import ENV_VAR, Mode, mode_from_value

    raw = os.environ.get(ENV_VAR)
    mode, warning = mode_from_value(raw)
    with _airflow_quiet():
        _bootstrap.activate_from_env()
        wrapped = None
        if _bootstrap.is_active():
            import importlib

            from airflow_serde_compat.patch import BASE_SERIALIZATION

            # Importing the serializer fires the post-import hook: proves the patch lands.
            wrapped = BASE_SERIALIZATION.is_applied(importlib.import_module(BASE_SERIALIZATION.module))
        # Active means patched: switched on but not wrapped is reported as not active.
        active = _bootstrap.is_active() and bool(wrapped)
    pths = _pth_locations()
    lines = [
        f"mode: {mode.value} ({ENV_VAR}={raw!r})" if raw is not None else f"mode: off ({ENV_VAR} is not set)",
        *([f"warning: {warning}"] if warning else []),
        f"python: {platform.python_version()} ({sys.executable})",
        f"apache-airflow-core: {_bootstrap.airflow_core_version() or 'not installed'}",
        f"wrapt: {_version('wrapt')}",
        f"airflow-serde-compat: {_version('airflow-serde-compat')}",
        f"bridge active in this process: {'yes' if active else 'no'}"
        + (" (switched on, but BaseSerialization.deserialize is not wrapped)" if wrapped is False else ""),
        f".pth: {', '.join(pths) if pths else 'not found in the site directories of this interpreter'}",
    ]
    print("\n".join(lines))
    # Asked for but not in place: a deployment check must not pass on a half-activated bridge.
    return EXIT_ERROR if mode is not Mode.OFF and not active else EXIT_CLEAN
