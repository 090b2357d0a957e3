"""What a scan found (:class:`ScanReport`) and how it is shown: a text table or JSON.

Both carry counts, classnames, reasons and row identities (DAG/task/run ids, trigger ids):
never a stored value, a decrypted kwarg or a key.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from airflow_serde_compat.scan.classify import Bridge, Format
from airflow_serde_compat.scan.columns import StoredColumn

__all__ = ["ColumnReport", "ScanReport", "report_as_dict", "report_as_json", "report_as_text"]

#: Rows kept per column for the verify listing; the counts are always complete.
MAX_LISTED_FAILURES = 1000

TOP_HOLDERS = 10
TEXT_FAILURES = 50


@dataclass
class ColumnReport:
    """What the scan found in one stored column."""

    column: StoredColumn
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
    #: Rows whose holder is named by another table (trigger -> task_instance): key -> 3.2-format rows.
    holder_keys: Counter = field(default_factory=Counter)
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
    """Everything ``scan`` found; shown by :func:`report_as_text` / :func:`report_as_json`."""

    database: str
    dialect: str
    schema_revision: str | None
    schema_family: str
    started: dt.datetime
    columns: list[ColumnReport]
    verify_mode: str | None = None  # None: no --verify; "airflow-3.1" or "pure"
    verify_note: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def serde_rows(self) -> int:
        return sum(s.serde for s in self.columns)

    @property
    def undecodable_rows(self) -> int:
        return sum(s.undecodable for s in self.columns)

    @property
    def exit_code(self) -> int:
        # Undecodable rows count as "remaining": they may be 3.2 rows we could not read
        # (e.g. encrypted with a key that was not given), so removing the bridge is not proven safe.
        return 1 if self.serde_rows or self.undecodable_rows else 0


def _age(report: ScanReport, when: dt.datetime | None) -> float | None:
    return None if when is None else round((report.started - when).total_seconds(), 3)


def _human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _column_dict(report: ScanReport, s: ColumnReport) -> dict[str, Any]:
    out: dict[str, Any] = {"source": s.column.name, "present": s.present}
    if not s.present:
        out["absent_reason"] = s.absent_reason
        return out
    c = s.counts
    out.update(
        rows=s.rows,
        null=c[Format.NULL.value],
        legacy=c[Format.LEGACY.value],
        serde=c[Format.SERDE.value],
        serde_translatable=c[Bridge.TRANSLATABLE.value],
        serde_needs_patched_process=c[Bridge.NEEDS_PATCHED_PROCESS.value],
        serde_untranslatable=c[Bridge.UNTRANSLATABLE.value],
        undecodable=c[Format.UNDECODABLE.value],
    )
    if s.column.encrypted:
        out.update(plaintext=s.plaintext, encrypted=s.encrypted)
    out["oldest_serde"] = s.oldest_serde.isoformat() if s.oldest_serde else None
    out["oldest_serde_age_seconds"] = _age(report, s.oldest_serde)
    out["classnames"] = dict(s.classnames.most_common())
    out["reasons"] = dict(s.reasons.most_common())
    out["holders"] = [
        {**dict(zip(("dag_id", "task_id"), key)), "rows": n} for key, n in s.holders.most_common()
    ]
    if report.verify_mode is not None:
        out["verify"] = {
            "verified": s.verified,
            "unverified": dict(s.unverified.most_common()),
            "failures": s.failure_count,
            "failed_rows": s.failures,
            "failed_rows_truncated": s.failure_count > len(s.failures),
        }
    return out


def report_as_dict(report: ScanReport) -> dict[str, Any]:
    return {
        "database": report.database,
        "dialect": report.dialect,
        "schema_revision": report.schema_revision,
        "schema": report.schema_family,
        "scanned_at": report.started.isoformat(),
        "serde_rows": report.serde_rows,
        "undecodable_rows": report.undecodable_rows,
        "exit_code": report.exit_code,
        "verify_mode": report.verify_mode,
        "verify_note": report.verify_note,
        "warnings": report.warnings,
        "sources": [_column_dict(report, s) for s in report.columns],
    }


def report_as_json(report: ScanReport) -> str:
    return json.dumps(report_as_dict(report), indent=2, default=str)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def report_as_text(report: ScanReport) -> str:
    out = [
        f"database: {report.database}  (schema {report.schema_family}, revision {report.schema_revision or '?'})",
        *(f"warning: {w}" for w in report.warnings),
        "",
    ]
    headers = ["source", "rows", "legacy", "3.2", "translatable", "patched-only", "untranslatable", "undecodable", "oldest 3.2"]
    rows = []
    for s in report.columns:
        if not s.present:
            rows.append([s.column.name, "absent", "", "", "", "", "", "", s.absent_reason or ""])
            continue
        c = s.counts
        rows.append(
            [
                s.column.name,
                str(s.rows),
                str(c[Format.LEGACY.value]),
                str(c[Format.SERDE.value]),
                str(c[Bridge.TRANSLATABLE.value]),
                str(c[Bridge.NEEDS_PATCHED_PROCESS.value]),
                str(c[Bridge.UNTRANSLATABLE.value]),
                str(c[Format.UNDECODABLE.value]),
                _human_age(_age(report, s.oldest_serde)),
            ]
        )
    out += _table(headers, rows)
    for s in report.columns:
        if not s.present or not (s.serde or s.undecodable or s.encrypted):
            continue
        out += ["", f"{s.column.name}:"]
        if s.column.encrypted:
            out.append(f"  plaintext rows: {s.plaintext}, Fernet-encrypted rows: {s.encrypted}")
        if s.classnames:
            out.append("  3.2 kinds: " + ", ".join(f"{k} ({n})" for k, n in s.classnames.most_common(12)))
        for reason, n in s.reasons.most_common(8):
            out.append(f"  {n} row(s): {reason}")
        if s.holders:
            shown = ", ".join(f"{'.'.join(str(p) for p in key)} ({n})" for key, n in s.holders.most_common(TOP_HOLDERS))
            more = len(s.holders) - TOP_HOLDERS
            out.append(f"  held by: {shown}" + (f", and {more} more" if more > 0 else ""))
    if report.verify_mode is not None:
        out += ["", f"verify: {report.verify_note}"]
        failures = sum(s.failure_count for s in report.columns)
        out.append(f"  rows that would still fail: {failures}")
        listed = 0
        for s in report.columns:
            for f in s.failures:
                if listed >= TEXT_FAILURES:
                    break
                ident = " ".join(f"{k}={v}" for k, v in f["row"].items())
                out.append(f"  {s.column.name} [{ident}] {f['classname'] or '-'}: {f['reason']}")
                listed += 1
        if failures > listed:
            out.append(f"  ... {failures - listed} more (use --output json)")
        for s in report.columns:
            for name, n in s.unverified.most_common():
                out.append(f"  not verifiable here: {s.column.name} {name} ({n} row(s))")
    out.append("")
    if report.exit_code == 0:
        out.append("No row is in the Airflow 3.2 format: the bridge is no longer needed for this database.")
    else:
        out.append(
            f"{report.serde_rows} row(s) in the Airflow 3.2 format and {report.undecodable_rows} undecodable: "
            "keep AIRFLOW_SERDE_COMPAT=1."
        )
    return "\n".join(out) + "\n"
