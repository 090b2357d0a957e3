"""The Python values the payload benchmarks encode: realistic ``next_kwargs`` and trigger kwargs.

Imported by both sides (3.1.8's ``BaseSerialization.serialize`` for the legacy JSON, 3.2.1's
``airflow.sdk.serde.serialize`` for the 3.2 JSON), so the two payload sets hold the same values.
Only stdlib and pendulum, which both venvs have.
"""

from __future__ import annotations

import datetime as dt

import pendulum

UTC = dt.timezone.utc
T0 = pendulum.datetime(2026, 3, 14, 9, 26, 53, tz="UTC")


def cases() -> dict[str, object]:
    return {
        # Small next_kwargs / trigger kwargs, the commonest rows: per-payload costs dominate.
        "small.empty": {},
        "small.event_none": {"event": None},
        "small.event_datetime": {"event": T0},
        "small.timeout": {"timeout": dt.timedelta(minutes=5)},
        "small.window": {"window": (T0, T0.add(hours=1))},
        "small.moment": {"moment": T0.add(minutes=5), "end_from_trigger": True, "delta": dt.timedelta(seconds=30)},
        # DateTimeTrigger / TimeDeltaSensorAsync: what the triggerer hands back as next_kwargs.
        "next_kwargs.event_datetime": {"event": T0},
        # A provider sensor's event payload (status dict), the common next_kwargs shape.
        "next_kwargs.event_status": {
            "event": {
                "status": "success",
                "message": "Job run 5512 finished with state SUCCEEDED",
                "run_id": 5512,
                "job_id": "etl-nightly",
                "files": ["s3://bucket/landing/2026/03/14/part-0000.parquet",
                          "s3://bucket/landing/2026/03/14/part-0001.parquet"],
            }
        },
        # Trigger timeout, written by the scheduler itself.
        "next_kwargs.timeout": {"error": "Trigger timeout"},
        # DateTimeTrigger kwargs.
        "trigger.datetime": {"moment": T0.add(hours=1), "end_from_trigger": False},
        # KubernetesPodTrigger-like kwargs: many primitives, a datetime, nested config dict.
        "trigger.k8s_pod": {
            "pod_name": "etl-transform-7f9c2", "pod_namespace": "airflow", "base_container_name": "base",
            "trigger_start_time": T0, "kubernetes_conn_id": "kubernetes_default", "cluster_context": None,
            "config_dict": {"clusters": [{"name": "prod", "cluster": {"server": "https://10.0.0.1"}}],
                            "current-context": "prod"},
            "poll_interval": 2.0, "in_cluster": True, "get_logs": True, "startup_timeout": 120,
            "startup_check_interval": 5, "schedule_timeout": 120, "on_finish_action": "delete_pod",
            "last_log_time": None, "logging_interval": None, "trigger_kwargs": {},
        },
        # HttpTrigger-like kwargs: headers/data dicts, a timedelta.
        "trigger.http": {
            "http_conn_id": "api", "auth_type": None, "method": "POST", "endpoint": "/v1/jobs",
            "headers": {"Content-Type": "application/json", "X-Request-Id": "b1946ac9"},
            "data": {"job": "nightly", "params": {"date": "2026-03-14", "full": False}},
            "extra_options": {"timeout": 30}, "poke_interval": dt.timedelta(seconds=30),
        },
        # Nested: containers of every legacy kind, five levels deep.
        "nested.deep": {
            "window": (T0, T0.add(days=1)),
            "tags": {"daily", "etl"},
            "retries": [{"attempt": i, "at": T0.add(minutes=i), "delay": dt.timedelta(minutes=2 ** i),
                         "ctx": {"hosts": ("a", "b"), "meta": {"ok": i % 2 == 0, "score": i / 7}}}
                        for i in range(6)],
            "matrix": [[i * j for j in range(8)] for i in range(8)],
        },
    }
