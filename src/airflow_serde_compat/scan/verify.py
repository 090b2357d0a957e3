"""``scan --verify``: decode every 3.2-format row the way the bridge will, and keep the failures.

Two verifiers, picked by the Airflow installed next to the CLI:

* Airflow 3.1.x: :func:`airflow_serde_compat.activate` patches this process, and each row
  goes through the real reader of its column (:attr:`StoredColumn.reader`:
  ``BaseSerialization.deserialize``, ``models.deadline.deserialize``, ``SerializedDAG.from_dict``,
  serde for XComs). This is exactly what the scheduler/triggerer/worker will do, including the
  allow-list resolver.
* anything else (3.2+ before the downgrade, or no Airflow): the pure translator. Rows that
  need a patched 3.1 process's resolver are reported as unverified, never as passing.

Reasons never carry row values (:mod:`airflow_serde_compat._errors`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from airflow_serde_compat._errors import cause_chain
from airflow_serde_compat.scan.classify import Bridge, Verdict
from airflow_serde_compat.scan.columns import Reader, StoredColumn
from airflow_serde_compat.translate import UnsupportedPayload, to_legacy

__all__ = ["Airflow31Verifier", "Check", "Outcome", "PureVerifier", "Verifier", "verifier_for_installed_airflow"]


class Outcome(enum.Enum):
    VERIFIED = "verified"
    #: Cannot be told here (a pure verifier, a column no 3.1 component reads).
    UNVERIFIED = "unverified"
    FAILED = "failed"


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    classname: str | None = None
    reason: str = ""


VERIFIED = Check(Outcome.VERIFIED)


class Verifier(Protocol):
    mode: str
    note: str

    def check(self, column: StoredColumn, payload: Any, verdict: Verdict) -> Check: ...


def _failure(verdict: Verdict, err: BaseException) -> Check:
    classname = getattr(err, "classname", None) or (verdict.classnames[0] if verdict.classnames else None)
    return Check(Outcome.FAILED, classname, cause_chain(err))


class PureVerifier:
    mode = "pure"

    def __init__(self, why: str):
        self.note = (
            f"{why}: verified with the pure translator; classnames that need a patched Airflow 3.1 "
            "process (its serde and allow-list) could not be verified here"
        )

    def check(self, column: StoredColumn, payload: Any, verdict: Verdict) -> Check:
        if verdict.bridge is Bridge.UNTRANSLATABLE:
            classname = verdict.classnames[0] if verdict.classnames else None
            return Check(Outcome.FAILED, classname, verdict.reason or "untranslatable")
        if verdict.bridge is Bridge.NEEDS_PATCHED_PROCESS:
            return Check(Outcome.UNVERIFIED, reason=verdict.reason or "")
        if column.reader in (Reader.BASE_SERIALIZATION, Reader.TRIGGER_KWARGS):
            try:
                to_legacy(payload, enum_keys=column.reader == Reader.TRIGGER_KWARGS)
            except UnsupportedPayload as err:  # pragma: no cover - the verdict already tried
                return _failure(verdict, err)
        return VERIFIED


def _airflow_readers() -> dict[str, Callable[[Any], Any]]:
    """Reader name -> a function that decodes parsed JSON exactly as that 3.1 reader does."""
    from airflow.models import deadline
    from airflow.serialization import serde
    from airflow.serialization.serialized_objects import BaseSerialization, SerializedDAG

    from airflow_serde_compat.patch import reading_trigger_kwargs

    def trigger_kwargs(payload: Any) -> Any:
        # As Trigger._decrypt_kwargs reads them (the plaintext and key were handled).
        with reading_trigger_kwargs():
            return BaseSerialization.deserialize(payload)

    # Looked up on the module per call: those are the names the bridge patches.
    return {
        Reader.BASE_SERIALIZATION: lambda payload: BaseSerialization.deserialize(payload),
        Reader.TRIGGER_KWARGS: trigger_kwargs,
        Reader.DEADLINE: lambda payload: deadline.deserialize(payload),
        Reader.SERIALIZED_DAG: lambda payload: SerializedDAG.from_dict(payload),
        Reader.SERDE: lambda payload: serde.deserialize(payload),
    }


class Airflow31Verifier:
    mode = "airflow-3.1"

    def __init__(self, airflow_version: str):
        from airflow_serde_compat import activate

        if not activate(strict=True):  # pragma: no cover - activate raises when strict
            raise RuntimeError("the bridge did not activate")
        self.note = f"verified through the patched readers of apache-airflow-core {airflow_version} in this process"
        self._readers: dict[str, Callable[[Any], Any]] | None = None

    def check(self, column: StoredColumn, payload: Any, verdict: Verdict) -> Check:
        if column.reader is None:
            return Check(Outcome.UNVERIFIED, reason=f"{column.name} has no 3.1 reader (3.2 schema only)")
        if self._readers is None:
            self._readers = _airflow_readers()
        try:
            self._readers[column.reader](payload)
        except Exception as err:  # noqa: BLE001 - every failure is a finding, not a crash
            return _failure(verdict, err)
        return VERIFIED


def verifier_for_installed_airflow() -> Verifier:
    from airflow_serde_compat._bootstrap import airflow_core_version, supported

    version = airflow_core_version()
    if version is not None and supported(version):
        return Airflow31Verifier(version)
    found = f"apache-airflow-core {version} is installed" if version else "Airflow is not installed"
    return PureVerifier(found)
