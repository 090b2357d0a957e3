"""What ``rewrite`` and ``restore`` did or would do: row identities and counts, never values."""

from __future__ import annotations

import json
from typing import Any

from airflow_serde_compat.rewrite.database import RestoreResult, RewriteResult

__all__ = ["restore_as_json", "restore_as_text", "rewrite_as_json", "rewrite_as_text"]

#: Rows listed per column in the text output; the JSON output lists all of them.
SHOWN_ROWS = 20


def _ident(ident: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in ident.items())


def rewrite_as_json(result: RewriteResult) -> str:
    return json.dumps({
        "database": result.database,
        "dialect": result.dialect,
        "applied": result.applied,
        "backup": result.backup,
        "remaining": result.remaining,
        "warnings": result.warnings,
        "forced_past": result.forced_past,
        "columns": [
            {
                "column": c.column.name,
                "present": c.present,
                **({"absent_reason": c.absent_reason} if not c.present else {}),
                "rows": c.rows,
                ("rewritten" if result.applied else "would_rewrite"): c.rewritten,
                "left": [{"row": ident, "reason": reason} for ident, reason in c.left],
                "changed_meanwhile": c.changed_meanwhile,
            }
            for c in result.columns
        ],
    }, default=str)


def rewrite_as_text(result: RewriteResult) -> str:
    verb = "rewritten" if result.applied else "would be rewritten"
    lines = [f"airflow-serde-compat rewrite ({'applied' if result.applied else 'dry run: nothing written'})",
             f"database: {result.database}"]
    if result.backup:
        lines.append(f"backup: {result.backup}")
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [f"ran although a component looked alive (--force): {a}" for a in result.forced_past]
    for c in result.columns:
        if not c.present:
            lines.append(f"\n{c.column.name}: skipped ({c.absent_reason})")
            continue
        lines.append(f"\n{c.column.name}: {c.rows} rows read, {len(c.rewritten)} {verb}, "
                     f"{len(c.left)} left in the 3.2 format"
                     + (f", {len(c.changed_meanwhile)} changed while running (rerun)" if c.changed_meanwhile else ""))
        for ident in c.rewritten[:SHOWN_ROWS]:
            lines.append(f"  {verb}: {_ident(ident)}")
        if len(c.rewritten) > SHOWN_ROWS:
            lines.append(f"  ... and {len(c.rewritten) - SHOWN_ROWS} more (--output json lists every row)")
        for ident, reason in c.left[:SHOWN_ROWS]:
            lines.append(f"  left: {_ident(ident)}: {reason}")
        if len(c.left) > SHOWN_ROWS:
            lines.append(f"  ... and {len(c.left) - SHOWN_ROWS} more left (--output json lists every row)")
        for ident in c.changed_meanwhile[:SHOWN_ROWS]:
            lines.append(f"  changed while running, not rewritten: {_ident(ident)}")
    lines.append("")
    if result.remaining == 0:
        lines.append("Nothing is left in the 3.2 format: `airflow-serde-compat scan` to confirm, then the "
                     "bridge can be removed.")
    elif not result.applied:
        lines.append(f"{result.remaining} row(s) in the 3.2 format. `rewrite --apply` rewrites what can be "
                     "rewritten; keep AIRFLOW_SERDE_COMPAT=1 while rows are left.")
    else:
        lines.append(f"{result.remaining} row(s) are still in the 3.2 format (listed above): keep "
                     "AIRFLOW_SERDE_COMPAT=1 for them.")
    return "\n".join(lines) + "\n"


def restore_as_json(result: RestoreResult) -> str:
    return json.dumps({
        "database": result.database,
        "restored": dict(result.restored),
        "skipped": [{"column": col, "row": key, "reason": why} for col, key, why in result.skipped],
    }, default=str)


def restore_as_text(result: RestoreResult) -> str:
    lines = [f"airflow-serde-compat restore: {result.database}"]
    for column, n in sorted(result.restored.items()):
        lines.append(f"  {column}: {n} row(s) restored")
    for column, key, why in result.skipped[:SHOWN_ROWS]:
        lines.append(f"  not restored: {column} {_ident(key)}: {why}")
    if len(result.skipped) > SHOWN_ROWS:
        lines.append(f"  ... and {len(result.skipped) - SHOWN_ROWS} more not restored (--output json lists all)")
    if not result.restored and not result.skipped:
        lines.append("  the backup file holds no rows")
    return "\n".join(lines) + "\n"
