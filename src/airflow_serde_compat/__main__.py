"""``python -m airflow_serde_compat``: the same command as ``airflow-serde-compat``."""

import sys

from airflow_serde_compat.cli import main

sys.exit(main())
