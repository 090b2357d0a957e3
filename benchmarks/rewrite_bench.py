#!/usr/bin/env python3
"""Benchmark ``airflow-serde-compat rewrite --apply`` on 1 M 3.2-format rows in PostgreSQL.

    ~/.cache/airflow-serde-compat/v318t/bin/python benchmarks/rewrite_bench.py [--tis 1000000]
        [--triggers 100000] [--runs 3] [--side-by-side]

1. Builds ``serde_compat_rwbench_<pid>`` on 127.0.0.1:5432 with the real Airflow 3.1.8 schema
   (``airflow db migrate``): ``task_instance`` filled server-side, every ``next_kwargs`` in the 3.2
   format (datetime, timedelta, tuple, a number: what a real deferral holds), and ``trigger`` with
   Fernet-encrypted 3.2 kwargs. This is the template; each run rewrites a fresh copy of it
   (``CREATE DATABASE ... TEMPLATE``), as an operator's one run would.
2. Runs ``rewrite --apply --backup FILE`` as a child process (the installed 3.1.8 in this
   interpreter, the package from ``src/``); wall time, rows rewritten per second and the child's
   peak RSS (``VmHWM``, polled, its conversion child's added); then checks with ``scan`` that
   nothing is left. Prints medians. ``--side-by-side``: each run also rewrites a copy converting
   in one process (``--no-conversion-process``), in alternating order, and prints the ratio.
   Goal (issue 12): >= 20,000 rows/s and < 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_bench import ADMIN, SERDE, admin, measured_child, migrated_cursor, sql_text  # noqa: E402


def build(url: str, tis: int, triggers: int, key: str) -> None:
    from cryptography.fernet import Fernet

    conn, cur = migrated_cursor(url)
    t0 = time.monotonic()
    cur.execute(
        f"""
        INSERT INTO task_instance (id, dag_id, task_id, run_id, map_index, pool, pool_slots, span_status,
                                   start_date, next_kwargs)
        SELECT gen_random_uuid(), 'bench_dag_' || (i % 50), 'task_' || (i % 200), 'run_' || i, -1,
               'default_pool', 1, 'not_started', now() - (i || ' seconds')::interval, ({sql_text(SERDE)})::json
        FROM generate_series(1, {int(tis)}) AS i
        """
    )
    fernet = Fernet(key.encode())
    buf = io.StringIO()
    payload = ('{"moment": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": '
               '{"timestamp": 2051218800.0, "tz": null}}, "end_from_trigger": false, "n": %d}')
    for i in range(1, triggers + 1):
        token = fernet.encrypt((payload % i).encode()).decode()
        buf.write(f"{i}\tairflow.triggers.temporal.DateTimeTrigger\t{token}\t2026-01-01 00:00:00+00\n")
    buf.seek(0)
    cur.copy_expert("COPY trigger (id, classpath, kwargs, created_date) FROM STDIN", buf)
    conn.commit()
    cur.execute("ANALYZE task_instance; ANALYZE trigger")
    conn.commit()
    conn.close()
    print(f"filled {tis:,} task instances and {triggers:,} triggers in {time.monotonic() - t0:.1f}s", flush=True)


def run(cmd: list[str]) -> tuple[float, float, int, dict, float, float]:
    child = measured_child(cmd)
    if child.code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[2:4])} failed ({child.code}): {child.stderr.strip()[-2000:]}")
    return child.wall, child.peak_mb, child.code, json.loads(child.stdout or "{}"), child.cpu, child.peak_pss_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tis", type=int, default=1_000_000)
    parser.add_argument("--triggers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--side-by-side", action="store_true",
                        help="each run also rewrites a copy with --no-conversion-process; prints the ratio")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    template = f"serde_compat_rwbench_{os.getpid()}"
    admin(f"CREATE DATABASE {template}")
    copies: list[str] = []
    try:
        build(ADMIN.rsplit("/", 1)[0] + f"/{template}", args.tis, args.triggers, key)
        modes = [True, False] if args.side_by_side else [True]
        results: dict[bool, list] = {m: [] for m in modes}
        ratios = []
        for n in range(args.runs):
            walls = {}
            # Side by side: the order alternates, so that neither mode always runs on a warmer machine.
            for in_child in (modes if n % 2 == 0 else modes[::-1]):
                name = f"{template}_run{n}_{int(in_child)}"
                copies.append(name)
                admin(f"CREATE DATABASE {name} TEMPLATE {template}")
                url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
                with tempfile.TemporaryDirectory() as tmp:
                    backup = Path(tmp) / "backup.jsonl"
                    wall, rss, code, report, cpu, pss = run(
                        [sys.executable, "-m", "airflow_serde_compat", "rewrite", "--apply", "--backup", str(backup),
                         "--sql-alchemy-conn", url, f"--fernet-key={key}", "--output", "json", "--no-progress",
                         *([] if in_child else ["--no-conversion-process"])])
                    backup_mb = backup.stat().st_size / 2**20
                rewritten = sum(c.get("rewritten", 0) for c in report["columns"])
                read = sum(c.get("rows", 0) for c in report["columns"])
                _, _, scan_code, scanned, _, _ = run(
                    [sys.executable, "-m", "airflow_serde_compat", "scan", "--sql-alchemy-conn", url,
                     f"--fernet-key={key}", "--output", "json", "--no-progress"])
                left = sum(s.get("serde", 0) for s in scanned["sources"] if s.get("present"))
                results[in_child].append((wall, rewritten, rss, cpu))
                walls[in_child] = wall
                print(f"run {n + 1} ({'conversion child' if in_child else 'one process'}): {rewritten:,} rows "
                      f"rewritten ({read:,} read) in {wall:.1f}s = {rewritten / wall:,.0f} rows/s "
                      f"({rewritten / cpu:,.0f} per CPU-second of the rewriter and its child), peak RSS {rss:.0f} MB "
                      f"(with the conversion child's: shared pages counted twice; PSS {pss:.0f} MB), backup {backup_mb:.0f} MB, exit {code}; scan after: exit "
                      f"{scan_code}, {left} left in the 3.2 format; load average {os.getloadavg()[0]:.1f}", flush=True)
                admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            if args.side_by_side:
                ratios.append(walls[False] / walls[True])
                print(f"run {n + 1}: one process / conversion child = {ratios[-1]:.2f}x", flush=True)
        for mode, rows in results.items():
            rate = statistics.median(r[1] / r[0] for r in rows)
            rss = statistics.median(r[2] for r in rows)
            label = "conversion child" if mode else "one process"
            print(f"median of {len(rows)} ({label}): {rate:,.0f} rows/s, peak RSS {rss:.0f} MB "
                  f"(goal >= 20,000 rows/s and < 300 MB: {'met' if rate >= 20_000 and rss < 300 else 'NOT met'})")
        if ratios:
            print(f"median ratio, one process / conversion child: {statistics.median(ratios):.2f}x")
    finally:
        for name in [*copies, template]:
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
