"""Gadget rows: legacy envelopes whose 3.1 decoders import or call what the data names.

Each one, decoded by Airflow 3.1.8's ``BaseSerialization.deserialize`` as 3.1 data, imports
the marker module ``serde_compat_gadget`` (tests/fixtures/gadgets) or runs a command that
touches a file. Inside an Airflow 3.2 payload the bridge must never let one get that far.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

GADGET_MODULE = "serde_compat_gadget"
GADGET_PATH = str(Path(__file__).resolve().parent / "fixtures" / "gadgets")


def _d(mapping: dict) -> dict:
    return {"__type": "dict", "__var": mapping}


def _t(items: list) -> dict:
    return {"__type": "tuple", "__var": items}


def legacy_gadgets(flag_dir: str) -> dict[str, dict[str, Any]]:
    """name -> a legacy envelope that, decoded as 3.1 data, leaves a file in ``flag_dir``."""
    touch = f"touch {os.path.join(flag_dir, 'called')}"
    return {
        "airflow_exc_ser": {"__type": "airflow_exc_ser", "__var": _d(
            {"exc_cls_name": f"{GADGET_MODULE}.Boom", "args": _t([]), "kwargs": _d({})})},
        "base_exc_ser_exec": {"__type": "base_exc_ser", "__var": _d(
            {"exc_cls_name": "exec", "args": _t([f"import {GADGET_MODULE}"]), "kwargs": _d({})})},
        "base_trigger_import": {"__type": "base_trigger", "__var": _t([f"{GADGET_MODULE}.boom", _d({})])},
        "base_trigger_os_system": {"__type": "base_trigger", "__var": _t(["os.system", _d({"command": touch})])},
        "param_class": {"__type": "param", "__var": {
            "__class": f"{GADGET_MODULE}.Boom", "default": 1, "description": None, "schema": _d({})}},
        "asset_watcher_trigger": {"__type": "asset", "__var": {
            "name": "a", "uri": "a", "group": "asset", "extra": {},
            "watchers": [{"name": "w", "trigger": {"classpath": f"{GADGET_MODULE}.Boom", "kwargs": {}}}]}},
        "deadline_alert": {"__type": "deadline_alert", "__var": {
            "reference": {"reference_type": f"{GADGET_MODULE}.Boom"}, "interval": 1.0,
            "callback": {"__classname__": f"{GADGET_MODULE}.Boom", "__version__": 0, "__data__": {}}}},
        "operator": {"__type": "operator", "__var": {
            "task_id": "t", "_task_module": GADGET_MODULE, "task_type": "Boom", "_is_empty": False}},
    }


#: The gadgets measured to run when 3.1.8 decodes them as its own data (test_gadgets proves it
#: on every run); the others are refused by type all the same.
FIRING = ("airflow_exc_ser", "base_exc_ser_exec", "base_trigger_import", "base_trigger_os_system", "param_class")


def double_decode_gadget(flag_dir: str) -> dict:
    """A user dict holding a base_trigger envelope, as 3.2 stores it (bare list and dict inside).

    Decoded once it is ``{"__type": "base_trigger", "__var": [...]}``, which 3.1's trigger runner
    decodes again (``smart_decode_trigger_kwargs``); unpatched 3.1.8 then fails on the bare dict,
    but with the translator in place it would run ``os.system``.
    """
    touch = f"touch {os.path.join(flag_dir, 'called')}"
    return _d({"__type": "base_trigger", "__var": ["os.system", {"command": touch}]})


def effects(flag_dir: str) -> list[str]:
    """Files a gadget left behind (empty: nothing ran), plus the marker module if imported."""
    import sys

    found = sorted(p.name for p in Path(flag_dir).iterdir())
    if GADGET_MODULE in sys.modules:
        found.append(f"sys.modules[{GADGET_MODULE!r}]")
    return found
