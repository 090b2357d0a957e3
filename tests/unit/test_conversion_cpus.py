"""When ``rewrite`` forks its conversion child: only where two CPUs' worth of time are its own."""

from __future__ import annotations

import os

import pytest

from airflow_serde_compat.rewrite.conversion import forking_pays

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2


def _v2(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text)
    return str(tmp_path)


def _v1(tmp_path, quota, period="100000"):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(period)
    return str(tmp_path)


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs in this process's affinity")
@pytest.mark.parametrize("limit, pays", [
    ("max 100000\n", True), ("200000 100000\n", True), ("400000 100000\n", True),
    ("100000 100000\n", False), ("150000 100000\n", False), ("50000 100000\n", False),
    ("garbage\n", True),  # unreadable: as if unlimited
])
def test_cgroup_v2_cpu_max(tmp_path, limit, pays):
    assert forking_pays(_v2(tmp_path, limit)) is pays


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs in this process's affinity")
@pytest.mark.parametrize("quota, pays", [("-1", True), ("200000", True), ("100000", False), ("199999", False)])
def test_cgroup_v1_cfs_quota(tmp_path, quota, pays):
    assert forking_pays(_v1(tmp_path, quota)) is pays


def test_one_cpu_of_affinity_never_forks(tmp_path):
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        assert forking_pays(_v2(tmp_path, "max 100000\n")) is False
    finally:
        os.sched_setaffinity(0, before)
