"""Installing the wheel into a real 3.1.8 environment adds packages and changes none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.airflow
def test_pip_install_into_airflow_3_1_8_upgrades_or_downgrades_nothing(tmp_path):
    # The pristine 3.1.8 venv (no test tools), resolved by the real pip without touching it.
    venv = subprocess.run(
        [str(ROOT / "tools" / "venvs.sh"), "318"], check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("airflow_serde_compat-*.whl"))
    report = tmp_path / "report.json"
    subprocess.run(
        [f"{venv}/bin/pip", "install", "--dry-run", "--quiet", "--report", str(report), str(wheel)],
        check=True, capture_output=True,
    )
    installed = json.loads(
        subprocess.run([f"{venv}/bin/pip", "list", "--format", "json"], check=True, capture_output=True, text=True).stdout
    )
    present = {p["name"].lower().replace("_", "-") for p in installed}
    planned = {i["metadata"]["name"].lower().replace("_", "-") for i in json.loads(report.read_text())["install"]}
    assert "airflow-serde-compat" in planned
    assert planned & present == set(), f"pip would change installed distributions: {sorted(planned & present)}"
