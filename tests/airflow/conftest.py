from __future__ import annotations

import os

import pytest

# Airflow reads its config at import: keep every in-process test away from ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", os.path.join(os.environ.get("TMPDIR", "/tmp"), "serde-compat-test-home"))


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.airflow)


@pytest.fixture
def bridge():
    """The bridge active in this process for one test, deactivated afterwards."""
    import airflow_serde_compat
    from airflow.serialization import serialized_objects  # noqa: F401  (the patch target)

    assert airflow_serde_compat.activate()
    assert airflow_serde_compat.is_active()
    yield
    assert airflow_serde_compat.deactivate() == []
