from __future__ import annotations

import pytest

import airflow_serde_compat
from airflow_serde_compat._bootstrap import supported
from airflow_serde_compat._settings import Mode, mode_from_value


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, Mode.OFF), ("", Mode.OFF), ("0", Mode.OFF), ("false", Mode.OFF), ("1", Mode.ON),
     ("true", Mode.ON), (" TRUE ", Mode.ON), ("strict", Mode.STRICT), ("Strict", Mode.STRICT)],
)
def test_mode_from_value(value, mode):
    assert mode_from_value(value) == (mode, None)


def test_an_unknown_value_is_off_with_a_warning_naming_it():
    mode, warning = mode_from_value("enable")
    assert mode is Mode.OFF and "'enable'" in warning


@pytest.mark.parametrize(
    ("version", "ok"),
    [("3.1.8", True), ("3.1.0", True), ("3.1.9rc1", True), ("3.2.1", False), ("3.0.6", False), ("2.10.5", False), ("x", False)],
)
def test_only_airflow_core_3_1_issupported(version, ok):
    assert supported(version) is ok


def test_public_api_is_small_and_exported():
    assert sorted(airflow_serde_compat.__all__) == ["UnsupportedPayload", "activate", "deactivate", "is_active"]
    assert issubclass(airflow_serde_compat.UnsupportedPayload, ValueError)
