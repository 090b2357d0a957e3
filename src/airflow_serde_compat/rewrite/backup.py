"""The backup file of ``rewrite --apply``: every changed row's original stored values, JSON lines.

Line 1 is a header naming the database; each further line is one row::

    {"column": "trigger.kwargs", "table": "trigger", "key": {"id": 7},
     "before": {"kwargs": "gAAAA..."}, "after": {"kwargs": "<sha256 of the new value>"}}

``key`` names the row as it is *after* the rewrite (for a repaired id, the new id); ``before``
holds the stored values byte for byte (bytes as ``{"base64": ...}``; trigger kwargs as encrypted
as they were); ``after`` holds fingerprints of what was written, so ``restore`` only puts a row
back while it still holds what ``rewrite`` wrote. Lines are appended and fsynced before the
batch they describe is committed: after a crash the file lists at least every committed change.
The file is created 0600: it holds 3.2.1's plaintext trigger kwargs where 3.2.1 stored them so.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any, Iterator, Mapping

try:
    from orjson import OPT_SORT_KEYS as _SORT_KEYS
    from orjson import dumps as _fast_dumps
except ImportError:  # an image where the package went in with --no-deps: json does it all
    _fast_dumps, _SORT_KEYS = None, 0

from airflow_serde_compat._errors import OperatorError

__all__ = [
    "BACKUP_FORMAT",
    "BackupError",
    "BackupFile",
    "Canonical",
    "Record",
    "canonical_number",
    "canonical_value",
    "fingerprint",
    "fingerprint_of_dumped",
    "line_of",
    "read_backup",
]

BACKUP_FORMAT = "airflow-serde-compat-backup/1"


class BackupError(OperatorError):
    pass


@dataclass(frozen=True)
class Record:
    column: str
    table: str
    key: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, str | None]


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value: Any) -> Any:
    if value.__class__ is dict and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def fingerprint(value: Any, *, json_text: bool) -> str | None:
    """What a stored value is, independent of how the database spells it.

    JSON columns are compared as parsed JSON with sorted keys: PostgreSQL's JSONB hands back its
    own spelling of the text that was written."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif json_text:
        if value.__class__ in (int, float):
            value = json.dumps(value)  # SQLite's numeric affinity: a JSON number comes back as one
        try:
            raw = _canonical_json(value)
        except (ValueError, TypeError, RecursionError, ArithmeticError):
            # Not JSON (SQLite lets a JSON column hold anything), or too deep: what a row holds now
            # may be anything a component wrote since; it is compared as the text it is.
            raw = b"not json:" + str(value).encode("utf-8", "surrogatepass")
    else:
        raw = str(value).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()


#: normalize() without rounding: the default context would round to 28 digits.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _number(text: str) -> str:
    # A number by its value, not its spelling: PostgreSQL's JSONB (numeric) and MySQL respell what
    # Python wrote (1.2345678901234568e+16 comes back as 12345678901234568, 1e-07 as 0.0000001).
    # Most numbers are their own normal form already: no exponent, no trailing zero, and no
    # leading "0." (0.0000001 normalizes to 1E-7); Decimal decides the rest.
    if text[-1] != "0" and "e" not in text and "E" not in text and not text.startswith(("0.", "-0.")):
        return "\x00n" + text
    return _normalized(text)


@functools.lru_cache(maxsize=4096)
def _normalized(text: str) -> str:
    # Exact for integers of any size (orjson would read one beyond 64 bits as a float).
    return "\x00n" + str(Decimal(text).normalize(_EXACT))


def _constant(text: str) -> str:
    return "\x00c" + text  # NaN, Infinity, -Infinity


def _canonical_json(text: Any) -> bytes:
    """Parsed JSON, keys sorted, every number by its value (json's C scanner, with hooks)."""
    return _sorted_compact(json.loads(text, parse_float=_number, parse_int=_number, parse_constant=_constant))


def _sorted_compact(canonical: Any) -> bytes:
    """``json.dumps(canonical, sort_keys=True, separators=(",", ":"))`` as UTF-8: the bytes a
    fingerprint hashes, which backups written by earlier versions hold.

    For a canonical value (numbers already spelled as strings) orjson writes the same bytes
    whenever they are printable ASCII throughout; json escapes everything else (DEL included),
    orjson writes it raw or refuses it (a lone surrogate, 255 levels deep). Only then does json
    write it: 13x slower, 7 % of the rewrite's CPU."""
    if _ORJSON_AGREES:
        try:
            raw = _fast_dumps(canonical, option=_SORT_KEYS)
        except TypeError:  # orjson.JSONEncodeError
            raw = b"\x80"
        if raw.isascii() and b"\x7f" not in raw:
            return raw
    return json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode("utf-8")


def canonical_value(value: Any) -> Any:
    cls = value.__class__
    if cls is dict:
        # Leaves are handled in the loop, not by a call each: most nodes of a row are leaves.
        out = {}
        for k, v in value.items():
            c = v.__class__
            out[k] = (v if c is str or c is bool or v is None else canonical_number(v) if c is int or c is float
                      else canonical_value(v))
        return out
    if cls is list:
        return [v if v.__class__ is str or v.__class__ is bool or v is None
                else canonical_number(v) if v.__class__ is int or v.__class__ is float
                else canonical_value(v) for v in value]
    if cls is str or cls is bool or value is None:
        return value
    if cls is int or cls is float:
        return canonical_number(value)
    raise TypeError(cls.__name__)


def canonical_number(value: float) -> str:
    # repr is how json.dumps spelled it, so this is _number of the text's own spelling
    if value - value != 0:
        raise ValueError("NaN or infinity")
    text = repr(value)
    if text[-2:] == ".0" and text[-3] != "0":
        return "\x00n" + text[:-2]  # a whole float: its digits, which end in no zero (see _number)
    return _number(text)


def _orjson_agrees() -> bool:
    """The installed orjson writes json's bytes for printable ASCII (every release checked so
    far): else it is not used for fingerprints."""
    sample = {"b": ["".join(map(chr, range(0x7f))), True, None], "a": {"\x00n1.5": False}, "": []}
    try:
        return _fast_dumps(sample, option=_SORT_KEYS) == json.dumps(
            sample, sort_keys=True, separators=(",", ":")).encode("utf-8")
    except Exception:  # noqa: BLE001 - any surprise: json writes every fingerprint
        return False


_ORJSON_AGREES = _fast_dumps is not None and _orjson_agrees()


@dataclass(frozen=True)
class Canonical:
    """A parse in the form a fingerprint hashes (:func:`canonical_value`'s), made by whoever built
    the value (:func:`~airflow_serde_compat.rewrite.stored_by_31.stored_and_canonical`), so that
    it is not walked again."""

    value: Any


def fingerprint_of_dumped(text: str, parsed: Any) -> str | None:
    """``fingerprint(text, json_text=True)`` for a text ``json.dumps`` wrote, given its parse
    (orjson's, which equals json's when not
    :func:`~airflow_serde_compat.scan.classify.has_19_digits`), or its :class:`Canonical`
    form: without parsing it again."""
    try:
        raw = _sorted_compact(parsed.value if parsed.__class__ is Canonical else canonical_value(parsed))
    except (ValueError, TypeError, RecursionError):
        return fingerprint(text, json_text=True)
    return hashlib.sha256(raw).hexdigest()


def line_of(record: Record) -> str:
    """The backup file's line for one record, newline included."""
    line = {"column": record.column, "table": record.table, "key": {k: _encode(v) for k, v in record.key.items()},
            "before": {k: _encode(v) for k, v in record.before.items()}, "after": record.after}
    try:
        if _fast_dumps is None:
            raise TypeError
        return _fast_dumps(line).decode("utf-8") + "\n"
    except TypeError:  # what orjson refuses (a lone surrogate, an integer beyond 64 bits)
        return json.dumps(line) + "\n"


class BackupFile:
    """Append-only, fsynced per batch; a rerun after a crash appends to the same file."""

    def __init__(self, path: str, database: str, dialect: str):
        self.path = path
        try:
            # O_NONBLOCK: a FIFO given as the file must not hang the open; it is refused below.
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
        except OSError as err:
            raise BackupError(f"cannot open the backup file {path!r}: {err.strerror}") from None
        try:
            _prepare(fd, path)
            self._file = os.fdopen(fd, "a+", encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
        try:
            self._file.seek(0)
            first = self._file.readline()
            if first:
                header = _header(first, path)
                if header.get("database") != database:
                    raise BackupError(
                        f"{path!r} is the backup of {header.get('database')!r}, not of {database!r}: "
                        "give another --backup file"
                    )
            # Ours (a backup of this database, or empty): only now is anything about it changed.
            _make_private_and_whole(fd)
            if not first:
                header = {"format": BACKUP_FORMAT, "database": database, "dialect": dialect,
                          "created": dt.datetime.now(dt.timezone.utc).isoformat()}
                self._file.write(json.dumps(header) + "\n")
                self.sync()
        except BaseException:
            self._file.close()
            raise
        self.records = 0

    def write(self, record: Record) -> None:
        self.write_lines([line_of(record)])

    def write_lines(self, lines: list[str]) -> None:
        """Lines made by :func:`line_of` (where they were made: another process may make them)."""
        self._file.write("".join(lines))
        self.records += len(lines)

    def fileno(self) -> int:
        return self._file.fileno()

    def sync(self) -> None:
        self.flush()
        self.fsync()

    def flush(self) -> None:
        """Hand the lines written so far to the OS; :meth:`fsync` then makes them durable."""
        self._file.flush()

    def fsync(self) -> None:
        """Durable: every line :meth:`flush` handed over. Only touches the descriptor, so it may run
        in another thread while this one writes the next lines (they may be made durable too:
        lines of a batch that is then never committed are what a kill before a commit leaves)."""
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self.sync()
        self._file.close()


def _prepare(fd: int, path: str) -> None:
    """A regular file of ours, one writer at a time (two processes appending buffered lines to one
    file interleave them mid-line: an exclusive lock, held until the file is closed)."""
    import fcntl
    import stat

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise BackupError(f"{path!r} is not a regular file: give a file path for --backup")
    if st.st_uid != os.geteuid():
        raise BackupError(f"{path!r} belongs to another user: give another --backup file")
    os.set_blocking(fd, True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise BackupError(f"{path!r} is in use by another rewrite: wait for it, or give another --backup file") from None


def _make_private_and_whole(fd: int) -> None:
    """For a file known to be a backup of this database (or empty):

    * it holds 3.2.1's plaintext trigger kwargs: a file that already existed (touched, made with
      umask 022) is made 0600 before a row goes in;
    * a torn last line (killed while a batch's lines were being written: the buffer is flushed at
      8 KiB, not at line ends) belongs to a batch that was never committed, as the lines are
      fsynced before the commit: it is cut off, or the rerun's first line would be glued to it and
      restore would refuse the whole file.
    """
    st = os.fstat(fd)
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    size = st.st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        end = size  # the last line end, read backwards in blocks (a million rows make a large file)
        while end > 0:
            start = max(0, end - 65536)
            at = os.pread(fd, end - start, start).rfind(b"\n")
            if at >= 0:
                os.ftruncate(fd, start + at + 1)
                break
            end = start


def _header(line: str, path: str) -> Mapping[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if header.__class__ is not dict or header.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{path!r} is not an airflow-serde-compat backup file (no {BACKUP_FORMAT} header)")
    return header


def read_backup(path: str) -> tuple[Mapping[str, Any], Iterator[Record]]:
    """The header and the records; a torn last line (a crash mid-write) is skipped, as its
    batch was never committed."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as err:
        raise BackupError(f"cannot read the backup file {path!r}: {err.strerror}") from None
    header = _header(f.readline(), path)

    def records() -> Iterator[Record]:
        with f:
            for number, line in enumerate(f, start=2):
                if not line.endswith("\n"):
                    return
                try:
                    doc = json.loads(line)
                    yield Record(doc["column"], doc["table"], {k: _decode(v) for k, v in doc["key"].items()},
                                 {k: _decode(v) for k, v in doc["before"].items()}, dict(doc["after"]))
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise BackupError(f"{path!r} line {number} is not a backup record") from None

    return header, records()
