"""The way out (issue 12): `rewrite`, `restore`, then Airflow 3.1.8 without the package, on real 3.2.x rows.

On a copy of the downgraded DB, right after the downgrade (`after_downgrade`):

1. `airflow-serde-compat rewrite` (dry run): exit 1, the DB's own dump unchanged;
2. `rewrite --apply --backup F --xcom-uuid=str`, then `scan`: exit 0;
3. `restore F`: the dump equals the one taken before step 2, line for line; then `rewrite --apply` again.

Then, once the bridged reader stopped (`after_reader`, before the afterlife phases reopen gates), where
`pristine` is set: every component from the plain 3.1.8 venv -- the package is not installed there at
all -- resumes the rest of the scenario on that copy; the tests compare its records with the native
3.1.8 oracle's.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sqlite3
import subprocess
import time

import harness

PHASE = "pristine"


def dump(db: harness.Database) -> list[str]:
    """The database's own dump, sorted (PostgreSQL/MySQL move an updated row within the table)."""
    if isinstance(db, harness.SqliteDB):
        conn = sqlite3.connect(db.path)
        try:
            return sorted(conn.iterdump())
        finally:
            conn.close()
    if isinstance(db, harness.PostgresDB):
        out = subprocess.run(["pg_dump", "-h", db.host, "-p", str(db.port), "-U", db.user, "--data-only", db.name],
                             check=True, capture_output=True, text=True).stdout
        # pg_dump >= 15.14 brackets its output with \restrict <random key> lines
        return sorted(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))
    # bytes: serialized_dag.data_compressed and other binary columns are dumped as they are
    out = subprocess.run(["mysqldump", "-h", db.host, "-P", str(db.port), "-u", db.user, "--skip-dump-date",
                          "--skip-extended-insert", "--no-create-info", db.name],
                         check=True, capture_output=True).stdout
    return sorted(line.decode("utf-8", "backslashreplace") for line in out.split(b"\n"))


def cli(s: harness.Scenario, db: harness.Database, *args: str) -> dict:
    venv = s.way_out_venv
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(s.site.home)
    p = subprocess.run([str(venv / "bin/airflow-serde-compat"), *args, f"--sql-alchemy-conn={db.url()}"],
                       env=env, capture_output=True, text=True, timeout=900, cwd=s.site.home)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return {"exit": p.returncode, "out": out, "stdout": p.stdout[-3000:], "stderr": p.stderr[-3000:]}


def take_copy(s: harness.Scenario) -> None:
    """First of the after_downgrade hooks: on MariaDB before the ids are repaired, so `rewrite` repairs them here."""
    s.way_out_db = s.db.snapshot("wayout")


def rewrite_and_restore(s: harness.Scenario) -> None:
    facts = s.facts["way_out"] = {}
    s.way_out_venv = harness.bridge_venv(s._vn(s.reader))  # installed once; the CLI calls below reuse it
    db = s.way_out_db
    key = f"--fernet-key={s.site.fernet}"
    backup = s.workdir / "rewrite-backup.jsonl"
    original = dump(db)
    t = time.monotonic()
    facts["dry_run"] = cli(s, db, "rewrite", key, "--output", "json")
    force = ()
    if facts["dry_run"]["exit"] == 2 and "running:" in facts["dry_run"]["stderr"]:
        # The writer's last heartbeat can be younger than rewrite's 120 s (a 3.3.x scheduler leaves its job
        # row 'running'). The harness has stopped every component and SIGKILLed strays: the case --force is for.
        alive = harness._procs_with_marker(s.site.marker)
        assert not alive, f"rewrite refused and processes of this scenario are alive: {alive}"
        facts["refused_while_heartbeat_recent"] = facts["dry_run"]["stderr"][-500:]
        force = ("--force",)
        facts["dry_run"] = cli(s, db, "rewrite", *force, key, "--output", "json")
    facts["dry_run_left_db_unchanged"] = dump(db) == original
    facts["apply"] = cli(s, db, "rewrite", *force, "--apply", "--backup", str(backup), "--xcom-uuid=str", key, "--output", "json")
    s.timings["way out: rewrite --apply"] = round(time.monotonic() - t, 1)
    facts["backup_lines"] = len(backup.read_text().splitlines()) if backup.exists() else None
    facts["scan_after_apply"] = cli(s, db, "scan", key, "--output", "json")
    rewritten = dump(db)
    facts["rewrite_changed_the_dump"] = rewritten != original
    # The pristine 3.1.8 runs on a copy of the rewritten DB; restore is proven on this one.
    s.way_out_db = db.snapshot("rewritten")
    facts["restore"] = cli(s, db, "restore", *force, str(backup), "--output", "json")
    restored = dump(db)
    facts["restore_identical"] = restored == original
    facts["restore_diff"] = sorted(set(restored) ^ set(original))[:20]
    if s.db_kind != "sqlite":
        db.drop()


def pristine_run(s: harness.Scenario) -> None:
    """The rest of the scenario on the rewritten copy, by a 3.1.8 that never had the package."""
    site, db = s.site, s.way_out_db
    apply = s.facts.get("way_out", {}).get("apply") or {}
    if apply.get("exit") != 0:
        # a pristine 3.1.8 on rows rewrite did not convert proves nothing but the crash the bridge exists for
        raise harness.E2EError(f"no pristine run: rewrite --apply exited {apply.get('exit')}: {apply.get('stderr', '')[-500:]}")
    rv = harness.venv(s._vn(s.reader))
    facts = s.facts["pristine"] = {"venv": str(rv)}
    installed = subprocess.run([str(rv / "bin/python"), "-m", "pip", "show", "-q", "airflow-serde-compat"],
                               capture_output=True, text=True)
    facts["package_installed"] = installed.returncode == 0
    saved = site.db
    site.db = db
    try:
        site.set_pool(harness.POOL_SLOTS)
        cs = site.start_all(rv, PHASE, bridge=False)
        site.open_gate("after")  # already open when the bridged reader ran first
        site.open_gate("asset_after")
        expect_deadline = site.deadline and int(db.query("SELECT COUNT(*) FROM deadline")[0][0]) > 0

        def finished():
            st = site.ti_states()
            done = all(v in harness.TERMINAL for t, (v, _) in st.items() if t not in harness.STAYS_DEFERRED)
            dl = (site.results / PHASE / "deadline_callback.json").exists() or not expect_deadline
            asset = not site.asset or (site.results / PHASE / "asset_consumer.json").exists()
            return done and dl and asset and st

        try:
            facts["states"] = site.wait_for("every task finished under a 3.1.8 without the package",
                                            finished, timeout=s.fire_after + 240, components=cs)
            time.sleep(3)
            site.check_alive(cs)
        finally:
            facts.setdefault("states", site.ti_states())
            facts["log_crashes"] = {c.name: len(harness.CRASH_RE.findall(pathlib.Path(c.log).read_text(errors="replace")))
                                    for c in cs}
            facts["active_line"] = any("airflow-serde-compat active" in pathlib.Path(c.log).read_text(errors="replace")
                                       for c in cs)
            site.stop_all()
            site.wait_port_free()
    finally:
        site.db = saved
        facts["results"] = site.read_results(PHASE)
        if s.db_kind != "sqlite":
            with contextlib.suppress(Exception):
                db.drop()


#: (db kind, writer) whose rewritten copy a pristine 3.1.8 runs to the end: both writers on SQLite, 3.2.1 on
#: PostgreSQL (a few minutes each; tests/scan covers SQLite and PostgreSQL 3.2.1 rows read natively).
#: Not MariaDB: there the downgrade leaves a 3.2-written DAG version whose deadline list still holds 3.2's
#: deadline_alert ids (the alerts themselves are dropped with the table): no 3.1 reader takes it (scan:
#: untranslatable, rewrite leaves it), and a 3.1.8 scheduler without the bridge exits on it while a DAG
#: run refers to that version.
PRISTINE = {("postgres", "321"), ("sqlite", "321"), ("sqlite", "33x")}


def attach(s: harness.Scenario) -> None:
    if s.oracle or s.reader != "318" or s.executor != "local":
        return
    s.after_downgrade.insert(0, take_copy)
    s.after_downgrade.append(rewrite_and_restore)
    if (s.db_kind, s.writer) in PRISTINE:
        s.after_reader.insert(0, pristine_run)
    elif s.db_kind != "sqlite":
        s.after_reader.insert(0, drop_copy)


def drop_copy(s: harness.Scenario) -> None:
    s.way_out_db.drop()
