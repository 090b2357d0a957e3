"""Life after the rollback (issue 11): the REST API, the UI and upgrading again, on the e2e scenario's deployment.

Extra phases of harness.Scenario (stdlib only, like the harness), attached by conftest.Runs:
  api         while the reader is up: the official client against its api-server (afterlife_client.py), then
              the same calls against a second 3.1.8 api-server of the same install with AIRFLOW_SERDE_COMPAT unset.
  ui          while the reader is up: chromium (headless, playwright) logs in and opens the grid of the rolled-back
              run and the pages of a resumed and of a still-deferred task (afterlife_ui.py).
  reupgrade   once the reader stopped: `airflow db migrate` with 3.2.1 / 3.3.x on a copy of the DB, their
              components started, gate "reupgrade" opened, reup_after resumes; rows and states compared.
Nothing here decides what is right: test_afterlife.py compares these facts with the DB and with the oracles.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import harness

sys.path.insert(0, str(harness.DAGS_SRC))
from e2e_common import TRIGGER_SECRET  # noqa: E402  (stdlib-only module, shared with the DAGs)

CLIENT = pathlib.Path(__file__).with_name("afterlife_client.py")
UI = pathlib.Path(__file__).with_name("afterlife_ui.py")
RESUMED = "rich_after"  # deferred under the writer (3.2 trigger row), fired and resumed under 3.1.8
STILL_DEFERRED = harness.STAYS_DEFERRED[0]
REUPGRADE_TARGETS = ("321", "33x")


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        raise harness.E2EError("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return path


def _q(db, sql):
    return db.query(sql)


def db_view(s: harness.Scenario) -> dict:
    """What the scheduler recorded for the rolled-back run, read from the DB (the reference of the API/UI checks)."""
    db, dag = s.site.db, harness.DAG_ID
    run_id, run_state, created_v = _q(db, f"SELECT run_id, state, created_dag_version_id FROM dag_run "
                                          f"WHERE dag_id='{dag}'")[0]
    versions = {str(i): int(n) for i, n in _q(db, f"SELECT id, version_number FROM dag_version WHERE dag_id='{dag}'")}
    tis = {}
    for task_id, state, try_number, trigger_id, next_method, vid in _q(
            db, f"SELECT task_id, state, try_number, trigger_id, next_method, dag_version_id FROM task_instance "
                f"WHERE dag_id='{dag}' AND run_id='{run_id}'"):
        tis[task_id] = {"state": state or None, "try_number": int(try_number),
                        "trigger_id": int(trigger_id) if trigger_id not in (None, "") else None,
                        "next_method": next_method or None,
                        "dag_version_number": versions.get(str(vid)) if vid not in (None, "") else None}
    tries = {}
    for task_id, try_number, state in _q(db, f"SELECT task_id, try_number, state FROM task_instance_history "
                                             f"WHERE dag_id='{dag}' AND run_id='{run_id}'"):
        tries.setdefault(task_id, []).append({"try_number": int(try_number), "state": state or None})
    classpaths = {int(i): cp for i, cp in _q(db, 'SELECT id, classpath FROM "trigger"')}
    for v in tis.values():
        v["trigger_classpath"] = classpaths.get(v["trigger_id"])
    xcom_keys = {}
    for task_id, key in _q(db, f"SELECT task_id, key FROM xcom WHERE dag_id='{dag}' AND run_id='{run_id}'"):
        xcom_keys.setdefault(task_id, []).append(key)
    return {"run_id": run_id, "run_state": run_state, "writer_version_number": versions[str(created_v)],
            "versions": sorted(versions.values()), "tis": tis, "tries": tries, "xcom_keys": xcom_keys}


def _api_venv_run(script: pathlib.Path, cfg: dict, name: str, workdir: pathlib.Path, timeout=300) -> dict:
    d = workdir / "afterlife"
    d.mkdir(exist_ok=True)
    cfg_path, out_path = d / f"{name}.config.json", d / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    py = harness.venv("api") / "bin/python"
    p = subprocess.run([str(py), str(script), str(cfg_path), str(out_path)], capture_output=True, text=True,
                       timeout=timeout)
    (d / f"{name}.stderr.txt").write_text(p.stdout + p.stderr)
    if p.returncode or not out_path.exists():
        raise harness.E2EError(f"{script.name} ({name}) exited {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}")
    return json.loads(out_path.read_text())


def _password(site) -> str:
    f = site.home / "simple_auth_manager_passwords.json.generated"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            return json.loads(f.read_text())["admin"]
        time.sleep(1)
    raise harness.E2EError(f"the api-server wrote no SimpleAuthManager password for admin to {f}")


def _wait_listening(port: int, component, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not component.alive():
            raise harness.E2EError(f"{component.name} exited {component.popen.returncode}:\n"
                                   f"{harness.tail(component.log)}")
        time.sleep(0.5)
    raise harness.E2EError(f"{component.name} not listening on {port} after {timeout}s")


def secret_hits(bodies: list) -> list:
    """Where TRIGGER_SECRET shows up in the response bodies: (call, JSON path) pairs."""
    hits = []

    def walk(v, path, call):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}", call)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]", call)
        elif isinstance(v, str) and TRIGGER_SECRET in v:
            hits.append([call, path])

    for b in bodies:
        if TRIGGER_SECRET not in b["body"]:
            continue
        try:
            walk(json.loads(b["body"]), "$", b["call"])
        except ValueError:
            hits.append([b["call"], "<not JSON>"])
    return hits


def secret_in_logs(s: harness.Scenario) -> list:
    """Component and CLI logs of every phase, and the task logs, that contain TRIGGER_SECRET."""
    found = []
    for root in (s.site.logs, s.site.home / "logs"):
        for f in sorted(root.rglob("*")) if root.exists() else []:
            if f.is_file() and TRIGGER_SECRET in f.read_text(errors="replace"):
                found.append(str(f))
    return found


def _client_cfg(s, base_url, view, password):
    return {"base_url": base_url, "username": "admin", "password": password, "dag_id": harness.DAG_ID,
            "run_id": view["run_id"], "task_ids": [RESUMED, STILL_DEFERRED, "rich_before"], "xcom_task": "push_uuid",
            "writer_version_number": view["writer_version_number"]}


def api(s: harness.Scenario, components) -> None:
    site = s.site
    view = db_view(s)
    s.facts["afterlife_db"] = view
    password = _password(site)
    got = _api_venv_run(CLIENT, _client_cfg(s, f"http://127.0.0.1:{site.port}", view, password), "api-reader",
                        s.workdir)
    s.facts["api_reader"] = {"calls": got["calls"], "secret_hits": secret_hits(got["bodies"])}
    site.check_alive(components)
    if s.oracle:
        return
    # The same 3.1.8 install with the switch unset, on the same DB, next to the running deployment.
    port = harness.free_port()
    c = site.start(s.reader_venv, "post", "api-server-nobridge", bridge=False, args=["api-server", "--port", str(port)])
    try:
        _wait_listening(port, c)
        got = _api_venv_run(CLIENT, _client_cfg(s, f"http://127.0.0.1:{port}", view, password), "api-nobridge",
                            s.workdir)
        s.facts["api_nobridge"] = {"calls": got["calls"], "secret_hits": secret_hits(got["bodies"]),
                                   "log": str(c.log), "alive": c.alive()}
    finally:
        site.stop_one(c) if hasattr(site, "stop_one") else _stop(site, c)
    site.check_alive(components)


def _stop(site, c):
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(c.popen.pid, signal.SIGTERM)
    try:
        c.popen.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.popen.pid, signal.SIGKILL)
        c.popen.wait(10)
    site.components.remove(c)


def ui(s: harness.Scenario, components) -> None:
    site = s.site
    view = s.facts.get("afterlife_db") or db_view(s)
    shots = s.workdir / "afterlife" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    run, dag = view["run_id"], harness.DAG_ID
    from urllib.parse import quote

    rq = quote(run, safe="")
    cfg = {"base_url": f"http://127.0.0.1:{site.port}", "username": "admin", "password": _password(site),
           "chromium": chromium(), "screenshots": str(shots),
           "pages": [
               # the grid of the run, next to its task-instance table
               {"name": "grid", "path": f"/dags/{dag}/runs/{rq}", "wait_for_text": ["Task Instances", RESUMED]},
               {"name": f"ti_{RESUMED}", "path": f"/dags/{dag}/runs/{rq}/tasks/{RESUMED}", "wait_for_text": [RESUMED]},
               {"name": f"ti_{STILL_DEFERRED}", "path": f"/dags/{dag}/runs/{rq}/tasks/{STILL_DEFERRED}",
                "wait_for_text": [STILL_DEFERRED]},
           ]}
    got = _api_venv_run(UI, cfg, "ui-reader", s.workdir, timeout=600)
    s.facts["ui_reader"] = got
    harness.log(f"  UI screenshots: {shots}")
    site.check_alive(components)


# ---- upgrading again ---------------------------------------------------------------------------------------
def inventory(db) -> dict:
    """Every row identity and state the re-upgrade must keep (all DAGs)."""
    def rows(sql):
        return [tuple("" if v is None else str(v) for v in r) for r in db.query(sql)]

    out = {
        "task_instance": {"|".join(r[:4]): r[4] for r in rows(
            "SELECT dag_id, task_id, run_id, map_index, state FROM task_instance")},
        "task_instance_history": {"|".join(r[:5]): r[5] for r in rows(
            "SELECT dag_id, task_id, run_id, map_index, try_number, state FROM task_instance_history")},
        "dag_run": {"|".join(r[:2]): r[2] for r in rows("SELECT dag_id, run_id, state FROM dag_run")},
        "xcom": sorted("|".join(r) for r in rows("SELECT dag_id, task_id, run_id, map_index, key FROM xcom")),
        "dag_version": sorted("|".join(r) for r in rows("SELECT dag_id, version_number FROM dag_version")),
        "asset_event": int(db.query("SELECT COUNT(*) FROM asset_event")[0][0]),
    }
    return out


_LOG_PROBLEMS = re.compile(r"Traceback|DeserializationError|KeyError: <Encoding|Error deserializ|"
                           r"Trigger runner process has died|Executor reports task instance")


def _reupgrade(s: harness.Scenario, target: str) -> None:
    site, base = s.site, s.site.db
    phase = f"reupgrade-{target}"
    fact = s.facts.setdefault("reupgrade", {}).setdefault(target, {})
    fact["before"] = inventory(base)
    snap = base.snapshot(f"reup{target}")
    site.db = snap
    try:
        tv = harness.venv(s._vn(target))
        t = time.monotonic()
        site.cli(tv, phase, ["db", "migrate"], timeout=900)
        fact["migrate_s"] = round(time.monotonic() - t, 1)
        fact["after_migrate"] = inventory(snap)
        cs = site.start_all(tv, phase)
        site.wait_port()
        site.open_gate("reupgrade")
        rec = site.results / phase / f"{STILL_DEFERRED}.json"

        def resumed():
            st = site.ti_states()
            return st.get(STILL_DEFERRED, (None,))[0] in harness.TERMINAL and rec.exists() and st

        try:
            site.wait_for(f"{STILL_DEFERRED} resumed under {harness.VERSION_OF[target]}", resumed, timeout=300,
                          components=cs)
            time.sleep(5)  # components must still be up a little after it finished
            fact["alive"] = {c.name: c.alive() for c in cs}
            site.check_alive(cs)
        finally:
            fact["final"] = inventory(snap)
            fact["states"] = site.ti_states()
            fact["log_problems"] = {c.name: _LOG_PROBLEMS.findall(pathlib.Path(c.log).read_text(errors="replace"))
                                    for c in cs}
            fact["component_logs"] = {c.name: str(c.log) for c in cs}
            site.stop_all()
            with contextlib.suppress(Exception):
                site.wait_port_free()
        fact["results"] = site.read_results(phase)
    finally:
        site.db = base
        if snap is not base and s.db_kind != "sqlite":
            with contextlib.suppress(Exception):
                snap.drop()


def reupgrade_321(s):
    _reupgrade(s, "321")


def reupgrade_33x(s):
    _reupgrade(s, "33x")


def logs(s: harness.Scenario) -> None:
    """Last extra phase: every log written so far (all phases, all components, task logs) searched for the secret."""
    s.facts["secret_in_logs"] = secret_in_logs(s)


def attach(s: harness.Scenario) -> None:
    """The extra phases for the scenarios they need (issue 11): API on the oracle and on the 3.2.1 rollback; UI and
    re-upgrade on the 3.2.1 rollback only (SQLite + PostgreSQL)."""
    if s.oracle:
        s.while_reader_up.append(api)
    elif s.writer == "321" and s.db_kind in ("sqlite", "postgres"):
        s.while_reader_up += [api, ui]
        s.after_reader += [reupgrade_321, reupgrade_33x, logs]
