"""Let Apache Airflow 3.1 read the metadata rows Airflow 3.2+ wrote, after a rollback.

Nothing happens on import. The bridge turns on in every Airflow process when the environment
variable ``AIRFLOW_SERDE_COMPAT`` is ``1`` (or ``strict``), through the ``.pth`` file this
package installs; :func:`activate` does the same from code.
"""

from __future__ import annotations

from airflow_serde_compat._bootstrap import activate, deactivate, is_active
from airflow_serde_compat.translate import UnsupportedPayload

__all__ = ["UnsupportedPayload", "activate", "deactivate", "is_active"]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("airflow-serde-compat")
    raise AttributeError(f"module 'airflow_serde_compat' has no attribute {name!r}")
