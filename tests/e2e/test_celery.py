"""CeleryExecutor, live (issue 10): 3.2.1 on Celery writes, `airflow db downgrade -n 3.1.8`, 3.1.8 on Celery reads.

Every component, `airflow celery worker` included, is a process of its own (harness executor="celery"): Redis is the
broker, the PostgreSQL metadata DB the result backend, venvs 318c / 321c (the Celery provider at each Airflow's
cut-off). The resumed tasks must run on the worker (their recorded process ancestry goes through the worker's pid)
and receive what a never-upgraded 3.1.8 receives.

The oracle is the PostgreSQL LocalExecutor oracle (runs.get("postgres", "318"), already part of every `make test`):
what a resumed task receives is decoded in the task process from the `next_kwargs` the Execution API hands it, the
executor only decides which process that is. Checked once with a native 3.1.8 Celery oracle (opt-in below,
E2E_MATRIX=1): its records and final states equal the LocalExecutor oracle's (2026-12-02, this machine).
"""
from __future__ import annotations

import json

import pytest

import harness

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

#: tasks that resume after the rollback and record what they received (triggers and the deadline callback run in
#: the triggerer, not on a worker)
RESUMED = harness.BEFORE_TASKS + harness.AFTER_TASKS


def _rollback(runs):
    return runs.get("postgres", "321", executor="celery")


def test_celery_rollback_components_stay_up_and_every_task_finishes(runs):
    s = _rollback(runs)
    assert "post" not in s.errors, s.errors["post"]
    assert all(n == 0 for n in s.facts["log_crashes"].values()), s.facts["log_crashes"]
    assert harness.WORKER in s.facts["log_crashes"], s.facts["component_logs"]  # the worker was one of them
    states = {t: st for t, (st, _) in s.facts["post_states"].items() if t not in harness.STAYS_DEFERRED}
    assert states and all(st in harness.TERMINAL for st in states.values()), states
    w = s.facts["post_worker"]
    assert w["alive"] and w["ready"], w
    assert all(s.facts["post_active_line"].values()), s.facts["post_active_line"]  # the worker's bridge too


def test_celery_writer_wrote_32_format_rows_on_celery(runs):
    s = _rollback(runs)
    nk = s.facts["rows_after_downgrade"]["task_instance.next_kwargs"]
    assert any(v.startswith("serde") for v in nk.values()), nk
    pre = s.facts["results_pre"]
    assert pre, "the 3.2.1 writer recorded nothing"
    # the writer's own tasks (the uuid pull and reup_twin) ran on its Celery worker, too
    assert {k: v for k, v in s.facts.get("pre_ran_under", {}).items() if not k.startswith("trigger.")} == {
        "pull_uuid_now": harness.WORKER, "reup_twin": harness.WORKER}, s.facts.get("pre_ran_under")


def test_celery_resumed_tasks_ran_on_the_worker(runs):
    s = _rollback(runs)
    ran = s.facts["post_ran_under"]
    tasks = {n: c for n, c in ran.items() if not n.startswith("trigger.") and n != "deadline_callback"}
    missing = [t for t in RESUMED if t not in tasks]
    assert not missing, f"no record from {missing}: {ran}"
    assert all(c == harness.WORKER for c in tasks.values()), tasks
    w = s.facts["post_worker"]
    # the worker's own log: `Task execute_workload[...] received` / `succeeded`, one per task it ran
    assert w["succeeded"] == w["received"] >= len(tasks), w


def test_celery_resumed_tasks_receive_what_native_318_receives(runs):
    s = _rollback(runs)
    o = runs.get("postgres", "318")
    assert "post" not in s.errors, s.errors["post"]
    diffs = harness.compare_post(s, o)
    assert not diffs, "\n".join(diffs)


def test_celery_uuid_xcom_reads_like_the_writer(runs):
    s = _rollback(runs)
    pre, post = s.facts["results_pre"], s.facts["results_post"]
    assert post["pull_uuid_after"]["received"] == pre["pull_uuid_now"]["received"]


def _task_failures(log_text: str) -> list[dict]:
    """The "Task failed with exception" records of a 3.1.8 task log (JSON lines written by the supervisor)."""
    out = []
    for line in log_text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "Task failed with exception":
            out += rec.get("error_detail") or []
    return out


def test_celery_worker_without_the_switch_fails_the_resumed_task_with_the_reason(runs):
    """On a copy of the downgraded DB: every component bridged but the worker. Why the README says workers need it."""
    s = _rollback(runs)
    nb = s.facts["nobridge_worker"]
    summary = json.dumps({k: v for k, v in nb.items() if k not in ("task_logs", "results")}, indent=1, default=str)
    assert nb["env_switch"].pop(harness.WORKER) is None, summary
    assert set(nb["env_switch"].values()) == {"1"}, summary
    assert nb["active_line"].pop(harness.WORKER) is False, summary
    assert all(nb["active_line"].values()), summary
    assert all(nb["alive"].values()), summary  # nothing crashed: the failure is the task's
    assert all(n == 0 for n in nb["log_crashes"].values()), summary
    assert nb["worker"]["received"] > 0, summary  # the tasks were handed to that worker
    st = {t: nb["states"][t][0] for t in harness.BEFORE_TASKS}
    assert st["rich_before"] == "failed", summary
    assert "rich_before" not in nb["results"], nb["results"]  # it never reached its resume method
    logs = nb["task_logs"]["rich_before"]
    assert len(logs) == 1, summary
    (text,) = logs.values()
    failures = _task_failures(text)
    # the worker's task runner decodes next_kwargs itself (task-sdk 1.1.8 _execute_task ->
    # BaseSerialization.deserialize) and 3.1.8 cannot read the 3.2 format
    assert [(f["exc_type"], f["exc_value"], f["frames"][-1]["name"]) for f in failures] == [
        ("KeyError", "<Encoding.VAR: '__var'>", "deserialize")], text[-4000:]
    assert "_execute_task" in [fr["name"] for fr in failures[0]["frames"]], failures
    # the same task succeeds on the bridged worker of the real post phase
    assert s.facts["post_states"]["rich_before"][0] == "success"


@pytest.mark.e2e_matrix
def test_celery_native_318_oracle_equals_the_local_executor_oracle(runs):
    """The claim behind reusing the LocalExecutor oracle above (opt-in: E2E_MATRIX=1, ~5 min)."""
    c = runs.get("postgres", "318", executor="celery")
    o = runs.get("postgres", "318")
    assert not c.errors, c.errors
    tasks = {n: w for n, w in c.facts["post_ran_under"].items() if not n.startswith("trigger.") and n != "deadline_callback"}
    assert tasks and all(w == harness.WORKER for w in tasks.values()), tasks
    diffs = harness.compare_post(c, o)
    assert not diffs, "\n".join(diffs)
