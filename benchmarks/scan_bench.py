#!/usr/bin/env python3
"""Benchmark ``airflow-serde-compat scan`` on a large synthetic PostgreSQL database.

    ~/.cache/airflow-serde-compat/v318t/bin/python benchmarks/scan_bench.py [--tis 1000000]
        [--triggers 100000] [--runs 3] [--keep]

1. Creates ``serde_compat_bench_<pid>`` on 127.0.0.1:5432 (user postgres, trust auth) with the
   real Airflow 3.1.8 schema (``airflow db migrate`` from ``tools/venvs.sh 318``).
2. Fills ``task_instance`` server-side with ``generate_series`` (next_kwargs: 55% legacy,
   35% 3.2 serde, 5% NULL, 5% malformed serde that
   the bridge refuses) and ``trigger`` with Fernet-encrypted kwargs
   (half under a rotated-out key) through ``COPY``.
3. Runs the scan as a child process ``--runs`` times; wall time, rows/s and the child's peak
   RSS (``VmHWM`` of /proc/PID/status, polled) per run; prints the medians. Goals: >= 50,000 rows/s and
   < 300 MB (0.1.0); >= 150,000 rows/s at the same peak RSS (issue 14).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

LEGACY = '{"__var": {"when": {"__var": 1893456000.0, "__type": "datetime"}, "t": {"__var": [1, 2], "__type": "tuple"}, "n": %s}, "__type": "dict"}'
SERDE = (
    '{"when": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": {"timestamp": 1904296089.0, '
    '"tz": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": ["UTC", "pendulum.tz.timezone.Timezone", 1, true]}}}, '
    '"d": {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": 180.0}, '
    '"t": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}, "n": %s}'
)
UNDECODABLE = '{"x": {"__classname__": "builtins.tuple", "__data__": [%s]}}'


def sql_text(template: str) -> str:
    # the row number goes where %s is, so no two rows are byte-identical
    return "'" + template.replace("'", "''").replace("%s", "' || i || '") + "'"


def admin(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def migrated_cursor(url: str):  # type: ignore[no-untyped-def]
    """The real Airflow 3.1.8 schema (`airflow db migrate`) at `url`, and a psycopg2 connection + cursor
    that fills it without parent rows."""
    venv = subprocess.run(["bash", str(REPO / "tools/venvs.sh"), "318"], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(AIRFLOW_HOME=home, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url, AIRFLOW__CORE__LOAD_EXAMPLES="False")
        subprocess.run([f"{venv}/bin/airflow", "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import psycopg2

    conn = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    cur = conn.cursor()
    cur.execute("SET session_replication_role = replica")  # no dag_run/dag_version parents needed
    return conn, cur


def build(url: str, tis: int, triggers: int, keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    conn, cur = migrated_cursor(url)
    t0 = time.monotonic()
    cur.execute(
        f"""
        INSERT INTO task_instance (id, dag_id, task_id, run_id, map_index, pool, pool_slots, span_status,
                                   start_date, next_kwargs)
        SELECT gen_random_uuid(), 'bench_dag_' || (i % 50), 'task_' || (i % 200), 'run_' || i, -1,
               'default_pool', 1, 'not_started', now() - (i || ' seconds')::interval,
               CASE WHEN i % 20 < 11 THEN ({sql_text(LEGACY)})::json
                    WHEN i % 20 < 18 THEN ({sql_text(SERDE)})::json
                    WHEN i % 20 = 18 THEN NULL
                    ELSE ({sql_text(UNDECODABLE)})::json END
        FROM generate_series(1, {int(tis)}) AS i
        """
    )
    fernets = [Fernet(k.encode()) for k in keys]
    buf = io.StringIO()
    payload = '{"moment": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": {"timestamp": 2051218800.0, "tz": null}}, "n": %d}'
    for i in range(1, triggers + 1):
        token = fernets[i % 2].encrypt((payload % i).encode()).decode()
        buf.write(f"{i}\tairflow.triggers.temporal.DateTimeTrigger\t{token}\t2026-01-01 00:00:00+00\n")
    buf.seek(0)
    cur.copy_expert("COPY trigger (id, classpath, kwargs, created_date) FROM STDIN", buf)
    conn.commit()
    cur.execute("ANALYZE task_instance; ANALYZE trigger")
    conn.commit()
    conn.close()
    print(f"filled {tis:,} task instances and {triggers:,} triggers in {time.monotonic() - t0:.1f}s", flush=True)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(p) for p in children.read().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return []


def _status_kb(pid: int, field: str, name: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{name}") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


@dataclass
class Child:
    wall: float
    peak_mb: float
    code: int
    stdout: str
    stderr: str
    cpu: float
    #: Proportional set size, polled: what the process and its children take together.
    peak_pss_mb: float = 0.0


def measured_child(cmd: list[str]) -> Child:
    """Run ``cmd`` (``src/`` on its path, no AIRFLOW* variables); its wall time, peak RSS, output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = str(REPO / "src")
    # Both to files: a child writing more than a pipe holds to an unread stderr would never end.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        # VmHWM of the child's own address space: rusage's ru_maxrss survives exec and would
        # include this (much larger) benchmark process the child was forked from. A process the
        # child forks (rewrite's conversion child) adds its own peak while it lives: pages they
        # share are counted in both, so the sum is an upper bound; PSS splits them (polled).
        peak_kb = peak_pss_kb = 0
        while True:
            done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if done:
                break
            pids = (proc.pid, *_children(proc.pid))
            peak_kb = max(peak_kb, sum(_status_kb(pid, "VmHWM:") for pid in pids))
            peak_pss_kb = max(peak_pss_kb, sum(_status_kb(pid, "Pss:", "smaps_rollup") for pid in pids))
            time.sleep(0.02)
        wall = time.monotonic() - t0
        err.seek(0)
        stderr = err.read()
        out.seek(0)
        # The child's own CPU time: on a shared machine wall time also measures the neighbours.
        return Child(wall, peak_kb / 1024, os.waitstatus_to_exitcode(status), out.read(), stderr,
                     usage.ru_utime + usage.ru_stime, peak_pss_kb / 1024)


def run_scan(url: str, keys: list[str], python: str) -> tuple[float, int, float, int, float]:
    child = measured_child([python, "-m", "airflow_serde_compat", "scan", "--sql-alchemy-conn", url,
                            f"--fernet-key={','.join(keys)}", "--output", "json", "--no-progress"])
    if child.code not in (0, 1):
        raise SystemExit(f"scan failed ({child.code}): {child.stderr.strip()}")
    report = json.loads(child.stdout or "{}")
    rows = sum(s.get("rows", 0) for s in report["sources"])
    return child.wall, rows, child.peak_mb, child.code, child.cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tis", type=int, default=1_000_000)
    parser.add_argument("--triggers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    parser.add_argument("--url", help="scan an existing benchmark database instead of building one")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    keys_file = None
    if args.url:
        url = args.url
        keys = json.loads(Path(f"/tmp/{url.rsplit('/', 1)[-1]}.keys").read_text())
    else:
        name = f"serde_compat_bench_{os.getpid()}"
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        keys = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]
        admin(f"CREATE DATABASE {name}")
        keys_file = Path(f"/tmp/{name}.keys")
        keys_file.write_text(json.dumps(keys))
    try:
        if not args.url:
            build(url, args.tis, args.triggers, keys)
        results = []
        for n in range(args.runs):
            wall, rows, rss, code, cpu = run_scan(url, keys, sys.executable)
            results.append((wall, rows, rss, cpu))
            print(f"run {n + 1}: {rows:,} rows in {wall:.2f}s = {rows / wall:,.0f} rows/s "
                  f"({rows / cpu:,.0f} rows per scanner CPU-second), peak RSS {rss:.0f} MB, exit {code}, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        wall = statistics.median(r[0] for r in results)
        rate = statistics.median(r[1] / r[0] for r in results)
        rss = statistics.median(r[2] for r in results)
        cpu_rate = statistics.median(r[1] / r[3] for r in results)
        print(f"median of {len(results)}: {wall:.2f}s, {rate:,.0f} rows/s ({cpu_rate:,.0f} per scanner CPU-second), "
              f"peak RSS {rss:.0f} MB "
              f"(goal >= 50,000 rows/s and < 300 MB: {'met' if rate >= 50_000 and rss < 300 else 'NOT met'}; "
              f">= 150,000 rows/s: {'met' if rate >= 150_000 and rss < 300 else 'NOT met'})")
    finally:
        if args.keep or args.url:
            print(f"kept: --url {url}")
        else:
            admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[-1]} WITH (FORCE)")
            if keys_file:
                keys_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
