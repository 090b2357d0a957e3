"""Task-instance ids that Airflow's downgrade of migration ``f8c9d7e6b5a4`` mangled on MariaDB.

How they get mangled (reproduced on MariaDB 10.11, see tests/scan/test_task_instance_ids.py): with
SQLAlchemy >= 2.1, ``sa.Uuid()`` is MariaDB's native ``UUID`` type on a server >= 10.7 (SQLAlchemy
2.0 renders ``CHAR(32)``). Airflow 3.2.x declares the six columns below ``sa.Uuid()``, so a 3.2 schema
made on such a setup holds them as ``UUID``, which MariaDB returns and converts as 36-character dashed
text. The downgrade (``0104_3_2_0_fix_uuid_column_types.py``) first turns the column back into
``VARCHAR(36)`` (the dashed text), then inserts dashes at fixed offsets of what it takes for a 32-hex
id: ``CONCAT(SUBSTR(c,1,8),'-',SUBSTR(c,9,4),'-',SUBSTR(c,13,4),'-',SUBSTR(c,17,4),'-',SUBSTR(c,21,12))``.
Applied to ``01a212a6-1da1-7d78-b881-d0818e21xxxx`` that gives ``01a212a6--1da-1-7d-78-b-881-d0818e21``:
eight dashes, the last four hex digits gone. Airflow 3.1.8 cannot parse it (``TaskInstance.id`` is a
pydantic UUID in the workload it sends to a worker): its scheduler exits.

The lost digits cannot be recovered from the database: no other column holds the ids. :func:`repaired`
keeps the 28 surviving hex digits in place (so the UUIDv7 timestamp, version and variant survive) and
derives the last four from them (SHA-256), so the same mangled id becomes the same valid UUID in every
column that holds it: foreign keys stay consistent.

Pure part: :func:`is_mangled`, :func:`repaired`, :data:`ID_COLUMNS`. Database part (a SQLAlchemy
``Connection`` whose transaction the caller owns): :func:`find_mangled`, :func:`apply`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from airflow_serde_compat._errors import OperatorError

__all__ = [
    "ID_COLUMNS",
    "Change",
    "IdCollision",
    "IdRepairError",
    "apply",
    "find_mangled",
    "is_mangled",
    "mangle",
    "repaired",
]

#: (table, column) of every id the migration rewrote, as in its own list (3.1.8 schema: all
#: ``VARCHAR(36)``; ``hitl_detail_history`` exists only in 3.2, the downgrade drops it).
ID_COLUMNS: tuple[tuple[str, str], ...] = (
    ("task_instance", "id"),
    ("task_instance_note", "ti_id"),
    ("task_reschedule", "ti_id"),
    ("hitl_detail", "ti_id"),
    ("task_instance_history", "task_instance_id"),
    ("hitl_detail_history", "ti_history_id"),
)

#: The key column whose values each id column holds (its foreign key, or itself for a key).
KEY_OF: dict[tuple[str, str], tuple[str, str]] = {
    ("task_instance", "id"): ("task_instance", "id"),
    ("task_instance_note", "ti_id"): ("task_instance", "id"),
    ("task_reschedule", "ti_id"): ("task_instance", "id"),
    ("hitl_detail", "ti_id"): ("task_instance", "id"),
    ("task_instance_history", "task_instance_id"): ("task_instance_history", "task_instance_id"),
    ("hitl_detail_history", "ti_history_id"): ("task_instance_history", "task_instance_id"),
}

_H = "[0-9a-f]"
# The migration's formula on a dashed id h[0:8]-h[8:12]-h[12:16]-h[16:20]-h[20:32]: exactly this shape,
# lowercase as str(uuid.UUID) and MariaDB's UUID type write it. No valid UUID text has it.
_MANGLED = re.compile(
    rf"({_H}{{8}})--({_H}{{3}})-({_H})-({_H}{{2}})-({_H}{{2}})-({_H})-({_H}{{3}})-({_H}{{8}})"
)
#: A cheap SQL pre-filter (the exact check is :func:`is_mangled`): dashes at offsets 9 and 10.
_LIKE = "________--%"


class IdRepairError(OperatorError):
    """The repair cannot go on safely; nothing was changed by the failing step."""


class IdCollision(IdRepairError):
    """A repaired id would clash with an id already in use."""


class Change(NamedTuple):
    """One mangled value in one column (every row holding ``old`` there gets ``new``)."""

    table: str
    column: str
    old: str
    new: str


def mangle(dashed: str) -> str:
    """What the downgrade's MySQL/SQLite branch writes for ``dashed`` (its SUBSTR offsets, in Python).

    For documentation and tests: the tests check it against the migration's own SQL.
    """
    c = dashed
    return f"{c[0:8]}-{c[8:12]}-{c[12:16]}-{c[16:20]}-{c[20:32]}"


def is_mangled(value: object) -> bool:
    """True for exactly the shape the downgrade leaves on an already dashed id."""
    return isinstance(value, str) and _MANGLED.fullmatch(value) is not None


def surviving_hex(value: str) -> str:
    """The 28 hex digits a mangled id kept, in their original order."""
    m = _MANGLED.fullmatch(value)
    if m is None:
        raise ValueError("not a task-instance id mangled by migration f8c9d7e6b5a4's downgrade")
    return "".join(m.groups())


def repaired(value: str) -> str:
    """A valid UUID (dashed, as 3.1.8 stores it) for a mangled id: same input, same output.

    The 28 surviving digits stay where they were; the lost last four are the first four hex digits of
    SHA-256 over the surviving ones (namespaced, so the choice is documented and stable).
    """
    kept = surviving_hex(value)
    lost = hashlib.sha256(f"airflow-serde-compat:f8c9d7e6b5a4:{kept}".encode()).hexdigest()[:4]
    return str(uuid.UUID(kept + lost))


# ----------------------------------------------------------------------------------------------------------
# database
# ----------------------------------------------------------------------------------------------------------
def _present(conn: Any) -> list[tuple[str, str]]:
    import sqlalchemy as sa

    insp = sa.inspect(conn)
    tables = set(insp.get_table_names())
    out = []
    for table, column in ID_COLUMNS:
        if table not in tables:
            continue
        types = {c["name"]: c["type"] for c in insp.get_columns(table)}
        # Text columns only: a native UUID column (PostgreSQL) cannot hold a mangled id.
        if column in types and isinstance(types[column], sa.String):
            out.append((table, column))
    return out


def _col(table: str, column: str) -> tuple[Any, Any]:
    import sqlalchemy as sa

    t = sa.table(table, sa.column(column, sa.String))
    return t, t.c[column]


def _chunks(values: Sequence[str], n: int = 500) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), n):
        yield values[i:i + n]


def _existing(conn: Any, table: str, column: str, values: Sequence[str]) -> set[str]:
    import sqlalchemy as sa

    t, c = _col(table, column)
    found: set[str] = set()
    for chunk in _chunks(sorted(set(values))):
        found.update(str(v) for v in conn.execute(sa.select(c).where(c.in_(chunk)).distinct()).scalars())
    return found


def _mangled_values(conn: Any, table: str, column: str) -> list[str]:
    import sqlalchemy as sa

    t, c = _col(table, column)
    rows = conn.execute(sa.select(c).where(c.like(_LIKE)).distinct()).scalars()
    return sorted(v for v in rows if is_mangled(v))


def check_collisions(conn: Any, changes: Sequence[Change]) -> None:
    """Raise :class:`IdCollision` if two mangled ids map to one new id, or a new id is already in use.

    "In use": present, unmangled, in the column it goes to or in the key column it refers to (the
    repaired TI would take over another TI's note, reschedules, HITL rows, or its primary key).
    """
    present = set(_present(conn))
    problems: list[str] = []
    by_new: dict[tuple[tuple[str, str], str], set[str]] = {}
    for ch in changes:
        by_new.setdefault((KEY_OF[(ch.table, ch.column)], ch.new), set()).add(ch.old)
    for (key, new), olds in sorted(by_new.items()):
        if len(olds) > 1:
            problems.append(f"{sorted(olds)} would all become {new} (ids of {key[0]}.{key[1]})")
    targets: dict[tuple[str, str], list[str]] = {}
    for ch in changes:
        targets.setdefault((ch.table, ch.column), []).append(ch.new)
        key = KEY_OF[(ch.table, ch.column)]
        if key != (ch.table, ch.column) and key in present:
            targets.setdefault(key, []).append(ch.new)
    for (table, column), news in sorted(targets.items()):
        if (table, column) not in present:
            continue
        for hit in sorted(_existing(conn, table, column, news)):
            problems.append(f"{hit} is already in {table}.{column}")
    if problems:
        raise IdCollision(
            "repairing the mangled task-instance ids would collide, nothing was changed: " + "; ".join(problems)
        )


def find_mangled(conn: Any) -> list[Change]:
    """Every distinct mangled id in :data:`ID_COLUMNS` (tables or columns missing are skipped).

    Raises :class:`IdCollision` (see :func:`check_collisions`) rather than return a mapping that
    would merge two task instances.
    """
    changes = [
        Change(table, column, old, repaired(old))
        for table, column in _present(conn)
        for old in _mangled_values(conn, table, column)
    ]
    check_collisions(conn, changes)
    return changes


class _FK(NamedTuple):
    child: tuple[str, str]
    parent: tuple[str, str]
    onupdate: str


def _foreign_keys(conn: Any, present: set[tuple[str, str]]) -> list[_FK]:
    """The single-column foreign keys among the id columns, with their ON UPDATE rule (reflected)."""
    import sqlalchemy as sa

    insp = sa.inspect(conn)
    out = []
    for table in sorted({t for t, _ in present}):
        for fk in insp.get_foreign_keys(table):
            if len(fk["constrained_columns"]) != 1:
                continue
            child = (table, fk["constrained_columns"][0])
            parent = (fk["referred_table"], fk["referred_columns"][0])
            if child in present and parent in present:
                rule = ((fk.get("options") or {}).get("onupdate") or "NO ACTION").upper()
                out.append(_FK(child, parent, rule))
    return out


def apply(conn: Any, changes: Sequence[Change], *, restoring: bool = False) -> int:
    """UPDATE every change inside the caller's transaction; returns the rows its UPDATEs matched
    (rows a cascade changed are not counted).

    Key columns first (``task_instance.id``, ``task_instance_history.task_instance_id``), then the
    columns that refer to them, each ``WHERE column = old``. Children whose foreign key is
    ``ON UPDATE CASCADE`` follow their parent by themselves; a child whose key does not cascade
    (``task_reschedule_ti_fkey`` in 3.1.8) would block the parent's update, so only then, and only
    if such a child row holds a mangled id:

    * MariaDB/MySQL: ``FOREIGN_KEY_CHECKS = 0`` for this session while updating (no cascades then:
      every column is updated explicitly), set back to its previous value afterwards;
    * SQLite: ``PRAGMA defer_foreign_keys = ON`` (checked at commit; SQLite resets it then).

    Afterwards no mangled value may remain and every repaired child must find its parent, else
    :class:`IdRepairError` (the caller rolls back).
    """
    import sqlalchemy as sa

    if not changes:
        return 0
    check_collisions(conn, changes)
    present = set(_present(conn))
    fks = _foreign_keys(conn, present)
    changed = {(c.table, c.column) for c in changes}
    blocking = [fk for fk in fks if fk.onupdate != "CASCADE" and fk.parent in changed and fk.child in changed]
    dialect = conn.dialect.name
    restore: str | None = None
    if blocking:
        if dialect == "mysql":
            restore = str(conn.exec_driver_sql("SELECT @@SESSION.foreign_key_checks").scalar())
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
        elif dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    keys = {KEY_OF[k] for k in KEY_OF}
    ordered = sorted(changes, key=lambda c: ((c.table, c.column) not in keys, c.table, c.column, c.old))
    rows = 0
    try:
        for ch in ordered:
            t, c = _col(ch.table, ch.column)
            rows += conn.execute(sa.update(t).where(c == ch.old).values({ch.column: ch.new})).rowcount or 0
    finally:
        if restore is not None:
            conn.exec_driver_sql(f"SET SESSION foreign_key_checks = {int(restore)}")
    # ``restoring``: ``restore`` puts the mangled originals back on purpose.
    left = [] if restoring else [(t, c) for t, c in sorted(changed) if _mangled_values(conn, t, c)]
    if left:
        raise IdRepairError(f"mangled task-instance ids are left in {left} after the repair")
    for fk in fks:
        news = [ch.new for ch in changes if (ch.table, ch.column) == fk.child]
        olds_in_parent = {ch.old for ch in changes if (ch.table, ch.column) == fk.parent}
        expected = [ch.new for ch in changes if (ch.table, ch.column) == fk.child and ch.old in olds_in_parent]
        if not news or not expected:
            continue
        missing = set(expected) - _existing(conn, fk.parent[0], fk.parent[1], expected)
        if missing:
            raise IdRepairError(
                f"{fk.child[0]}.{fk.child[1]} would refer to ids missing from {fk.parent[0]}.{fk.parent[1]}: "
                f"{sorted(missing)}"
            )
    return rows
