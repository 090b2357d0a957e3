"""The way out (issue 12) on real 3.2.x rows after a real downgrade: see way_out.py for the phases."""
from __future__ import annotations


import pytest

import harness
import way_out

pytestmark = pytest.mark.e2e

CASES = [
    pytest.param("sqlite", "321", id="sqlite-3.2.1"),
    pytest.param("postgres", "321", id="postgres-3.2.1", marks=pytest.mark.postgres),
    pytest.param("mysql", "321", id="mysql-3.2.1", marks=[pytest.mark.e2e_mysql, pytest.mark.mysql]),
    pytest.param("sqlite", "33x", id="sqlite-3.3.x"),
]
PRISTINE = [c for c in CASES if tuple(c.values) in way_out.PRISTINE]


def facts(runs, db, writer) -> dict:
    s = runs.get(db, writer)
    for hook in ("rewrite_and_restore", "pristine_run"):
        assert f"hook {hook}" not in s.errors, s.errors[f"hook {hook}"]
    return s.facts


@pytest.mark.parametrize("db,writer", CASES)
def test_dry_run_names_the_rows_and_writes_nothing(runs, db, writer):
    f = facts(runs, db, writer)["way_out"]
    dry = f["dry_run"]
    assert dry["exit"] == 1, dry
    assert f["dry_run_left_db_unchanged"]
    would = {c["column"]: c["would_rewrite"] for c in dry["out"]["columns"] if c.get("would_rewrite")}
    # the rows the writer left in the 3.2 format (the harness's own count, not scan's)
    rows = runs.get(db, writer).facts["rows_after_downgrade"]
    # serde envelopes, bare dicts, plain 3.2 JSON: everything but 3.1's legacy envelopes and NULL
    serde_ti = sum(1 for v in rows["task_instance.next_kwargs"].values() if not v.startswith(("legacy", "null")))
    assert would.get("task_instance.next_kwargs") == serde_ti, (would, rows["task_instance.next_kwargs"])
    assert would.get("trigger.kwargs"), would


@pytest.mark.parametrize("db,writer", CASES)
def test_apply_leaves_nothing_for_the_bridge_and_restore_is_byte_identical(runs, db, writer):
    f = facts(runs, db, writer)["way_out"]
    if db == "mysql":
        # the DAG version whose deadline list the MariaDB downgrade left holding 3.2 deadline_alert ids
        left = {c["column"]: c["left"] for c in f["apply"]["out"]["columns"] if c["left"]}
        assert f["apply"]["exit"] == 1 and left == {"serialized_dag.data": 1}, f["apply"]
    else:
        assert f["apply"]["exit"] == 0, f["apply"]
        assert f["apply"]["out"]["remaining"] == 0
    rewritten = sum(c.get("rewritten", 0) for c in f["apply"]["out"]["columns"])
    assert f["backup_lines"] == 1 + rewritten and rewritten > 0
    assert f["scan_after_apply"]["exit"] == (1 if db == "mysql" else 0), f["scan_after_apply"]
    assert f["rewrite_changed_the_dump"]
    assert f["restore"]["exit"] == 0, f["restore"]
    assert sum(f["restore"]["out"]["restored"].values()) == rewritten
    assert f["restore_identical"], f["restore_diff"]


@pytest.mark.parametrize("db,writer", PRISTINE)
def test_a_318_without_the_package_runs_the_rest_to_the_oracles_values(runs, db, writer):
    s = runs.get(db, writer)
    f = facts(runs, db, writer)["pristine"]
    assert not f["package_installed"], f["venv"]
    assert not f["active_line"]
    assert all(n == 0 for n in f["log_crashes"].values()), f["log_crashes"]
    o = runs.get("postgres" if db == "mysql" else db, "318")
    # compare_post reads results_post/post_states: the pristine phase's, here
    shadow = harness.Scenario.__new__(harness.Scenario)
    shadow.facts = {**s.facts, "results_post": f["results"], "post_states": f["states"]}
    diffs = harness.compare_post(shadow, o)
    # uuid XComs: --xcom-uuid=str hands the resumed puller the UUID's text (documented); compare_post skips them
    assert not diffs, "\n".join(diffs)
