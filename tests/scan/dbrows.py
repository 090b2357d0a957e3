"""Insert test rows into real Airflow schemas (either version) with plain SQLAlchemy Core.

Shared by the test session (Airflow 3.1.8 venv) and ``write_32_rows.py`` (Airflow 3.2.1 venv):
only SQLAlchemy here. Columns the test does not care about but the schema requires (NOT NULL
without a default) get a filler value; foreign keys are not enforced for these sessions
(SQLite's default, ``session_replication_role = replica`` on PostgreSQL), so rows need no parents.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

UTC = dt.timezone.utc


def connect(url: str) -> sa.Connection:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    conn = engine.connect()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET session_replication_role = replica")
        conn.commit()  # a session setting: it outlives this (auto-begun) transaction
    return conn


def _filler(column: sa.Column) -> Any:
    t = column.type
    name = type(t).__name__.upper()
    if "UUID" in name or (isinstance(t, sa.CHAR) and getattr(t, "length", None) == 32):
        return uuid.uuid4().hex if isinstance(t, sa.CHAR) else uuid.uuid4()
    if isinstance(t, (sa.DateTime, sa.TIMESTAMP)) or "TIMESTAMP" in name or "DATETIME" in name:
        return dt.datetime(2026, 1, 1, tzinfo=UTC)
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, (sa.Integer, sa.Float, sa.Numeric)):
        return 1
    if isinstance(t, sa.JSON) or "JSON" in name:
        return {}
    if isinstance(t, sa.LargeBinary):
        return b""
    return "x"


def insert(conn: sa.Connection, table_name: str, **values: Any) -> None:
    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    row = dict(values)
    for column in table.columns:
        if column.name in row:
            continue
        if not column.nullable and column.server_default is None and column.autoincrement is not True:
            if column.primary_key and isinstance(column.type, sa.Integer):
                continue
            row[column.name] = _filler(column)
    # JSON columns get text: the payloads are stored exactly as the writer serialized them.
    pg = conn.dialect.name == "postgresql"

    def raw(k: str, v: Any) -> Any:
        if not isinstance(v, RawJSON):
            return v
        text = sa.literal(str(v), sa.Text)
        return sa.cast(text, table.c[k].type) if pg and not isinstance(table.c[k].type, sa.Text) else text

    conn.execute(table.insert().values(**{k: raw(k, v) for k, v in row.items()}))


class RawJSON(str):
    """JSON text to store as is in a JSON column (not re-serialized by SQLAlchemy)."""
