"""How a :class:`~airflow_serde_compat.scan.ScanReport` is shown: a text table or JSON.

Both carry counts, classnames, reasons and row identities (DAG/task/run ids, trigger ids):
never a stored value, a decrypted kwarg or a key.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow_serde_compat.scan import ScanReport, SourceReport
from airflow_serde_compat.scan_classify import Bridge, Format

__all__ = ["report_as_dict", "report_as_json", "report_as_text"]

TOP_HOLDERS = 10
TEXT_FAILURES = 50


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


def _source_dict(report: ScanReport, s: SourceReport) -> dict[str, Any]:
    out: dict[str, Any] = {"source": s.source.name, "present": s.present}
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
    if s.source.kind == "trigger_kwargs":
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
        "sources": [_source_dict(report, s) for s in report.sources],
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
    for s in report.sources:
        if not s.present:
            rows.append([s.source.name, "absent", "", "", "", "", "", "", s.absent_reason or ""])
            continue
        c = s.counts
        rows.append(
            [
                s.source.name,
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
    for s in report.sources:
        if not s.present or not (s.serde or s.undecodable or s.encrypted):
            continue
        out += ["", f"{s.source.name}:"]
        if s.source.kind == "trigger_kwargs":
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
        failures = sum(s.failure_count for s in report.sources)
        out.append(f"  rows that would still fail: {failures}")
        listed = 0
        for s in report.sources:
            for f in s.failures:
                if listed >= TEXT_FAILURES:
                    break
                ident = " ".join(f"{k}={v}" for k, v in f["row"].items())
                out.append(f"  {s.source.name} [{ident}] {f['classname'] or '-'}: {f['reason']}")
                listed += 1
        if failures > listed:
            out.append(f"  ... {failures - listed} more (use --output json)")
        for s in report.sources:
            for name, n in s.unverified.most_common():
                out.append(f"  not verifiable here: {s.source.name} {name} ({n} row(s))")
    out.append("")
    if report.exit_code == 0:
        out.append("No row is in the Airflow 3.2 format: the bridge is no longer needed for this database.")
    else:
        out.append(
            f"{report.serde_rows} row(s) in the Airflow 3.2 format and {report.undecodable_rows} undecodable: "
            "keep AIRFLOW_SERDE_COMPAT=1."
        )
    return "\n".join(out) + "\n"
