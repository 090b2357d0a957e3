"""Let Apache Airflow 3.1 read the metadata rows Airflow 3.2+ wrote, after a rollback.

Nothing happens on import. The bridge turns on in every Airflow process when the environment
variable ``AIRFLOW_SERDE_COMPAT`` is ``1`` (or ``strict``), through the ``.pth`` file and the
``airflow.policy`` entry point this package installs; :func:`activate` does the same from code.
Importing the package costs next to nothing: Airflow imports it in every process.
"""

from __future__ import annotations

from typing import Any

from airflow_serde_compat._bootstrap import activate, deactivate, is_active

__all__ = ["UnsupportedPayload", "activate", "deactivate", "is_active"]


def __getattr__(name: str) -> Any:
    if name == "UnsupportedPayload":
        from airflow_serde_compat.translate import UnsupportedPayload

        return UnsupportedPayload
    if name == "__version__":
        from importlib.metadata import version

        return version("airflow-serde-compat")
    raise AttributeError(f"module 'airflow_serde_compat' has no attribute {name!r}")
