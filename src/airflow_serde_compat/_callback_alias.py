"""``airflow.sdk.definitions.callback`` for task-sdk 1.1, which keeps those classes in ``...deadline``.

Deadline alerts that the 3.2 downgrade wrote back into serialized DAGs name
``airflow.sdk.definitions.callback.AsyncCallback``; 3.1 imports that module by name. Installed at
activation (before anything can ask for it), without importing Airflow.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

__all__ = ["install", "remove"]

CALLBACK_ALIAS = "airflow.sdk.definitions.callback"
CALLBACK_SOURCE = "airflow.sdk.definitions.deadline"

class _CallbackAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``airflow.sdk.definitions.callback`` from task-sdk 1.1's ``...deadline``.

    Appended to ``sys.meta_path``, so a task-sdk that has the real module always wins.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != CALLBACK_ALIAS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return None

    def exec_module(self, module: Any) -> None:
        source = importlib.import_module(CALLBACK_SOURCE)
        names = ("Callback", "AsyncCallback", "SyncCallback")
        for name in names:
            setattr(module, name, getattr(source, name))
        module.__all__ = list(names)


_alias_finder = _CallbackAliasFinder()


def install() -> bool:
    if _alias_finder in sys.meta_path:
        return False
    sys.meta_path.append(_alias_finder)
    return True


def remove() -> None:
    if _alias_finder in sys.meta_path:
        sys.meta_path.remove(_alias_finder)
    module = sys.modules.get(CALLBACK_ALIAS)
    if module is not None and getattr(module, "__loader__", None) is _alias_finder:
        del sys.modules[CALLBACK_ALIAS]
