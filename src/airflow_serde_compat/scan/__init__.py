"""``airflow-serde-compat scan``: which metadata rows are still in the Airflow 3.2 format.

One pass per stored column of :data:`~airflow_serde_compat.scan.columns.COLUMNS`:

* :mod:`~airflow_serde_compat.scan.database` reads it (read-only, in batches) and aggregates;
* :mod:`~airflow_serde_compat.scan.columns` says how each column's value is decoded and classified;
* :mod:`~airflow_serde_compat.scan.classify` holds the verdicts (pure: no database, no Airflow);
* :mod:`~airflow_serde_compat.scan.verify` decodes 3.2-format rows as the bridge will (``--verify``);
* :mod:`~airflow_serde_compat.scan.report` holds what was found and shows it (text or JSON).
"""

from __future__ import annotations

from airflow_serde_compat.scan.columns import COLUMNS, StoredColumn
from airflow_serde_compat.scan.database import ScanError, scan_database
from airflow_serde_compat.scan.report import ColumnReport, ScanReport

__all__ = ["COLUMNS", "ColumnReport", "ScanError", "ScanReport", "StoredColumn", "scan_database"]
