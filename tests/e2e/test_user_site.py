"""The official image's layout (issue 10): Airflow in a user site (`pip install --user`), not a venv.

`tools/venvs.sh user318` is a PYTHONUSERBASE filled by `pip install --user apache-airflow==3.1.8` (cut-off
2026-03-12, PyPI only) with a plain CPython (pyenv's 3.11, not a venv), like /home/airflow/.local. A scratch copy
of it gets `pip install --user <the wheel>`; then the real api-server, dag-processor, scheduler (LocalExecutor)
and triggerer run from that user site with AIRFLOW_SERDE_COMPAT=1, and a DAG's task runs.

"Patched" is what tests/airflow/test_activation.py checks: `vars(BaseSerialization)["deserialize"]` wraps 3.1's
function. Each process reports it itself: a probe `.pth` (test instrumentation, added to the scratch user site
after the install checks) registers a post-import hook on `airflow.serialization.serialized_objects` that runs
after the bridge's own hook and writes pid, argv and the patch state; the task checks it in its own code.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

import harness

pytestmark = pytest.mark.e2e

PROBE_MODULE = '''
import json, os, sys
def _hook(module):
    raw = vars(module.BaseSerialization)["deserialize"]
    patched = getattr(raw.__func__, "__wrapped__", None) is not None
    out = os.path.join(os.environ["E2E_PATCH_PROBE"], f"{os.getpid()}.json")
    with open(out, "w") as f:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv, "patched": patched,
                   "executable": sys.executable}, f)
import wrapt
wrapt.register_post_import_hook(_hook, "airflow.serialization.serialized_objects")
'''

PROBE_DAG = '''
import json, os, pendulum
from airflow.sdk import dag, task

@dag(schedule="@once", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def user_site_probe():
    @task
    def check():
        from airflow.serialization.serialized_objects import BaseSerialization
        import airflow_serde_compat
        raw = vars(BaseSerialization)["deserialize"]
        out = {"pid": os.getpid(), "patched": getattr(raw.__func__, "__wrapped__", None) is not None,
               "active": airflow_serde_compat.is_active(), "bridge_file": airflow_serde_compat.__file__}
        with open(os.path.join(os.environ["E2E_PATCH_PROBE"], "task.json"), "w") as f:
            json.dump(out, f)
    check()

user_site_probe()
'''

COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")


def _freeze(py, userbase) -> set[str]:
    out = subprocess.run([py, "-m", "pip", "freeze", "--user", "--disable-pip-version-check"], check=True,
                         capture_output=True, text=True, env=_env(userbase)).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _env(userbase, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
    e.update(PYTHONUSERBASE=str(userbase), PIP_CONFIG_FILE="/dev/null", PATH=f"{userbase}/bin:{e.get('PATH', '')}")
    e.update(extra)
    return e


def _own_site_listing(py) -> dict:
    """The interpreter's own site-packages: every entry with its size and mtime (must not change)."""
    purelib = subprocess.run([py, "-s", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    root = pathlib.Path(purelib)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def user_site(tmp_path_factory):
    base = harness.venv("user318")
    py = next(f for f in (base / ".spec").read_text().strip().split("|") if f.startswith("/"))
    work = tmp_path_factory.mktemp("usersite")
    facts: dict = {"python": py}
    # Not a venv: the official image's interpreter with a user site.
    facts["is_venv"] = subprocess.run([py, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                                      check=True, capture_output=True, text=True).stdout.strip()
    t0 = time.monotonic()
    userbase = work / "userbase"
    shutil.copytree(base, userbase, symlinks=True)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "dist"), str(harness.REPO)],
                   check=True, capture_output=True)
    wheel = next((work / "dist").glob("airflow_serde_compat-*.whl"))
    own_before = _own_site_listing(py)
    before = _freeze(py, userbase)
    p = subprocess.run([py, "-m", "pip", "install", "--user", "--disable-pip-version-check", "--no-warn-script-location",
                        "--root-user-action=ignore", str(wheel)], capture_output=True, text=True, env=_env(userbase))
    assert p.returncode == 0, p.stdout + p.stderr
    facts["after"] = _freeze(py, userbase)
    facts["before"] = before
    own_after = _own_site_listing(py)
    facts["own_site_changed"] = sorted(k for k in set(own_before) | set(own_after) if own_before.get(k) != own_after.get(k))
    facts["own_site_entries"] = len(own_after)
    usersite = subprocess.run([py, "-c", "import site; print(site.getusersitepackages())"], check=True,
                              capture_output=True, text=True, env=_env(userbase)).stdout.strip()
    facts["usersite"] = usersite
    facts["doctor"] = subprocess.run([str(userbase / "bin/airflow-serde-compat"), "doctor"], capture_output=True,
                                     text=True, env=_env(userbase, AIRFLOW_SERDE_COMPAT="1", AIRFLOW_HOME=str(work)))
    facts["install_s"] = round(time.monotonic() - t0, 1)

    # The components, from the user site (probe added now, after the install checks above).
    probe_dir = work / "probe"
    probe_dir.mkdir()
    (pathlib.Path(usersite) / "serde_probe.py").write_text(PROBE_MODULE)
    (pathlib.Path(usersite) / "zz_serde_probe.pth").write_text(
        'import os; os.environ.get("E2E_PATCH_PROBE") and __import__("serde_probe")\n')
    db = harness.SqliteDB(work / "airflow.db")
    site = harness.AirflowSite(work / "site", db, fire_after=60, before_delay=30)
    shutil.rmtree(site.dags)
    site.dags.mkdir()
    (site.dags / "user_site_probe.py").write_text(PROBE_DAG)
    site.extra_env = {"PYTHONUSERBASE": str(userbase), "VIRTUAL_ENV": None, "E2E_PATCH_PROBE": str(probe_dir)}
    t1 = time.monotonic()
    try:
        site.cli(userbase, "user", ["db", "migrate"], timeout=600)
        cs = site.start_all(userbase, "user", bridge=True)

        def done():
            recs = [json.loads(p.read_text()) for p in probe_dir.glob("[0-9]*.json")]
            seen = {c for c in COMPONENTS if any(c in " ".join(r["argv"]) for r in recs)}
            return (probe_dir / "task.json").exists() and seen == set(COMPONENTS) and recs

        site.wait_for("every component and the task reported its patch state", done, timeout=300, components=cs)
        time.sleep(3)
        site.check_alive(cs)
        facts["probes"] = [json.loads(p.read_text()) for p in sorted(probe_dir.glob("[0-9]*.json"))]
        facts["task"] = json.loads((probe_dir / "task.json").read_text())
        facts["pids"] = {c.name: c.popen.pid for c in cs}
        facts["logs"] = {c.name: pathlib.Path(c.log).read_text(errors="replace") for c in cs}
    finally:
        site.stop_all()
        facts["components_s"] = round(time.monotonic() - t1, 1)
        print(f"user site: install {facts['install_s']}s, components {facts['components_s']}s", file=sys.stderr)
    return facts


def test_user_site_is_not_a_venv_and_the_install_adds_only_the_bridge_and_orjson(user_site):
    assert user_site["is_venv"] == "False", user_site["python"]
    before, after = user_site["before"], user_site["after"]
    assert before <= after, f"changed distributions: {sorted(before - after)}"
    added = {re.split(r"[=@ ]", line)[0].lower().replace("_", "-") for line in after - before}
    assert added == {"airflow-serde-compat", "orjson"}, sorted(after - before)
    assert any(line.lower().startswith("apache-airflow-core==3.1.8") for line in before)


def test_the_interpreters_own_site_packages_is_untouched(user_site):
    assert user_site["own_site_changed"] == []


def test_the_pth_is_in_the_user_site_and_doctor_reports_patched(user_site):
    usersite = user_site["usersite"]
    assert (pathlib.Path(usersite) / "airflow_serde_compat.pth").is_file()
    d = user_site["doctor"]
    assert d.returncode == 0, d.stdout + d.stderr
    assert "bridge active in this process: yes" in d.stdout
    assert f".pth: {usersite}/airflow_serde_compat.pth" in d.stdout, d.stdout


def test_every_component_process_and_the_task_are_patched(user_site):
    # `airflow db migrate` ran without AIRFLOW_SERDE_COMPAT: the probe sees it unpatched (the control).
    control = [p for p in user_site["probes"] if p["argv"][1:3] == ["db", "migrate"]]
    assert control and not any(p["patched"] for p in control), control
    probes = [p for p in user_site["probes"] if p not in control]
    unpatched = [p for p in probes if not p["patched"]]
    assert not unpatched, unpatched
    for name in COMPONENTS:
        mine = [p for p in probes if name in " ".join(p["argv"])]
        assert mine, (name, probes)
        # The component's own process (the one the harness started) is among them.
        assert user_site["pids"][name] in {p["pid"] for p in mine}, (name, user_site["pids"], mine)
        assert all(p["executable"] == user_site["python"] for p in mine), mine
    task = user_site["task"]
    assert task["patched"] and task["active"], task
    assert task["bridge_file"].startswith(user_site["usersite"]), task
    assert task["pid"] not in user_site["pids"].values()


def test_every_component_logs_the_activation_line_and_no_failure(user_site):
    for name, text in user_site["logs"].items():
        assert "airflow-serde-compat active (apache-airflow-core 3.1.8)" in text, name
        # The .pth itself activated (it runs while site.py adds the user site): no fallback to the entry point.
        assert "activation failed" not in text, (name, text[:3000])
