"""``scan --verify``: decode every 3.2-format row the way the bridge will, and keep the failures.

Two verifiers, picked by the Airflow installed next to the CLI:

* Airflow 3.1.x: :func:`airflow_serde_compat.activate` patches this process, and each row
  goes through the real reader of its column (``BaseSerialization.deserialize``,
  ``models.deadline.deserialize``, ``SerializedDAG.from_dict``, serde for XComs). This is
  exactly what the scheduler/triggerer/worker will do, including the allow-list resolver.
* anything else (3.2+ before the downgrade, or no Airflow): the pure translator. Rows that
  need a patched 3.1 process's resolver are reported as unverified, never as passing.

A verifier's ``check(source, payload, verdict)`` returns None (decodes), ``("unverified",
why)`` or ``(classname, reason)``. Reasons never carry row values.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_serde_compat.scan_classify import Bridge, Verdict
from airflow_serde_compat.translate import UnsupportedPayload, code_names, to_legacy

__all__ = ["Airflow31Verifier", "PureVerifier", "verifier_for_installed_airflow"]

def _describe(err: BaseException) -> str:
    # Only the bridge's own texts and exception types: any other message (a tz database's
    # ZoneInfoNotFoundError, a decoder's KeyError...) may quote the decrypted row.
    if isinstance(err, UnsupportedPayload):
        return f"{type(err).__name__}: {err}"
    if isinstance(err, ImportError):
        # What could not be imported is code, not data: keep the names shaped like module or
        # class paths (so a 3.2-only timetable is named), nothing else of the message.
        names = code_names(err)
        if names:
            return f"{type(err).__name__} naming {', '.join(names)}"
    return type(err).__name__


def _failure(verdict: Verdict, err: BaseException) -> tuple[str | None, str]:
    classname = getattr(err, "classname", None) or (verdict.classnames[0] if verdict.classnames else None)
    # Airflow wraps the telling error (DeserializationError from an ImportError): show the chain.
    # Explicit causes only: an implicit __context__ is whatever was being handled at the time.
    chain, seen = [], set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen and len(chain) < 4:
        seen.add(id(cause))
        chain.append(_describe(cause))
        cause = cause.__cause__
    return classname, " <- ".join(chain)


class PureVerifier:
    mode = "pure"

    def __init__(self, why: str):
        self.note = (
            f"{why}: verified with the pure translator; classnames that need a patched Airflow 3.1 "
            "process (its serde and allow-list) could not be verified here"
        )

    def check(self, source: Any, payload: Any, verdict: Verdict) -> tuple[str | None, str] | None:
        if verdict.bridge is Bridge.UNTRANSLATABLE:
            return (verdict.classnames[0] if verdict.classnames else None), verdict.reason or "untranslatable"
        if verdict.bridge is Bridge.NEEDS_PATCHED_PROCESS:
            return "unverified", verdict.reason or ""
        if source.kind in ("kwargs", "trigger_kwargs"):
            try:
                to_legacy(payload, enum_keys=source.kind == "trigger_kwargs")
            except UnsupportedPayload as err:  # pragma: no cover - the verdict already tried
                return _failure(verdict, err)
        return None


class Airflow31Verifier:
    mode = "airflow-3.1"

    def __init__(self, airflow_version: str):
        from airflow_serde_compat import activate

        if not activate(strict=True):  # pragma: no cover - activate raises when strict
            raise RuntimeError("the bridge did not activate")
        self.note = f"verified through the patched readers of apache-airflow-core {airflow_version} in this process"
        self._readers: dict[str, Any] = {}

    def _reader(self, kind: str) -> Any:
        reader = self._readers.get(kind)
        if reader is None:
            if kind == "kwargs":
                from airflow.serialization.serialized_objects import BaseSerialization

                reader = BaseSerialization.deserialize
            elif kind == "trigger_kwargs":
                from airflow.serialization.serialized_objects import BaseSerialization

                from airflow_serde_compat.patch import reading_trigger_kwargs

                def reader(payload: Any, _cls: Any = BaseSerialization) -> Any:
                    # As Trigger._decrypt_kwargs reads them (the plaintext and key were handled).
                    with reading_trigger_kwargs():
                        return _cls.deserialize(payload)

            elif kind == "deadline_callback":
                from airflow.models import deadline

                def reader(payload: Any, _module: Any = deadline) -> Any:
                    # Looked up on the module: that is the name the bridge patches.
                    return _module.deserialize(payload)

            elif kind == "serialized_dag":
                from airflow.serialization.serialized_objects import SerializedDAG

                def reader(text: Any, _cls: Any = SerializedDAG) -> Any:
                    return _cls.from_dict(json.loads(text))

            elif kind == "xcom":
                from airflow.serialization import serde

                def reader(text: Any, _module: Any = serde) -> Any:
                    return _module.deserialize(json.loads(text))

            else:
                reader = None
            self._readers[kind] = reader
        return reader

    def check(self, source: Any, payload: Any, verdict: Verdict) -> tuple[str | None, str] | None:
        reader = self._reader(source.kind)
        if reader is None:
            return "unverified", f"{source.name} has no 3.1 reader (3.2 schema only)"
        try:
            reader(payload)
        except Exception as err:  # noqa: BLE001 - every failure is a finding, not a crash
            return _failure(verdict, err)
        return None


def verifier_for_installed_airflow() -> Any:
    from airflow_serde_compat._bootstrap import airflow_core_version

    version = airflow_core_version()
    if version is not None and version.split(".")[:2] == ["3", "1"]:
        return Airflow31Verifier(version)
    found = f"apache-airflow-core {version} is installed" if version else "Airflow is not installed"
    return PureVerifier(found)
