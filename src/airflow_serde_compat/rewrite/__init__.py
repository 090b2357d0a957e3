"""``airflow-serde-compat rewrite`` / ``restore``: the way out, so the bridge can come out.

* :mod:`~airflow_serde_compat.rewrite.writers`: a 3.2-format value -> what Airflow 3.1 stores
  for the same value (the bridge's decode, then 3.1's own writer), checked before it is written;
* :mod:`~airflow_serde_compat.rewrite.backup`: the JSON-lines backup of every changed row;
* :mod:`~airflow_serde_compat.rewrite.database`: paging, batches, the liveness refusal, restore;
* :mod:`~airflow_serde_compat.rewrite.task_instance_ids`: the task-instance ids Airflow's own
  downgrade mangled on MariaDB, and their repair.

Rows are found exactly as ``scan`` finds them: the column registry of
:mod:`airflow_serde_compat.scan.columns`.
"""
