#!/usr/bin/env python3
"""The bridge's performance budget (issues #5 and #14): ratios measured side by side in one run.

    make bench                                   # reinstalls the wheel, then runs this
    $(tools/venvs.sh 318t)/bin/python benchmarks/run.py [--quick] [--only 1,2,3,4,5]
        [--rounds N] [--no-postgres] [--markdown FILE]

Runs in the Airflow 3.1.8 venv where the wheel is installed (``318t``). Every figure is a
ratio of two configurations timed in alternating batches within this one run; the table gives
the median of the per-round ratios and their min-max, and the median per-call time of each side.

1. legacy payloads (3.1.8's own ``BaseSerialization.serialize`` output of realistic next_kwargs /
   trigger kwargs, and a nested one): ``BaseSerialization.deserialize`` bridge on / off.
2. ``SerializedDAG.from_dict`` of a 300-task DAG built with 3.1.8's SDK: bridge on / off.
3. the same values as 3.2.1 stores them, through the bridge, vs their legacy payloads without
   it; and vs 3.2.1's own ``airflow.sdk.serde.deserialize`` (timed in the 3.2.1 venv, over a pipe).
4. ``python -c "import airflow"``: package installed with the variable unset, and set, vs a venv
   that is the same site-packages minus this package (symlinks: a real "not installed").
   Wall time and the child's CPU time (rusage), as there are no hardware counters here.
5. a scheduler loop's load of 2,000 deferred TIs (``DagRun.fetch_task_instances``) whose
   next_kwargs 3.2.1 wrote vs the same in legacy format, bridge on, on a real 3.1.8 SQLite DB
   and PostgreSQL DB made by ``airflow db migrate``.

``benchmarks/instructions.py`` gives figures 1 and 3 again as callgrind instruction counts (a
deterministic second opinion, about 5 minutes). Timings are never asserted anywhere: the machine is shared and noisy. The goal column is what
issues #5 (figure 4) and #14 (figures 1-3, 5) budget; "meets" compares the median only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _timing import Ratio, calibrate, fmt_time, interleave, table, time_batch  # noqa: E402

VENVS = REPO / "tools" / "venvs.sh"
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def venv(name: str) -> Path:
    out = subprocess.run(["bash", str(VENVS), name], check=True, capture_output=True, text=True).stdout.split()
    return Path(out[-1])


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, Ratio, float]] = []
        self.notes: list[str] = []

    def add(self, figure: str, a: str, b: str, r: Ratio, goal: float) -> None:
        self.rows.append((figure, a, b, r, goal))
        meets = "" if goal <= 0 else ("yes" if r.median <= goal else "NO")
        print(
            f"  {figure}: {b} / {a} = {r.median:.3f} [{r.lo:.3f}-{r.hi:.3f}]"
            f"  ({fmt_time(r.b_median)} vs {fmt_time(r.a_median)}, {r.rounds} rounds)"
            + (f"  goal <= {goal} {meets}" if goal > 0 else ""),
            flush=True,
        )

    def markdown(self) -> str:
        rows = [
            (
                fig, f"{b} / {a}", f"**{r.median:.3f}**", f"{r.lo:.3f}-{r.hi:.3f}",
                f"{fmt_time(r.b_median)} / {fmt_time(r.a_median)}",
                f"<= {goal}" if goal > 0 else "-", "" if goal <= 0 else ("yes" if r.median <= goal else "**no**"),
            )
            for fig, a, b, r, goal in self.rows
        ]
        out = table(rows, ("figure", "ratio", "median", "min-max", "per call (B / A)", "goal", "meets"))
        return out + "".join(f"\n- {note}" for note in self.notes)


# --- 1-3: payloads and the serialized DAG, in this process --------------------------------------


def stable_repr(value: object) -> str:
    """repr, with set elements sorted: two equal sets built in another order (3.2.1 and 3.1.8
    each wrote theirs in their own process's hash order) may repr differently."""
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({sorted(stable_repr(v) for v in value)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{stable_repr(k)}: {stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[{', '.join(stable_repr(v) for v in value)}]"
    return repr(value)


def payload_figures(report: Report, rounds: int, batch_s: float, only: set[int]) -> None:
    import airflow_serde_compat
    from airflow.serialization.serialized_objects import BaseSerialization, SerializedDAG

    import values

    cases = values.cases()
    legacy = {name: json.loads(json.dumps(BaseSerialization.serialize(v))) for name, v in cases.items()}
    worker = subprocess.Popen(
        [str(venv("321") / "bin" / "python"), str(HERE / "serde321_worker.py"), str(HERE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"},
    )

    def ask(cmd: dict) -> dict:
        worker.stdin.write(json.dumps(cmd) + "\n")
        worker.stdin.flush()
        return json.loads(worker.stdout.readline())

    serde32 = {name: json.loads(text) for name, text in ask({"op": "payloads"}).items()}
    deserialize = BaseSerialization.deserialize  # the class attribute is read per call below

    # Same values either way, or the ratios compare different work.
    airflow_serde_compat.activate()
    for name in cases:
        got, want = BaseSerialization.deserialize(serde32[name]), BaseSerialization.deserialize(legacy[name])
        assert stable_repr(got) == stable_repr(want), name
    del deserialize

    def mix_fn(payloads: list) -> object:
        def run(_: object) -> None:
            d = BaseSerialization.deserialize
            for p in payloads:
                d(p)
        return run

    def bridge(active: bool):  # type: ignore[no-untyped-def]
        return airflow_serde_compat.activate if active else airflow_serde_compat.deactivate

    def config(state, fn, n):  # type: ignore[no-untyped-def]
        def sample() -> float:
            state()
            return time_batch(fn, [None] * n)
        return sample

    groups = {
        "small mix": [n for n in cases if n.startswith("small.")],
        "rich mix": [n for n in cases if n.startswith(("next_kwargs.", "trigger."))],
        "nested": [n for n in cases if n.startswith("nested")],
    }
    assert sorted(n for names in groups.values() for n in names) == sorted(cases)
    for label, names in groups.items():
        leg = mix_fn([legacy[n] for n in names])
        new = mix_fn([serde32[n] for n in names])
        bridge(True)()
        n = calibrate(new, None, batch_s)
        if 1 in only:
            s = interleave({"off": config(bridge(False), leg, n), "on": config(bridge(True), leg, n)}, rounds)
            report.add(f"1 legacy {label}", "bridge off", "bridge on", Ratio.of(s["off"], s["on"]), 1.00)
        if 3 in only:
            names_321 = names

            def sdk321() -> float:
                return ask({"op": "time", "names": names_321, "n": n})["ns"]

            s = interleave(
                {"legacy_off": config(bridge(False), leg, n), "32_on": config(bridge(True), new, n), "321": sdk321},
                rounds,
            )
            report.add(f"3 3.2 {label}", "legacy, bridge off", "3.2, bridge on",
                       Ratio.of(s["legacy_off"], s["32_on"]), 1.10)
            report.add(f"3 3.2 {label}", "3.2.1 serde.deserialize", "3.2, bridge on (3.1.8)",
                       Ratio.of(s["321"], s["32_on"]), 0.90)
    worker.stdin.close()
    worker.wait(timeout=30)

    if 2 in only:
        import dag300

        data = json.loads(dag300.serialized_text(300))
        from_dict = SerializedDAG.from_dict
        bridge(True)()
        n = calibrate(from_dict, data, batch_s * 3)
        s = interleave({"off": config(bridge(False), lambda _: from_dict(data), n),
                        "on": config(bridge(True), lambda _: from_dict(data), n)}, max(5, rounds // 2))
        report.add("2 from_dict 300 tasks", "bridge off", "bridge on", Ratio.of(s["off"], s["on"]), 1.00)
    airflow_serde_compat.activate()


# --- 4: import airflow ------------------------------------------------------------------------


def overlay_without_package(src: Path, dest: Path) -> Path:
    """A venv of the same interpreter whose site-packages is ``src``'s, minus this package."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    (src_site,) = src.glob("lib/python*/site-packages")
    (dest_site,) = dest.glob("lib/python*/site-packages")
    for entry in src_site.iterdir():
        if entry.name.startswith("airflow_serde_compat"):
            continue
        (dest_site / entry.name).symlink_to(entry)
    return dest / "bin" / "python"


def import_figures(report: Report, rounds: int, home: Path) -> None:
    with_pkg = Path(sys.executable)
    here = Path(sys.prefix)
    without = overlay_without_package(here, home / "venv-without")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_env.update(AIRFLOW_HOME=str(home / "import-home"), PYTHONNOUSERSITE="1")
    code = "import airflow"
    check = (
        "import importlib.util as u, airflow_serde_compat._bootstrap as b;"
        "print(u.find_spec('airflow_serde_compat') is not None, b.loaded)"
    )
    assert subprocess.run([str(without), "-c", "import importlib.util as u; print(u.find_spec('airflow_serde_compat'))"],
                          env=base_env, capture_output=True, text=True).stdout.strip() == "None"
    on_env = {**base_env, "AIRFLOW_SERDE_COMPAT": "1"}
    assert subprocess.run([str(with_pkg), "-c", code + ";" + check], env=on_env, capture_output=True,
                          text=True).stdout.split()[-2:] == ["True", "True"]

    cpu: dict[str, list[float]] = {}

    def launch(python: Path, env: dict, name: str):  # type: ignore[no-untyped-def]
        def sample() -> float:
            t0 = time.perf_counter_ns()
            proc = subprocess.Popen([str(python), "-c", code], env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter_ns() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.returncode == 0, name
            cpu.setdefault(name, []).append((usage.ru_utime + usage.ru_stime) * 1e9)
            return elapsed
        return sample

    for _ in range(2):  # airflow.cfg written, bytecode cached
        launch(without, base_env, "warm")()
        launch(with_pkg, on_env, "warm")()
    s = interleave(
        {"without": launch(without, base_env, "without"), "unset": launch(with_pkg, base_env, "unset"),
         "set": launch(with_pkg, on_env, "set")},
        rounds,
    )
    # Deterministic second opinion: what -X importtime charges to this package's own modules
    # (and wrapt, which only activation imports), against the whole import.
    for label, env in (("unset", base_env), ("=1", on_env)):
        own, total = [], []
        for _ in range(7):
            err = subprocess.run([str(with_pkg), "-X", "importtime", "-c", code], env=env, capture_output=True,
                                 text=True).stderr
            mine = whole = 0
            for line in err.splitlines():
                parts = line.split("|")
                if len(parts) != 3 or not parts[0].startswith("import time:") or "self" in parts[0]:
                    continue
                name = parts[2][1:].rstrip()  # "| " then two spaces per nesting level
                if not name.startswith(" "):
                    whole += int(parts[1])
                if name.strip().startswith(("airflow_serde_compat", "wrapt")):
                    mine += int(parts[0].split(":")[1])  # self time: nesting would double count
            own.append(mine)
            total.append(whole)
        print(f"  4 import airflow, -X importtime, installed {label}: this package's modules "
              f"{statistics.median(own) / 1000:.2f} ms [{min(own) / 1000:.2f}-{max(own) / 1000:.2f}] "
              f"of {statistics.median(total) / 1000:.0f} ms ({statistics.median(own) / statistics.median(total):.2%})",
              flush=True)
        report.notes.append(
            f"import airflow, installed {label}: -X importtime self time of airflow_serde_compat*/wrapt "
            f"modules {statistics.median(own) / 1000:.2f} ms of {statistics.median(total) / 1000:.0f} ms "
            f"({statistics.median(own) / statistics.median(total):.2%}), median of 7"
        )
    report.add("4 import airflow, wall", "not installed", "installed, unset", Ratio.of(s["without"], s["unset"]), 1.01)
    report.add("4 import airflow, wall", "not installed", "installed, =1", Ratio.of(s["without"], s["set"]), 1.05)
    report.add("4 import airflow, CPU", "not installed", "installed, unset", Ratio.of(cpu["without"], cpu["unset"]), 1.01)
    report.add("4 import airflow, CPU", "not installed", "installed, =1", Ratio.of(cpu["without"], cpu["set"]), 1.05)


# --- 5: scheduler loop over 2,000 deferred TIs ------------------------------------------------------


def scheduler_figures(report: Report, rounds: int, home: Path, postgres: bool) -> None:
    import values
    from airflow.serialization.serialized_objects import BaseSerialization

    cases = values.cases()
    picked = ["next_kwargs.event_datetime", "next_kwargs.event_status", "next_kwargs.timeout", "trigger.http"]
    texts = json.loads(subprocess.run(
        [str(venv("321") / "bin" / "python"), str(HERE / "serde321_worker.py"), str(HERE)],
        input='{"op": "payloads"}\n', capture_output=True, text=True, check=True,
    ).stdout)
    payloads = {
        "legacy": [json.dumps(BaseSerialization.serialize(cases[n])) for n in picked],
        "serde32": [texts[n] for n in picked],
    }
    payload_file = home / "payloads.json"
    payload_file.write_text(json.dumps(payloads))
    v318 = venv("318")
    backends = [("sqlite", f"sqlite:///{home}/sched.db", None)]
    if postgres:
        name = f"serde_compat_bench_{os.getpid()}"
        backends.append(("postgres", f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", name))
    for label, url, pg_name in backends:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(AIRFLOW_HOME=str(home / f"home-{label}"), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
                   AIRFLOW__CORE__LOAD_EXAMPLES="False")
        if pg_name:
            _psql(f'CREATE DATABASE "{pg_name}"')
        try:
            t0 = time.monotonic()
            subprocess.run([str(v318 / "bin" / "python"), "-m", "airflow", "db", "migrate"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run([sys.executable, str(HERE / "scheduler_db.py"), "fill", url, str(payload_file), "2000"],
                           env=env, check=True)
            print(f"  ({label}: migrated and filled in {time.monotonic() - t0:.0f} s)", flush=True)
            out = subprocess.run(
                [sys.executable, str(HERE / "scheduler_db.py"), "time", url, str(rounds)],
                env={**env, "AIRFLOW_SERDE_COMPAT": "1"}, check=True, capture_output=True, text=True,
            ).stdout
            s = json.loads(out.strip().splitlines()[-1])
            report.add(f"5 2,000 deferred TIs, {label}", "legacy rows", "3.2 rows",
                       Ratio.of(s["legacy_active"], s["serde32_active"]), 1.05)
            report.add(f"5 2,000 deferred TIs, {label}", "legacy, bridge off", "legacy, bridge on",
                       Ratio.of(s["legacy_inactive"], s["legacy_active"]), 0)
        finally:
            if pg_name:
                _psql(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def _psql(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="1,2,3,4,5", help="figures to run, e.g. 1,3")
    ap.add_argument("--rounds", type=int, default=0, help="rounds per figure (default 41, --quick 11)")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds: a smoke run")
    ap.add_argument("--no-postgres", action="store_true", help="figure 5 on SQLite only")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",")}
    rounds = args.rounds or (11 if args.quick else 41)
    batch_s = 0.01 if args.quick else 0.025

    home = Path(tempfile.mkdtemp(prefix="serde-compat-bench-"))
    os.environ.pop("AIRFLOW_SERDE_COMPAT", None)
    os.environ["AIRFLOW_HOME"] = str(home / "home")
    os.environ.setdefault("TZ", "UTC")
    from importlib.metadata import version

    print(
        f"airflow-serde-compat {version('airflow-serde-compat')}, apache-airflow-core "
        f"{version('apache-airflow-core')}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    report = Report()
    try:
        if only & {1, 2, 3}:
            payload_figures(report, rounds, batch_s, only)
        if 4 in only:
            import_figures(report, max(11, rounds // 2), home)
        if 5 in only:
            scheduler_figures(report, max(7, rounds // 3), home, postgres=not args.no_postgres)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    md = report.markdown()
    print("\n" + md)
    if args.markdown:
        args.markdown.write_text(md + "\n")


if __name__ == "__main__":
    main()
