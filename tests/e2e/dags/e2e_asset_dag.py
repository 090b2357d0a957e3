"""Asset watcher: a rich-kwargs event trigger registered by the writer, fired only after the rollback.

3.2.x writes the watcher's trigger row (Fernet-encrypted serde, see the inventory); the downgrade drops
``asset_watcher`` and orphans it; the reader's dag-processor re-registers the watcher and its triggerer fires it
when the harness opens gate "asset_after". The consumer records the asset event it was triggered by.
Disabled with E2E_ASSET=0.
"""
from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from e2e_common import record, rich_kwargs
from e2e_triggers import GateEventTrigger

if os.environ.get("E2E_ASSET", "1") != "0":
    watched = Asset(
        "e2e_watched",
        watchers=[AssetWatcher(name="e2e_watcher", trigger=GateEventTrigger(
            gate="asset_after", label="asset_watcher", payload={"n": 1, "text": "asset", "list": [1, 2]},
            rich=rich_kwargs()))],
    )

    with DAG(
        dag_id="e2e_asset_consumer",
        schedule=[watched],
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        is_paused_upon_creation=False,
    ):

        @task
        def consume(**context):
            events = context["triggering_asset_events"]
            record("asset_consumer", {
                "events": {getattr(k, "name", str(k)): [e.extra for e in v] for k, v in events.items()}})

        consume()
