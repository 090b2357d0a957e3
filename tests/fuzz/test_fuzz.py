"""Runs the atheris target time-boxed (FUZZ_SECONDS, default 60) from the corpus kept here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.airflow


def test_fuzz_bridge_keeps_its_invariants(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus", corpus)
    seconds = int(os.environ.get("FUZZ_SECONDS", "60"))
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"}
    env["AIRFLOW_HOME"] = str(tmp_path / "home")
    p = subprocess.run(
        [sys.executable, str(HERE / "fuzz_bridge.py"), f"-max_total_time={seconds}", "-rss_limit_mb=4096",
         "-timeout=20", f"-artifact_prefix={tmp_path}/", str(corpus)],
        env=env, capture_output=True, text=True, timeout=seconds + 600, cwd=tmp_path,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(p.name for p in tmp_path.glob("timeout-*"))
    assert p.returncode == 0 and not crashes, f"exit {p.returncode}, artifacts {crashes}\n{p.stderr[-6000:]}"
    # libFuzzer's closing line: it ran, and how many inputs.
    assert "Done " in p.stderr, p.stderr[-3000:]
    print(p.stderr.strip().splitlines()[-1])
