"""``airflow-serde-compat rewrite`` / ``restore``: the way out, so the bridge can come out."""
