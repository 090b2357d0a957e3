"""Life after the rollback (issue 11): the REST API, the UI and upgrading again, on the 3.2.1 -> 3.1.8 rollback.

The facts come from the extra phases of the cached scenarios (afterlife.py); every expectation comes from the DB,
from what the scheduler recorded, or from an oracle run, never from a constant.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

import afterlife
import harness

pytestmark = pytest.mark.e2e

DBS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
TARGETS = [pytest.param(t, id=harness.VERSION_OF[t]) for t in afterlife.REUPGRADE_TARGETS]


def rollback(runs, db) -> harness.Scenario:
    s = runs.get(db, "321")
    assert "post" not in s.errors, s.errors["post"]
    return s


def _calls(s, key):
    hook = "hook api"
    assert hook not in s.errors, s.errors[hook]
    return s.facts[key]["calls"]


# ---- the api-server through the official client --------------------------------------------------------------
@pytest.mark.parametrize("db", DBS)
def test_api_with_bridge_every_call_succeeds(runs, db):
    calls = _calls(rollback(runs, db), "api_reader")
    failed = {n: c for n, c in calls.items() if not c["ok"] or c["status"] != 200}
    assert not failed, json.dumps(failed, indent=1)


@pytest.mark.parametrize("db", DBS)
def test_api_with_bridge_returns_what_the_db_holds(runs, db):
    s = rollback(runs, db)
    calls, view = _calls(s, "api_reader"), s.facts["afterlife_db"]
    tis = view["tis"]
    runs_ = {r["run_id"]: r for r in calls["get_dag_runs"]["value"]["runs"]}
    assert runs_[view["run_id"]]["state"] == view["run_state"]
    assert view["writer_version_number"] in runs_[view["run_id"]]["dag_versions"]

    listed = {t["task_id"]: t for t in calls["get_task_instances"]["value"]["tis"]}
    assert set(listed) == set(tis)
    for task_id, ti in tis.items():
        got = listed[task_id]
        want = {k: ti[k] for k in ("state", "try_number", "trigger_id", "trigger_classpath")}
        assert {k: got[k] for k in want} == want, task_id

    deferred = {t for t, ti in tis.items() if ti["state"] == "deferred"}
    assert deferred == {afterlife.STILL_DEFERRED}, tis  # the DAG keeps exactly this one deferred
    got = {t["task_id"]: t for t in calls["get_task_instances(state=deferred)"]["value"]["tis"]}
    assert set(got) == deferred
    assert all(got[t]["trigger_id"] == tis[t]["trigger_id"] is not None for t in deferred)
    assert got[afterlife.STILL_DEFERRED]["triggerer_job_id"] is not None, "nobody runs the 3.2-written trigger"

    for task_id in (afterlife.RESUMED, afterlife.STILL_DEFERRED, "rich_before"):
        one = calls[f"get_task_instance({task_id})"]["value"]
        assert (one["state"], one["try_number"], one["trigger_id"]) == (
            tis[task_id]["state"], tis[task_id]["try_number"], tis[task_id]["trigger_id"])
        tries = calls[f"get_task_instance_tries({task_id})"]["value"]["tries"]
        # history rows the scheduler wrote, plus the current try
        want = sorted({(h["try_number"], h["state"]) for h in view["tries"].get(task_id, [])}
                      | {(tis[task_id]["try_number"], tis[task_id]["state"])})
        assert sorted((t["try_number"], t["state"]) for t in tries) == want, task_id

    assert calls["get_xcom_entries(push_uuid)"]["value"]["keys"] == sorted(view["xcom_keys"]["push_uuid"])
    pulled = s.facts["results_post"]["pull_uuid_after"]["received"]["value"]  # what the resumed task received
    assert pulled["type"] == "uuid.UUID", pulled
    uuid_str = re.fullmatch(r"UUID\('([0-9a-f-]+)'\)", pulled["repr"]).group(1)
    assert calls["get_xcom_entry(push_uuid, deserialize)"]["value"]["value"] == uuid_str
    assert calls["get_xcom_entry(push_uuid, deserialize+stringify)"]["value"]["value"] == uuid_str
    assert uuid_str.replace("-", "") in json.dumps(calls["get_xcom_entry(push_uuid, stored)"]["value"]["value"]) \
        or uuid_str in json.dumps(calls["get_xcom_entry(push_uuid, stored)"]["value"]["value"])

    assert calls["get_dag_details"]["value"]["latest_version"] == max(view["versions"])
    assert calls["get_dag_versions"]["value"]["versions"] == view["versions"]
    v = view["writer_version_number"]
    assert calls[f"get_dag_version({v})"]["value"]["version_number"] == v
    # the graph of the writer's (3.2-serialized, deadline alert) version: every task of the run
    assert set(tis) <= set(calls[f"ui structure_data(version {v})"]["value"])


@pytest.mark.parametrize("db", DBS)
def test_api_with_bridge_lists_the_same_states_as_native_318(runs, db):
    """The rolled-back API against the never-upgraded 3.1.8's API, task by task (uuid tasks: no native oracle)."""
    s, o = rollback(runs, db), runs.get(db, "318")
    mine = {t["task_id"]: t["state"] for t in _calls(s, "api_reader")["get_task_instances"]["value"]["tis"]}
    oracle = {t["task_id"]: t["state"] for t in _calls(o, "api_reader")["get_task_instances"]["value"]["tis"]}
    drop = harness.UUID_TASKS
    assert {k: v for k, v in mine.items() if k not in drop} == {k: v for k, v in oracle.items() if k not in drop}


@pytest.mark.parametrize("db", DBS)
def test_api_without_switch_fails_the_calls_that_read_3_2_rows(runs, db):
    """Same 3.1.8 api-server, AIRFLOW_SERDE_COMPAT unset: what fails is what reads a 3.2-format row, with a 500."""
    s = rollback(runs, db)
    with_ = _calls(s, "api_reader")
    without = _calls(s, "api_nobridge")
    failed = {n: c for n, c in without.items() if not c["ok"]}
    assert failed, "nothing failed without the bridge: the check proves nothing"
    assert f"get_task_instance({afterlife.STILL_DEFERRED})" in failed  # its next_kwargs/trigger are 3.2-written
    assert all(c["status"] == 500 for c in failed.values()), json.dumps(failed, indent=1)
    log = pathlib.Path(s.facts["api_nobridge"]["log"]).read_text(errors="replace")
    assert harness.CRASH_RE.search(log), "the failing calls are not the serde KeyError"
    # What still answers returns what it returns with the bridge, except the uuid XCom: without the bridge 3.1.8's
    # serde cannot decode uuid.UUID and the API hands out a placeholder string instead of the value (no error).
    wrong = {n for n, c in without.items() if c["ok"] and c["value"] != with_[n]["value"]}
    assert wrong == {"get_xcom_entry(push_uuid, deserialize)", "get_xcom_entry(push_uuid, deserialize+stringify)"}, {
        n: (without[n]["value"], with_[n]["value"]) for n in wrong}
    uuid_str = with_["get_xcom_entry(push_uuid, deserialize)"]["value"]["value"]
    assert all(uuid_str in without[n]["value"]["value"] != uuid_str for n in wrong)


@pytest.mark.parametrize("db", DBS)
def test_no_planted_secret_in_logs(runs, db):
    s = rollback(runs, db)
    assert "secret_in_logs" in s.facts, s.errors
    assert s.facts["secret_in_logs"] == []


@pytest.mark.parametrize("db", DBS)
def test_no_planted_secret_in_api_responses_outside_trigger_kwargs(runs, db):
    s = rollback(runs, db)
    for key in ("api_reader", "api_nobridge"):
        _calls(s, key)
        hits = [h for h in s.facts[key]["secret_hits"] if not re.search(r"\.trigger\.kwargs$", h[1])]
        assert hits == [], (key, hits)


@pytest.mark.parametrize("db", DBS)
@pytest.mark.xfail(strict=True, reason="Airflow 3.1.8 itself returns str(decrypted trigger kwargs) in "
                   "TaskInstanceResponse.trigger.kwargs (native 3.1.8 too, see the oracle test); 3.3 returns '{}'")
def test_no_planted_secret_in_api_trigger_kwargs(runs, db):
    s = rollback(runs, db)
    assert s.facts["api_reader"]["secret_hits"] == []


@pytest.mark.parametrize("db", DBS)
def test_native_318_api_exposes_trigger_kwargs_the_same_way(runs, db):
    """Why the xfail above is Airflow's: the never-upgraded 3.1.8 returns the planted secret in the same fields."""
    s, o = rollback(runs, db), runs.get(db, "318")
    _calls(o, "api_reader")
    def where(hits):  # list positions depend on the listing order, not on what is exposed
        return sorted((call, re.sub(r"\[\d+\]", "[]", path)) for call, path in hits)

    mine, native = where(s.facts["api_reader"]["secret_hits"]), where(o.facts["api_reader"]["secret_hits"])
    assert mine, "the planted secret reached no response: the xfail above would prove nothing"
    assert mine == native


# ---- the UI in a real browser ---------------------------------------------------------------------------------
_ERROR_PAGE = re.compile(r"Something went wrong|Internal Server Error|Page not found|\b404\b|Unexpected error",
                         re.IGNORECASE)


def _ui(s):
    assert "hook ui" not in s.errors, s.errors["hook ui"]
    return s.facts["ui_reader"]


@pytest.mark.parametrize("db", DBS)
def test_ui_pages_load_without_errors(runs, db):
    s = rollback(runs, db)
    ui = _ui(s)
    assert "/auth/login" not in ui["login"]["after_login_url"], ui["login"]
    for page in ui["pages"]:
        print(f"{page['name']}: {page['screenshot']}")
        bad = [r for r in page.get("bad_responses", []) if r["status"] >= 500]
        assert not bad, (page["name"], bad)
        assert not page.get("page_errors"), (page["name"], page["page_errors"])
        assert not _ERROR_PAGE.search(page["text"]), (page["name"], page["text"][:2000])
        assert not page.get("waits_timed_out"), (page["name"], page["waits_timed_out"], page["text"][:2000])
        assert page.get("xhr"), f"{page['name']}: the page made no API call (not rendered?)"
        assert pathlib.Path(page["screenshot"]).stat().st_size > 10_000


@pytest.mark.parametrize("db", DBS)
def test_ui_shows_the_states_the_scheduler_recorded(runs, db):
    s = rollback(runs, db)
    ui, tis = _ui(s), s.facts["afterlife_db"]["tis"]
    pages = {p["name"]: p for p in ui["pages"]}
    for task_id in (afterlife.RESUMED, afterlife.STILL_DEFERRED):
        text = pages[f"ti_{task_id}"]["text"].lower()
        assert tis[task_id]["state"] in text, (task_id, tis[task_id], text[:2000])
    # the run's task-instance table: "<task_id>\n\t\t\n<State>\t<start>\t<try>..." per row
    listing = pages["grid"]["text"].lower()
    table = listing[listing.index("task instances\ntask id"):] if "task instances\ntask id" in listing else listing
    rows = dict(re.findall(r"\n([a-z0-9_]+)\n\n\t\t\n([a-z_ ]+)\t", table))
    assert rows == {t: ti["state"] for t, ti in tis.items()}, (rows, table[:3000])


# ---- upgrading again ------------------------------------------------------------------------------------------
def reup(s, target):
    key = f"hook reupgrade_{target}"
    assert key not in s.errors, s.errors[key]
    return s.facts["reupgrade"][target]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("db", DBS)
def test_reupgrade_components_stay_up_and_the_deferred_task_resumes(runs, db, target):
    f = reup(rollback(runs, db), target)
    assert f["alive"] and all(f["alive"].values()), f["alive"]
    assert f["states"][afterlife.STILL_DEFERRED][0] == "success", f["states"]
    problems = {c: p for c, p in f["log_problems"].items() if p}
    assert not problems, (problems, f["component_logs"])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("db", DBS)
def test_reupgrade_resumes_with_what_a_never_rolled_back_run_gives(runs, db, target):
    """Oracle: reup_twin, the same deferral resumed by the 3.2.1 writer itself before any rollback."""
    s = rollback(runs, db)
    f = reup(s, target)
    twin = harness.TWINS[afterlife.STILL_DEFERRED]
    oracle = s.facts["results_pre"][twin]["received"]
    assert f["results"][afterlife.STILL_DEFERRED]["received"] == oracle
    # what its trigger was constructed with (label / gate name the task, the rest must be equal)
    strip = lambda rec: [kv for kv in rec["received"].items() if kv[0] not in ("label", "gate")]  # noqa: E731
    got = f["results"][f"trigger.{afterlife.STILL_DEFERRED}"]
    assert strip(got) == strip(s.facts["results_pre"][f"trigger.{twin}"])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("db", DBS)
def test_reupgrade_keeps_finished_work_and_every_row(runs, db, target):
    f = reup(rollback(runs, db), target)
    before, final = f["before"], f["final"]
    for table in ("task_instance", "task_instance_history", "dag_run"):
        lost = set(before[table]) - set(final[table])
        assert not lost, (table, sorted(lost))
        changed = {k: (v, final[table][k]) for k, v in before[table].items()
                   if v in harness.TERMINAL | {"success", "failed"} and final[table][k] != v}
        assert not changed, (table, changed)
    for table in ("xcom", "dag_version"):
        assert set(before[table]) <= set(final[table]), (table, set(before[table]) - set(final[table]))
    assert final["asset_event"] >= before["asset_event"]
    # the migration itself (before any component ran) loses nothing either
    assert set(before["task_instance"]) == set(f["after_migrate"]["task_instance"])
    assert before["task_instance"] == f["after_migrate"]["task_instance"]
