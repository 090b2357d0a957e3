"""Runs in the Airflow 3.2.1 venv, behind a pipe: writes the 3.2 payloads, times 3.2.1's reader.

Commands (one JSON line each on stdin, one JSON line answered on stdout):
  {"op": "payloads"}                       -> {name: JSON text 3.2.1 stores for values.cases()[name]}
  {"op": "time", "names": [N...], "n": K}  -> {"ns": ns per pass over the named payloads with
                                              airflow.sdk.serde.deserialize, K passes timed}
"""

from __future__ import annotations

import gc
import json
import sys
import time

sys.path.insert(0, sys.argv[1])

from airflow.sdk.serde import deserialize, serialize  # noqa: E402

import values  # noqa: E402


def main() -> None:
    texts = {name: json.dumps(serialize(value)) for name, value in values.cases().items()}
    parsed = {name: json.loads(text) for name, text in texts.items()}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "payloads":
            out = texts
        else:
            payloads, n = [parsed[name] for name in cmd["names"]], cmd["n"]
            gc.collect()
            gc.disable()
            t0 = time.perf_counter_ns()
            for _ in range(n):
                for p in payloads:
                    deserialize(p)
            out = {"ns": (time.perf_counter_ns() - t0) / n}
            gc.enable()
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
