"""Helpers shared by the e2e DAGs, triggers and deadline callback (same file under every Airflow version).

Everything a resumed task / trigger / callback *received* is written as a canonical, JSON-able description
(type names + values) to $E2E_RESULTS_DIR/$E2E_PHASE/<name>.json so that runs can be compared by the harness.
Nothing here knows what the "right" answer is: the oracle is a never-upgraded 3.1.8 running the same code.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
from zoneinfo import ZoneInfo

# Values that only depend on the wall clock of the run (sensor moments, deadline times, ...) are replaced by
# "<runtime>" so two runs can be compared; everything further than this from "now" is kept verbatim.
_RUNTIME_WINDOW = _dt.timedelta(days=2)


def _tname(v) -> str:
    t = type(v)
    return f"{t.__module__}.{t.__qualname__}"


def _tz(v) -> str | None:
    tz = v.tzinfo
    if tz is None:
        return None
    name = getattr(tz, "name", None) or tz.tzname(v)
    return f"{_tname(tz)}:{name}"


def describe(v):
    """Canonical description: exact type + value, recursively; dict keys and set items sorted."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return {"type": _tname(v), "value": v}
    if isinstance(v, _dt.datetime):
        value = v.isoformat()
        if v.tzinfo is not None:
            now = _dt.datetime.now(_dt.timezone.utc)
            if abs(v - now) < _RUNTIME_WINDOW:
                value = "<runtime>"
        return {"type": _tname(v), "tz": _tz(v), "value": value}
    if isinstance(v, (_dt.date, _dt.time)):
        return {"type": _tname(v), "value": v.isoformat()}
    if isinstance(v, _dt.timedelta):
        return {"type": _tname(v), "value": v.total_seconds()}
    if isinstance(v, dict):
        items = [[describe(k), describe(x)] for k, x in v.items()]
        items.sort(key=lambda kv: json.dumps(kv[0], sort_keys=True))
        return {"type": _tname(v), "items": items}
    if isinstance(v, (list, tuple)):
        return {"type": _tname(v), "items": [describe(x) for x in v]}
    if isinstance(v, (set, frozenset)):
        items = [describe(x) for x in v]
        items.sort(key=lambda d: json.dumps(d, sort_keys=True))
        return {"type": _tname(v), "items": items}
    return {"type": _tname(v), "repr": repr(v)}


def record(name: str, received: dict) -> None:
    results = os.environ.get("E2E_RESULTS_DIR")
    if not results:
        return
    phase = os.environ.get("E2E_PHASE", "unknown")
    try:
        import airflow

        version = airflow.__version__
    except Exception:  # pragma: no cover
        version = "?"
    d = pathlib.Path(results, phase)
    d.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "phase": phase, "airflow": version, "pid": os.getpid(), "ancestors": _ancestors(),
           "received": {k: describe(v) for k, v in received.items()}}
    tmp = d / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    tmp.replace(d / f"{name}.json")


def _ancestors(limit: int = 16) -> list:
    """This process and its parents (pid, cmdline), so the harness can tell which component ran the task."""
    out, pid = [], os.getpid()
    for _ in range(limit):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            break
        out.append({"pid": pid, "cmdline": cmd[:200]})
        if ppid <= 1:
            break
        pid = ppid
    return out


def gate_path(gate: str) -> pathlib.Path:
    return pathlib.Path(os.environ.get("E2E_GATES_DIR", "/tmp/e2e-gates"), gate)


def env_seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Planted in the trigger kwargs and next_kwargs of a deferral that 3.1.8 keeps deferred: the e2e suite checks
# that no api-server response and no component log shows it (tests/e2e/afterlife.py).
TRIGGER_SECRET = "e2e-planted-secret-4f1c9a7be2"


# ---- fixed, clock-independent rich values ------------------------------------------------------------------
def rich_kwargs() -> dict:
    import pendulum

    return {
        "pendulum_berlin": pendulum.datetime(2031, 5, 6, 7, 8, 9, 123456, tz="Europe/Berlin"),
        "pendulum_utc": pendulum.datetime(2032, 1, 2, 3, 4, 5, tz="UTC"),
        "stdlib_zoneinfo": _dt.datetime(2033, 3, 4, 5, 6, 7, tzinfo=ZoneInfo("Asia/Kolkata")),
        "stdlib_utc": _dt.datetime(2033, 3, 4, 5, 6, 7, 89, tzinfo=_dt.timezone.utc),
        "delta": _dt.timedelta(hours=2, seconds=3, microseconds=5),
        "pair": (1, "two", 3.5),
        "tags": {"alpha", "beta"},
        "nested": {"list": [1, [2, 3], {"k": (4, 5)}], "dict": {"when": _dt.timedelta(minutes=1)}, "none": None},
        "flag": True,
        "number": 42,
        "ratio": 0.25,
        "text": "hello",
        **_fixed_offset(),
    }


def _fixed_offset() -> dict:
    # Airflow 3.2.x bug (found by this suite): task-sdk serde encodes a stdlib fixed-offset tz such as
    # datetime.timezone(timedelta(hours=5, minutes=30)) as ("", "", 0, False); 3.2.x's own triggerer then dies
    # with "ValueError: ZoneInfo keys must be normalized relative paths, got: ''" (exit, crash loop) on that
    # trigger row. Excluded by default so the writer can run; E2E_FIXED_OFFSET_TZ=1 reproduces it.
    if os.environ.get("E2E_FIXED_OFFSET_TZ") != "1":
        return {}
    return {"stdlib_fixed_offset": _dt.datetime(2033, 3, 4, 5, 6, 7,
                                                tzinfo=_dt.timezone(_dt.timedelta(hours=5, minutes=30)))}


def rich_event_payload() -> dict:
    import pendulum

    return {
        "when": pendulum.datetime(2034, 12, 31, 23, 0, 0, tz="America/New_York"),
        "delta": _dt.timedelta(minutes=90),
        "pair": (7, 8),
        "nested": {"a": [1, 2, {"b": "c"}], "n": None},
        "text": "fired",
    }


async def deadline_cb(**kwargs):
    """Deadline-missed callback (AsyncCallback path); records what it was called with."""
    context = kwargs.pop("context", None)
    rec = dict(kwargs)
    if isinstance(context, dict):
        rec["__context_keys__"] = sorted(context)
    record("deadline_callback", rec)
