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
                "column": c.name,
                "present": c.present,
                **({"absent_reason": c.absent_reason} if not c.present else {}),
                "rows": c.rows,
                ("rewritten" if result.applied else "would_rewrite"): c.rewritten,
                "left": c.left,
                "changed_meanwhile": c.changed_meanwhile,
                "reasons": dict(c.reasons.most_common()),
                # every row up to LISTED_ROWS per list (the backup file lists every changed row)
                ("rewritten_rows" if result.applied else "would_rewrite_rows"): c.rewritten_rows,
                "left_rows": [{"row": ident, "reason": reason} for ident, reason in c.left_rows],
                "changed_rows": c.changed_rows,
                "rows_truncated": (c.rewritten > len(c.rewritten_rows) or c.left > len(c.left_rows)
                                   or c.changed_meanwhile > len(c.changed_rows)),
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
            lines.append(f"\n{c.name}: skipped ({c.absent_reason})")
            continue
        lines.append(f"\n{c.name}: {c.rows} rows read, {c.rewritten} {verb}, "
                     f"{c.left} left in the 3.2 format"
                     + (f", {c.changed_meanwhile} changed while running (rerun)" if c.changed_meanwhile else ""))
        for ident in c.rewritten_rows[:SHOWN_ROWS]:
            lines.append(f"  {verb}: {_ident(ident)}")
        if c.rewritten > SHOWN_ROWS:
            lines.append(f"  ... and {c.rewritten - SHOWN_ROWS} more (--output json lists them)")
        for ident, reason in c.left_rows[:SHOWN_ROWS]:
            lines.append(f"  left: {_ident(ident)}: {reason}")
        if c.left > SHOWN_ROWS:
            lines.append(f"  ... and {c.left - SHOWN_ROWS} more left (--output json lists them)")
        for ident in c.changed_rows[:SHOWN_ROWS]:
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
