#!/usr/bin/env python3
"""Narrated demo of the Airflow 3.2.1 -> 3.1.8 rollback crash and of the airflow-serde-compat recovery (SQLite).

    python3 tools/demo.py [--writer 321] [--keep] [--fire-after SECONDS]

Runs only real software: pinned venvs (tools/venvs.sh, built on first use), the real `airflow scheduler`,
`triggerer`, `api-server`, `dag-processor` (LocalExecutor) and the real `airflow db downgrade`. Two runs of the
same DAG (tests/e2e/dags/e2e_rollback_dag.py) with the same choreography:
  1. the oracle: a never-upgraded 3.1.8 (what "correct" means),
  2. the incident: 3.2.1 writes, `airflow db downgrade -n 3.1.8`, 3.1.8 without and then with the bridge.
Exit code 0 only if 3.1.8 crashed without the bridge and, with it, every task received what it receives on 3.1.8.
Takes about 10 minutes on a 2-core machine (plus venv builds on first use).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import textwrap
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/e2e"))
import harness  # noqa: E402

W = 100


def banner(title):
    print("\n" + "=" * W + f"\n{title}\n" + "=" * W, flush=True)


def say(text=""):
    print(textwrap.fill(text, W) if text else "", flush=True)


def short(d) -> str:
    """Render a canonical description (e2e_common.describe) compactly: type:value."""
    t = d.get("type", "?").replace("builtins.", "").replace("pendulum.datetime.", "pendulum.")
    if "items" in d:
        if t == "dict":
            return "{" + ", ".join(f"{short(k)}: {short(v)}" for k, v in d["items"]) + "}"
        inner = ", ".join(short(x) for x in d["items"])
        return {"list": f"[{inner}]", "tuple": f"tuple({inner})", "set": f"set({inner})"}.get(t, f"{t}({inner})")
    if t == "str" or t == "int" or t == "float" or t == "bool" or t == "NoneType":
        return json.dumps(d.get("value")) if t == "str" else str(d.get("value"))
    if "tz" in d:
        tz = (d["tz"] or "naive").split(":", 1)[-1]
        return f"{t}({d['value']}, tz={tz})"
    return f"{t}({d.get('value', d.get('repr'))})"


def crash_excerpt(logpath, n=6) -> str:
    lines = pathlib.Path(logpath).read_text(errors="replace").splitlines()
    for i, l in enumerate(lines):
        if harness.CRASH_RE.search(l):
            return "\n".join("    " + x[:W] for x in lines[max(0, i - n):i + 1])
    return "    (no KeyError line found)"


def rows_table(rows: dict, only_32: bool = False) -> None:
    """Print row classifications (harness.classify); NULL rows are only counted."""
    for col, vals in rows.items():
        if only_32 and col == "deadline rows":
            continue
        nulls = sum(1 for v in vals.values() if v == "null")
        shown = {k: v for k, v in vals.items() if v != "null"}
        if only_32:
            shown = {k: v for k, v in shown.items() if not v.startswith("legacy")}
        if not shown:
            print(f"    {col:28s} {'(none)' if only_32 else '(no rows)'}" + (f"  [{nulls} NULL]" if nulls else ""))
        for k, v in shown.items():
            print(f"    {col:28s} {k:24s} {v}")
        if shown and nulls:
            print(f"    {col:28s} + {nulls} NULL")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writer", default="321", choices=["320", "321", "322", "33x"],
                    help="Airflow version that writes the rows before the rollback (venvs.sh name)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories (logs, DBs, results)")
    ap.add_argument("--fire-after", type=int, default=None, help="seconds until the 'after' sensor/deadline fire")
    args = ap.parse_args()
    t_all = time.monotonic()
    timings: list[tuple[str, float]] = []

    banner("airflow-serde-compat demo: rolling back Airflow 3.2 -> 3.1.8 on SQLite")
    say("Airflow 3.2 stores task_instance.next_kwargs and trigger.kwargs in the task-SDK 'serde' format. "
        "`airflow db downgrade` does not rewrite those rows, so after a rollback the 3.1.8 scheduler and triggerer "
        "crash-loop with KeyError: <Encoding.VAR: '__var'>. This demo reproduces that with real Airflow processes "
        "and shows the bridge (pip-installed into 3.1.8, enabled by AIRFLOW_SERDE_COMPAT=1) recovering from it.")

    t = time.monotonic()
    print("\n-- preparing pinned virtualenvs (built once, cached in ~/.cache/airflow-serde-compat)", flush=True)
    for name in ("318", args.writer):
        print(f"   v{name}: {harness.venv(name)}", flush=True)
    bridge_error = None
    try:
        print(f"   v318-bridge: {harness.bridge_venv()}  (bridge freshly installed from {REPO})", flush=True)
    except harness.E2EError as e:
        bridge_error = str(e)
        print(f"   v318-bridge: NOT AVAILABLE -- {bridge_error[:500]}", flush=True)
    timings.append(("venvs + bridge install", time.monotonic() - t))

    def narrate(line):
        print("   " + line, flush=True)

    banner("Step 1/2: the oracle -- the same DAG on a never-upgraded Airflow 3.1.8")
    say("The DAG defers tasks with rich kwargs (pendulum datetimes in Europe/Berlin, stdlib datetimes, timedelta, "
        "tuple, set, nested containers, empty kwargs), a DateTimeSensorAsync, a custom trigger, a failing trigger, "
        "a trigger timeout, a deadline alert and a uuid XCom. Some triggers fire before the 'rollback' "
        "(their tasks are frozen by a 0-slot pool), some after. Every resumed task writes down the exact Python "
        "types and values it received.")
    oracle = harness.Scenario("sqlite", "318", say=narrate, fire_after=args.fire_after)
    try:
        oracle.run()
    finally:
        oracle.cleanup()
    timings += [(f"oracle: {k}", v) for k, v in oracle.timings.items() if k != "total"]
    if oracle.errors:
        print(f"\nThe oracle run itself failed: {oracle.errors}")
        return 2

    banner(f"Step 2/2: the incident -- Airflow {harness.VERSION_OF[args.writer]} writes, downgrade, 3.1.8 reads")
    s = harness.Scenario("sqlite", args.writer, say=narrate, fire_after=args.fire_after, bridge=bridge_error is None)
    try:
        s.run()
    finally:
        s.cleanup()
    timings += [(f"incident: {k}", v) for k, v in s.timings.items() if k != "total"]
    ok = report(oracle, s, bridge_error)

    banner("Timings")
    for k, v in timings:
        print(f"  {v:7.1f}s  {k}")
    print(f"  {time.monotonic() - t_all:7.1f}s  TOTAL")
    if not args.keep:
        import shutil

        for sc in (oracle, s):
            shutil.rmtree(sc.workdir, ignore_errors=True)
    else:
        print(f"\n  work dirs kept: {oracle.workdir} {s.workdir}")
    return 0 if ok else 1


def report(oracle, s, bridge_error=None) -> bool:
    banner("What the downgraded database holds (rows `airflow db downgrade -n 3.1.8` left untouched)")
    rows_table(s.facts["rows_after_downgrade"])

    banner("Without the bridge (AIRFLOW_SERDE_COMPAT unset): 3.1.8 scheduler + triggerer")
    crashed_all = True
    for name, info in s.facts.get("nobridge", {}).items():
        status = "CRASHED with KeyError: <Encoding.VAR: '__var'>" if info["keyerror_var"] else "no KeyError seen"
        crashed_all &= info["keyerror_var"]
        print(f"  {name}: {status} (exit code {info['exit_code']}); log {info['log']}")
        if info["keyerror_var"]:
            print(crash_excerpt(info["log"]))

    banner("With the bridge (AIRFLOW_SERDE_COMPAT=1): 3.1.8 scheduler, triggerer, api-server, dag-processor")
    if bridge_error:
        print(f"  skipped: the bridge could not be installed:\n{bridge_error[:2000]}")
        recovered = False
    elif "post" in s.errors:
        print(f"  FAILED: {s.errors['post'][:3000]}")
        recovered = False
    else:
        print(f"  every component stayed up; KeyError lines in their logs: {s.facts['log_crashes']}")
        print(f"  final task states: { {t: st for t, (st, _) in s.facts['post_states'].items()} }")
        recovered = True

    banner("Oracle comparison: what each resumed task received, rollback vs native 3.1.8")
    diffs = harness.compare_post(s, oracle)
    post_o, post_s = oracle.facts["results_post"], s.facts["results_post"]
    lost = harness.deadline_lost_by_downgrade(s)
    for name in sorted(set(post_o) | set(post_s)):
        if name in harness.UUID_TASKS:
            continue
        same = name in post_s and name in post_o and post_s[name]["received"] == post_o[name]["received"]
        tag = "same" if same else ("lost by downgrade" if lost and name == "deadline_callback" else "DIFF")
        print(f"  [{tag}] {name}")
    sample = post_s.get("rich_before") or post_o.get("rich_before")
    if sample:
        print("\n  e.g. rich_before (fired under 3.2, resumed under 3.1.8) received:")
        for k, v in sample["received"]["kwargs"]["items"]:
            print(f"    {short(k):22s} {short(v)[:W - 26]}")
    if diffs:
        print("\n  Differences:\n" + "\n".join("   " + d for d in diffs))
    if harness.deadline_lost_by_downgrade(s):
        print("\n  NOTE: `airflow db downgrade` deleted the pending deadline row on this DB "
              f"({s.facts['rows_after_writer']['deadline rows']['count']} before, 0 after), so the missed-deadline "
              "callback can never run after the rollback. That is Airflow data loss, not a read problem; it is "
              "left out of the parity check above.")
    pre, post = s.facts["results_pre"], s.facts["results_post"]
    if "pull_uuid_now" in pre:
        ok = "pull_uuid_after" in post and post["pull_uuid_after"]["received"] == pre["pull_uuid_now"]["received"]
        print(f"\n  uuid XCom (3.1.8 cannot push one; reference = 3.2 reading its own value): "
              f"{'same' if ok else 'DIFF/MISSING'}")

    banner("Rows still in the 3.2 format after the bridge run")
    rows_table(s.facts.get("rows_after_reader", {}), only_32=True)
    say("Finished tasks have NULL next_kwargs and fired triggers are deleted, so once every deferred task has "
        "resumed nothing in these columns needs the bridge any more; rows listed above (if any) are still read "
        "through it while AIRFLOW_SERDE_COMPAT=1.")
    for title, key in (("right after the downgrade", "scan_after_downgrade"), ("after the bridge run", "scan_after_reader")):
        scan = s.facts.get(key) or {}
        report = scan.get("report")
        if not report:
            say(f"`airflow-serde-compat scan` {title}: no report ({(scan.get('stderr') or '')[-300:]})")
            continue
        print(f"\n  `airflow-serde-compat scan --verify` {title} (exit {scan['exit']}: "
              f"{'rows remain, keep the bridge' if scan['exit'] == 1 else 'nothing left, the bridge can come out' if scan['exit'] == 0 else 'error'}):")
        for src in report["sources"]:
            if not src.get("present"):
                continue
            verify = src.get("verify") or {}
            print(f"    {src['source']:<36} {src['serde']:>3} in 3.2 format, {src['legacy']:>3} legacy, "
                  f"{verify.get('failures', 0)} would fail under the bridge")

    ok = crashed_all and recovered and not diffs
    print(f"\nRESULT: {'OK' if ok else 'NOT OK'} (crash without bridge: {crashed_all}, recovery: {recovered}, "
          f"parity with native 3.1.8: {not diffs})")
    return ok


if __name__ == "__main__":
    sys.exit(main())
