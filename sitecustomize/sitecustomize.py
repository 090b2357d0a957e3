"""Activates airflow-serde-compat for images where only PYTHONPATH can be changed.

    PYTHONPATH=/path/to/sitecustomize AIRFLOW_SERDE_COMPAT=1 airflow scheduler

Python imports only the first ``sitecustomize`` on sys.path, so this one hands over to the
next one (the image's own, if any) before doing its own work, and only ever warns.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))


def _chain():
    # Import the sitecustomize that would have run without us, exactly once.
    saved_path = list(sys.path)
    ours = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    try:
        import sitecustomize  # noqa: F401  (the next one on the path, if any)
    except ImportError as err:
        if getattr(err, "name", None) != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved_path
        if ours is not None:
            sys.modules["sitecustomize"] = ours


try:
    _chain()
except Exception:
    import logging

    logging.getLogger("airflow_serde_compat").warning("error in the chained sitecustomize", exc_info=True)

try:
    from airflow_serde_compat._bootstrap import activate_from_env

    activate_from_env()
except ImportError:
    import logging

    logging.getLogger("airflow_serde_compat").warning(
        "AIRFLOW_SERDE_COMPAT: sitecustomize is on PYTHONPATH but the airflow-serde-compat package "
        "is not installed in this interpreter"
    )
