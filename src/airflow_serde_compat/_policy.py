"""``airflow.policy`` entry point: 3.1's ``import airflow`` loads it in every Airflow process.

A second way in, for installs whose site-packages ``.pth`` files are not processed
(the package only on PYTHONPATH). Activation is idempotent, so both may fire.
"""

from airflow_serde_compat._bootstrap import activate_from_env

activate_from_env()
