#!/usr/bin/env python3
"""Record the golden serde corpus from the real Airflow libraries.

Usage (any python3, from anywhere):  python3 tools/record_corpus.py [--writers 321,33x]

1. ``tools/venvs.sh 318 321 33x`` builds/finds the pinned venvs.
2. Optional libraries (numpy, pandas+pyarrow, kubernetes + the cncf.kubernetes provider) are
   installed into a per-venv *overlay* directory (``$CACHE/corpus-extras/vNAME``, put first on
   ``PYTHONPATH`` of the recording subprocesses only), resolved against the venv with the same
   ``--uploaded-prior-to`` cut-off as the venv and with the installed apache-airflow,
   apache-airflow-core and apache-airflow-task-sdk pinned. The shared venvs are never modified;
   a group that cannot be resolved without changing Airflow is skipped and recorded.
3. In each writer venv a subprocess serializes every ``tools/corpus_values.values()`` case with
   the real ``airflow.sdk.serde.serialize`` (and ``json.dumps`` of it, as a 3.2.x writer stores it).
4. In v318 a subprocess computes, per case, the legacy encoding ``BaseSerialization.serialize(v)``
   (as stored: through ``json.dumps``/``json.loads``) and ``describe()`` of
   ``BaseSerialization.deserialize(legacy)`` (``tests/typed.py``), plus, for each writer, what
   3.1.8's own core ``airflow.serialization.serde.deserialize`` makes of the serde payload.
5. Writes ``tests/fixtures/corpus/sdk-<task_sdk version>.json`` per writer (sorted keys, stable).

Subprocesses run with a clean environment: ``PYTHONHASHSEED=0``, ``TZ=UTC`` (naive datetimes are
encoded with ``.timestamp()``, which depends on the local zone), a throw-away ``AIRFLOW_HOME``.
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

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
TESTS = REPO / "tests"
OUT_DIR = TESTS / "fixtures" / "corpus"
CACHE = Path(os.environ.get("AIRFLOW_SERDE_COMPAT_CACHE", str(Path.home() / ".cache" / "airflow-serde-compat")))

READER = "318"
DEFAULT_WRITERS = ["321", "33x"]
EXTRA_GROUPS = {
    "numpy": ["numpy"],
    "pandas": ["pandas", "pyarrow"],
    "kubernetes": ["kubernetes", "apache-airflow-providers-cncf-kubernetes"],
}
PINNED = ["apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"]
LIBS = [
    "apache-airflow",
    "apache-airflow-core",
    "apache-airflow-task-sdk",
    "pendulum",
    "pydantic",
    "attrs",
    "python-dateutil",
    "numpy",
    "pandas",
    "pyarrow",
    "kubernetes",
    "apache-airflow-providers-cncf-kubernetes",
]
_ADDR = re.compile(r"0x[0-9a-fA-F]{4,}")


def _err(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    text = _ADDR.sub("0x?", text)
    return text.replace(str(CACHE), "$CACHE")


# =========================================================================== worker side
# Runs inside a pinned venv. Only stdlib at module level.


def _libs() -> dict:
    from importlib import metadata

    out = {}
    for name in LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _load_cases():
    import corpus_values

    return corpus_values.Skipped, corpus_values.values()


def worker_writer(out_path: str) -> None:
    from airflow.sdk.serde import serialize

    skipped_t, cases = _load_cases()
    rows = []
    for case_id, value in cases:
        row: dict = {"id": case_id}
        if isinstance(value, skipped_t):
            row["skipped"] = value.reason
        else:
            try:
                encoded = serialize(value)
            except Exception as exc:  # TypeError, AttributeError (reserved keys), ...
                row["serde_error"] = _err(exc)
            else:
                try:
                    row["serde_json"] = json.dumps(encoded)
                    row["serde"] = json.loads(row["serde_json"])
                except Exception as exc:
                    row["serde_error"] = "json.dumps: " + _err(exc)
        rows.append(row)
    Path(out_path).write_text(json.dumps({"libs": _libs(), "cases": rows}))


def worker_reader(out_path: str, serde_inputs: list[str]) -> None:
    from typed import describe

    from airflow.serialization import serde as core_serde
    from airflow.serialization.serialized_objects import BaseSerialization

    skipped_t, cases = _load_cases()
    rows = []
    for case_id, value in cases:
        row: dict = {"id": case_id}
        if isinstance(value, skipped_t):
            row["skipped"] = value.reason
            rows.append(row)
            continue
        try:
            legacy_mem = BaseSerialization.serialize(value)
            legacy = json.loads(json.dumps(legacy_mem))  # what 3.1.8 stores and reads back
        except Exception as exc:
            row["legacy_error"] = _err(exc)
            rows.append(row)
            continue
        row["legacy"] = legacy
        try:
            row["native"] = describe(BaseSerialization.deserialize(legacy))
        except Exception as exc:
            row["native_error"] = _err(exc)
        rows.append(row)

    core = {}
    for path in serde_inputs:
        writer = json.loads(Path(path).read_text())
        per_case = {}
        for wrow in writer["cases"]:
            if "serde_json" not in wrow:
                continue
            try:
                per_case[wrow["id"]] = {"v": describe(core_serde.deserialize(json.loads(wrow["serde_json"])))}
            except Exception as exc:
                per_case[wrow["id"]] = {"error": _err(exc)}
        core[path] = per_case
    Path(out_path).write_text(json.dumps({"libs": _libs(), "cases": rows, "core_serde": core}))


# =========================================================================== host side


def _venvs(names: list[str]) -> dict[str, Path]:
    proc = subprocess.run(
        ["bash", str(TOOLS / "venvs.sh"), *names], check=True, stdout=subprocess.PIPE, text=True
    )
    paths = [Path(p) for p in proc.stdout.split()]
    if len(paths) != len(names):
        raise SystemExit(f"venvs.sh printed {paths!r} for {names!r}")
    return dict(zip(names, paths))


def _installed(venv: Path, names: list[str]) -> dict[str, str | None]:
    code = (
        "import json,sys\nfrom importlib import metadata\nout={}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n]=metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n]=None\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *names], check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(proc.stdout)


def _pip(venv: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _resolve(venv: Path, cutoff: str, constraints: Path, pkgs: list[str]) -> tuple[list[str] | None, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = _pip(
            venv,
            ["install", "-q", "--dry-run", "--upgrade-strategy=only-if-needed",
             "--report", str(report), "--uploaded-prior-to", cutoff, "-c", str(constraints), *pkgs],
        )
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln and ln.strip()]
            return None, " | ".join(tail[-3:])[:400]
        data = json.loads(report.read_text())
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in data.get("install", [])]
    for pin in pins:
        name = pin.split("==")[0].lower()
        if name in PINNED:
            return None, f"would change {pin}"
    return pins, ""


def _ensure_extras(name: str, venv: Path) -> tuple[Path, dict]:
    """Install optional libraries into an overlay dir for this venv; return (dir, status)."""
    spec = (venv / ".spec").read_text().strip()
    cutoff = spec.split("|", 1)[0]
    overlay = CACHE / "corpus-extras" / f"v{name}"
    stamp_text = json.dumps({"venv_spec": spec, "groups": EXTRA_GROUPS}, sort_keys=True)
    stamp = overlay / ".stamp"
    status_file = overlay / ".status.json"
    if stamp.exists() and stamp.read_text() == stamp_text and status_file.exists():
        return overlay, json.loads(status_file.read_text())

    import shutil

    shutil.rmtree(overlay, ignore_errors=True)
    overlay.mkdir(parents=True)
    pinned = _installed(venv, PINNED)
    constraints = overlay / ".constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in pinned.items() if v))
    status: dict = {}
    wanted: list[str] = []
    all_pkgs = [p for g in EXTRA_GROUPS.values() for p in g]
    pins, why = _resolve(venv, cutoff, constraints, all_pkgs)
    if pins is not None:
        wanted = pins
        status = {g: "installed" for g in EXTRA_GROUPS}
    else:  # resolve group by group, skip the ones that cannot be installed unchanged
        for group, pkgs in EXTRA_GROUPS.items():
            gp, gwhy = _resolve(venv, cutoff, constraints, pkgs)
            if gp is None:
                status[group] = f"not installed: {gwhy}"
            else:
                status[group] = "installed"
                wanted += [p for p in gp if p not in wanted]
    if wanted:
        proc = _pip(
            venv,
            ["install", "-q", "--no-deps", "--target", str(overlay), "--uploaded-prior-to", cutoff, *wanted],
        )
        if proc.returncode != 0:
            raise SystemExit(f"overlay install failed for v{name}:\n{proc.stderr[-2000:]}")
    status_file.write_text(json.dumps(status, sort_keys=True))
    stamp.write_text(stamp_text)
    print(f"[record_corpus] v{name} extras: {status}", file=sys.stderr)
    return overlay, status


def _run_worker(venv: Path, overlay: Path, args: list[str]) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", home),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONHASHSEED": "0",
            "PYTHONPATH": os.pathsep.join([str(overlay), str(TOOLS), str(TESTS)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        proc = subprocess.run(
            [str(venv / "bin" / "python"), str(Path(__file__).resolve()), "--worker", *args],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    if proc.returncode != 0:
        raise SystemExit(f"worker {args[0]} in {venv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", default=",".join(DEFAULT_WRITERS), help="venv names, e.g. 321,33x")
    parser.add_argument("--out-dir", default=str(OUT_DIR))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.worker:
        kind, out, *rest = opts.worker
        if kind == "writer":
            worker_writer(out)
        elif kind == "reader":
            worker_reader(out, rest)
        else:
            raise SystemExit(f"unknown worker {kind}")
        return

    writers = [w for w in opts.writers.split(",") if w]
    venvs = _venvs([READER, *writers])
    overlays = {n: _ensure_extras(n, p) for n, p in venvs.items()}
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        writer_out = {}
        for w in writers:
            path = str(Path(tmp) / f"writer-{w}.json")
            _run_worker(venvs[w], overlays[w][0], ["writer", path])
            writer_out[w] = path
        reader_path = str(Path(tmp) / "reader.json")
        _run_worker(venvs[READER], overlays[READER][0], ["reader", reader_path, *writer_out.values()])
        reader = json.loads(Path(reader_path).read_text())
        writer_data = {w: json.loads(Path(p).read_text()) for w, p in writer_out.items()}
        core_by_writer = {w: reader["core_serde"].get(p, {}) for w, p in writer_out.items()}

    rlibs = reader["libs"]
    rcases = {c["id"]: c for c in reader["cases"]}
    for w in writers:
        wdata = writer_data[w]
        wlibs = wdata["libs"]
        cases = []
        for wrow in wdata["cases"]:
            cid = wrow["id"]
            rrow = rcases[cid]
            case: dict = {"id": cid}
            skips = []
            if "skipped" in wrow:
                skips.append(f"writer v{w}: {wrow['skipped']}")
            if "skipped" in rrow:
                skips.append(f"reader v{READER}: {rrow['skipped']}")
            if skips:
                case["skipped"] = "; ".join(skips)
                cases.append(case)
                continue
            for key in ("serde", "serde_json", "serde_error"):
                if key in wrow:
                    case[key] = wrow[key]
            for key in ("legacy", "native", "legacy_error", "native_error"):
                if key in rrow:
                    case[key] = rrow[key]
            if cid in core_by_writer[w]:
                case["core_serde_318"] = core_by_writer[w][cid]
            cases.append(case)
        if [c["id"] for c in cases] != [c["id"] for c in reader["cases"]]:
            raise SystemExit("writer and reader case lists differ")
        doc = {
            "writer": {
                "airflow": wlibs["apache-airflow"],
                "airflow_core": wlibs["apache-airflow-core"],
                "task_sdk": wlibs["apache-airflow-task-sdk"],
                "venv": f"v{w}",
                "libraries": {k: v for k, v in wlibs.items() if not k.startswith("apache-airflow") or "providers" in k},
                "extras": overlays[w][1],
            },
            "reader": {
                "airflow": rlibs["apache-airflow"],
                "airflow_core": rlibs["apache-airflow-core"],
                "task_sdk": rlibs["apache-airflow-task-sdk"],
                "venv": f"v{READER}",
                "libraries": {k: v for k, v in rlibs.items() if not k.startswith("apache-airflow") or "providers" in k},
                "extras": overlays[READER][1],
            },
            "recording": {"PYTHONHASHSEED": "0", "TZ": "UTC", "values": "tools/corpus_values.py"},
            "cases": cases,
        }
        target = out_dir / f"sdk-{wlibs['apache-airflow-task-sdk']}.json"
        target.write_text(json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        n_skip = sum("skipped" in c for c in cases)
        n_serr = sum("serde_error" in c for c in cases)
        print(f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target}: {len(cases)} cases, "
              f"{n_skip} skipped, {n_serr} serde_error")


if __name__ == "__main__":
    main()
