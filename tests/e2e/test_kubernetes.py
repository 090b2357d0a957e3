"""KubernetesExecutor after a 3.2.1 -> 3.1.8 rollback on PostgreSQL (the reporter's setup, apache/airflow#68317).

On two copies of the downgraded DB of the postgres-3.2.1 scenario (k8s.py has the how and why):
* chart: the pod template the official chart renders with `env: [{name: AIRFLOW_SERDE_COMPAT, value: "1"}]`;
  every task the LocalExecutor reader resumes is resumed here in a pod built by the real KubernetesExecutor and
  run with exactly that pod's environment; what the tasks record must equal the native 3.1.8 oracle's.
* custom: a user's own pod template without the chart's `env:`; the *_before tasks resume in pods without the
  switch, and fail: what the user sees is asserted below.
"""
from __future__ import annotations

import json

import pytest

import harness
import k8s

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DB, WRITER = "postgres", "321"


def _phase(runs, name):
    s = runs.get(DB, WRITER)
    err = {k: v for k, v in s.errors.items() if "k8s" in k or k == "post"}
    assert not err, err
    return s, s.facts[f"k8s_{name}"]


def test_components_stay_up_and_every_task_ran_in_a_pod_built_by_the_executor(runs):
    s, f = _phase(runs, "chart")
    assert all(f["alive"].values()) and set(f["alive"]) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert all(n == 0 for n in f["log_crashes"].values()), f["log_crashes"]
    assert not f["kubelet_errors"], f["kubelet_errors"]
    # Every TI that finished in this phase ran in a pod (the LocalExecutor is not configured anywhere here).
    ran = {r["task_id"] for r in f["runs"].values()}
    resumed = set(harness.BEFORE_TASKS + harness.AFTER_TASKS)
    assert resumed <= ran, (sorted(resumed - ran), f["states"])
    assert all(r["exit"] == 0 for r in f["runs"].values() if r["task_id"] in resumed), {
        n: (r["task_id"], r["exit"]) for n, r in f["runs"].items()}
    # What the executor POSTed: the chart template's base container, its args the Task SDK's workload runner.
    for body in f["created"]:
        base = next(c for c in body["spec"]["containers"] if c["name"] == "base")
        assert base["args"][:4] == ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string"]
        workload = json.loads(base["args"][4])
        assert workload["ti"]["dag_id"] in (harness.DAG_ID, "e2e_asset_consumer") and workload["token"]
        assert base["image"] == ":".join(k8s.IMAGE)
        env = {e["name"]: e.get("value") for e in base["env"]}
        assert env["AIRFLOW_SERDE_COMPAT"] == "1"
        assert "command" not in base or not base["command"]
    st = {t: v for t, (v, _) in f["states"].items()}
    assert st["reup_after"] == "deferred"


def test_tasks_resumed_in_pods_record_what_native_3_1_8_records(runs):
    s, f = _phase(runs, "chart")
    o = runs.get(DB, "318")

    class View:  # the k8s phase, in the shape compare_post reads
        facts = {"results_post": f["results"], "post_states": f["states"],
                 "rows_after_writer": s.facts["rows_after_writer"], "rows_after_downgrade": s.facts["rows_after_downgrade"]}

    diffs = harness.compare_post(View, o)
    assert not diffs, "\n".join(diffs)
    assert set(harness.BEFORE_TASKS + harness.AFTER_TASKS) <= set(f["results"]), sorted(f["results"])


def test_the_pod_process_had_exactly_the_pods_environment(runs):
    s, f = _phase(runs, "chart")
    # Kubelet.container_env built each pod's env from the POSTed spec; image_env added the image's ENV only.
    for name, r in f["runs"].items():
        image = {"PATH", "HOME", "AIRFLOW_HOME", "AIRFLOW_USER_HOME_DIR", "LANG", "LC_ALL"}
        extra = set(r["env"]) - set(r["container_env"]) - image
        assert all(k.startswith("E2E_") for k in extra), (name, sorted(extra))
        assert r["env"]["AIRFLOW_SERDE_COMPAT"] == "1"
        assert not any(k.startswith(("PYTHON", "VIRTUAL_ENV")) for k in r["env"]), sorted(r["env"])


def test_custom_template_without_the_switch_fails_the_resumed_tasks_with_the_keyerror_in_the_task_log(runs):
    """What the user sees: the pod exits 0 (the supervisor ran fine), the task instance is failed, and its task
    log (the UI's log view) has one `Task failed with exception` record: KeyError <Encoding.VAR: '__var'>,
    raised by 3.1.8's BaseSerialization.deserialize called from the Task SDK's _execute_task."""
    s, f = _phase(runs, "custom")
    assert all(f["alive"].values()), f["alive"]
    runs_by_task = {r["task_id"]: r for r in f["runs"].values()}
    seen = {}
    for t in harness.BEFORE_TASKS:
        r = runs_by_task[t]
        assert "AIRFLOW_SERDE_COMPAT" not in r["env"], t
        failures = []
        for line in k8s.task_log(r).splitlines():
            rec = json.loads(line)
            if rec.get("event") == "Task failed with exception":
                e = rec["error_detail"][0]
                failures.append((e["exc_type"], e["exc_value"], [(fr["filename"].split("site-packages/")[-1], fr["name"])
                                                                  for fr in e["frames"]]))
        seen[t] = {"state": f["states"][t][0], "exit": r["exit"], "failures": failures}
    print(json.dumps(seen, indent=1))
    for t, v in seen.items():
        assert v["state"] == "failed" and v["exit"] == 0, (t, v)
        ((exc_type, exc_value, frames),) = v["failures"]
        assert (exc_type, exc_value) == ("KeyError", "<Encoding.VAR: '__var'>"), (t, v)
        assert frames[-1] == ("airflow/serialization/serialized_objects.py", "deserialize"), frames
        assert ("airflow/sdk/execution_time/task_runner.py", "_execute_task") in frames, frames
