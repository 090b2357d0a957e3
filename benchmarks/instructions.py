"""Second opinion for figures 1 and 3: instructions counted by callgrind, not time.

    $(tools/venvs.sh 318t)/bin/python benchmarks/instructions.py [--n 200] [--import-only]

Runs one child under ``valgrind --tool=callgrind`` per (configuration, repetitions) and takes
the difference between N and 0 repetitions, so setup (imports, payload building) cancels out.
Deterministic to a fraction of a percent whatever else the machine is doing; slow (minutes).
Figure 4 likewise: ``python -c "import airflow"`` with the package installed (variable unset,
and =1) vs the overlay venv without it that run.py builds, whose wall/CPU times cannot resolve 1%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys
sys.path.insert(0, {here!r})
import values
import airflow_serde_compat
from airflow.serialization.serialized_objects import BaseSerialization
cases = values.cases()
legacy = [json.loads(json.dumps(BaseSerialization.serialize(v))) for v in cases.values()]
serde32 = [json.loads(t) for t in json.loads(open({payloads!r}).read()).values()]
config, n = {config!r}, {n}
payloads = serde32 if config == "32_on" else legacy
(airflow_serde_compat.activate if config != "legacy_off" else airflow_serde_compat.deactivate)()
d = BaseSerialization.deserialize
for p in payloads:  # first call of each path (lazy imports) outside the difference
    d(p)
for _ in range(n):
    for p in payloads:
        d(p)
"""


def count(config: str, n: int, payloads: Path, home: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"}
        env["AIRFLOW_HOME"] = home
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--cache-sim=no", f"--callgrind-out-file={out}",
             sys.executable, "-c", CHILD.format(here=str(HERE), payloads=str(payloads), config=config, n=n)],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))


def import_counts() -> None:
    from run import overlay_without_package

    with tempfile.TemporaryDirectory() as home:
        without = overlay_without_package(Path(sys.prefix), Path(home) / "venv-without")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(AIRFLOW_HOME=str(Path(home) / "airflow-home"), PYTHONNOUSERSITE="1")
        runs = {"not installed": (without, env), "installed, unset": (Path(sys.executable), env),
                "installed, =1": (Path(sys.executable), {**env, "AIRFLOW_SERDE_COMPAT": "1"})}
        subprocess.run([str(without), "-c", "import airflow"], env=env, check=True)  # airflow.cfg, bytecode
        subprocess.run([sys.executable, "-c", "import airflow"], env=env, check=True)
        got = {}
        for label, (python, run_env) in runs.items():
            out = Path(home) / "cg.out"
            proc = subprocess.run(["valgrind", "--tool=callgrind", "--cache-sim=no", f"--callgrind-out-file={out}",
                                   str(python), "-c", "import airflow"], env=run_env, capture_output=True, text=True)
            got[label] = int(re.search(r"Collected : (\d+)", proc.stderr).group(1))
            print(f"  import airflow, {label}: {got[label]:,} instructions", flush=True)
    for label in ("installed, unset", "installed, =1"):
        print(f"4 import airflow, {label} / not installed: {got[label] / got['not installed']:.4f} (instructions)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--import-only", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from run import venv

    import_counts()
    if args.import_only:
        return
    with tempfile.TemporaryDirectory() as home:
        payloads = Path(home) / "payloads.json"
        payloads.write_text(subprocess.run(
            [str(venv("321") / "bin" / "python"), str(HERE / "serde321_worker.py"), str(HERE)],
            input='{"op": "payloads"}\n', capture_output=True, text=True, check=True).stdout)
        per_pass = {}
        for config in ("legacy_off", "legacy_on", "32_on"):
            base, full = count(config, 0, payloads, home), count(config, args.n, payloads, home)
            per_pass[config] = (full - base) / args.n
            print(f"  {config}: {per_pass[config]:,.0f} instructions per pass over the {len(json.loads(payloads.read_text()))} payloads",
                  flush=True)
    print(f"1 legacy, bridge on / off: {per_pass['legacy_on'] / per_pass['legacy_off']:.3f} (instructions)")
    print(f"3 3.2 bridge on / legacy off: {per_pass['32_on'] / per_pass['legacy_off']:.3f} (instructions)")


if __name__ == "__main__":
    main()
