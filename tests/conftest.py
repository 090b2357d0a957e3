"""Shared fixtures: fresh interpreters for activation tests, and the Airflow-test policy.

Tests marked ``airflow`` run against the real Apache Airflow 3.1.8 installed in the running
interpreter (``tools/venvs.sh 318t``). They are never skipped: a missing Airflow fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


_REAL = ("airflow", "e2e", "postgres", "mysql")
_not_run: list[str] = []


def pytest_runtest_logreport(report):
    # A real-software test that was skipped proves nothing: CI fails on it (see sessionfinish).
    # (An xfail ran: pytest reports it as skipped with `wasxfail`.)
    if report.skipped and not hasattr(report, "wasxfail") and any(m in report.keywords for m in _REAL):
        _not_run.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _not_run and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _not_run:
        terminalreporter.section("real-software tests that did not run (this fails the run)")
        for nodeid in _not_run:
            terminalreporter.line(nodeid)


def pytest_collection_modifyitems(config, items):
    # The bridge's own rule for which Airflow it patches (the tests may run without any).
    from airflow_serde_compat._bootstrap import airflow_core_version, supported

    core = airflow_core_version()
    if core is None or not supported(core):
        for item in items:
            if item.get_closest_marker("airflow"):
                item.add_marker(
                    pytest.mark.skip(reason=f"needs apache-airflow-core 3.1.x, found {core}: run `make test`")
                )


@pytest.fixture
def run_python(tmp_path):
    """Run code in a fresh interpreter of this venv; return the CompletedProcess.

    The environment is this one minus any AIRFLOW_SERDE_COMPAT, plus ``env``; AIRFLOW_HOME is
    a temporary directory so no test touches a real deployment.
    """

    def run(
        code: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
        python_args: list[str] | None = None,
    ):
        full_env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"}
        full_env.setdefault("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, *(python_args or []), "-c", textwrap.dedent(code)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run
