"""Custom triggers used by the e2e DAGs (importable by triggerer and workers via PYTHONPATH=<dags folder>)."""
from __future__ import annotations

import asyncio
import os

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from e2e_common import gate_path, record


class GateTrigger(BaseTrigger):
    """Fires (or fails) when the harness creates the gate file $E2E_GATES_DIR/<gate>.

    ``rich`` carries arbitrary rich kwargs so that the trigger row itself holds non-JSON types.
    On every start it records what it was constructed with (name ``trigger.<label>``).
    """

    def __init__(self, gate: str, label: str, payload=None, fail: bool = False, rich=None):
        super().__init__()
        self.gate = gate
        self.label = label
        self.payload = payload
        self.fail = fail
        self.rich = rich

    def serialize(self):
        return (
            "e2e_triggers.GateTrigger",
            {"gate": self.gate, "label": self.label, "payload": self.payload, "fail": self.fail, "rich": self.rich},
        )

    async def run(self):
        record(f"trigger.{self.label}", {"gate": self.gate, "label": self.label, "payload": self.payload,
                                         "fail": self.fail, "rich": self.rich})
        path = gate_path(self.gate)
        while not path.exists():
            await asyncio.sleep(0.5)
        if self.fail:
            raise RuntimeError(f"e2e gate trigger {self.label} failed on purpose")
        yield TriggerEvent(self.payload)


class GateEventTrigger(BaseEventTrigger):
    """Asset-watcher trigger: fires once (consumes the gate file) when the harness creates it."""

    def __init__(self, gate: str, label: str, payload=None, rich=None):
        super().__init__()
        self.gate = gate
        self.label = label
        self.payload = payload
        self.rich = rich

    def serialize(self):
        return ("e2e_triggers.GateEventTrigger",
                {"gate": self.gate, "label": self.label, "payload": self.payload, "rich": self.rich})

    async def run(self):
        record(f"trigger.{self.label}", {"gate": self.gate, "label": self.label, "payload": self.payload,
                                         "rich": self.rich})
        path = gate_path(self.gate)
        while True:
            try:
                os.rename(path, path.with_name(path.name + ".consumed"))
                break
            except FileNotFoundError:
                await asyncio.sleep(0.5)
        yield TriggerEvent(self.payload)
