"""What one stored value is: 3.1-readable, written in the 3.2 format, or unreadable.

Pure: no database and no Airflow import, so every rule here is unit-testable and usable on a
machine that has either Airflow version (or none) installed. The database side lives in
:mod:`airflow_serde_compat.scan.database`.

A *verdict* answers the operator's question "does this row still need the bridge?":

* ``legacy``: Airflow 3.1.8 reads it without the bridge.
* ``serde``: written in the 3.2 format; 3.1.8 needs the bridge. Split by what the bridge
  can do with it: ``translatable`` (the pure translator alone), ``needs_patched_process``
  (a classname that only a patched 3.1 process can decode, through 3.1's own serde and
  allow-list), ``untranslatable`` (the bridge will refuse it too).
* ``undecodable``: not JSON, not decryptable, or refused although nothing in it is 3.2-only.
"""

from __future__ import annotations

import enum
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from airflow_serde_compat.translate import (
    CLASSNAME,
    LEGACY_TYPES,
    TYPE,
    VAR,
    VERSION,
    UnsupportedPayload,
    legacy_throughout,
    to_legacy,
)

try:  # orjson is a dependency, but a --no-deps install into a 3.2 venv may lack it.
    import orjson

    _fast_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None

__all__ = [
    "BARE_DICT",
    "Bridge",
    "Format",
    "TriggerKwargsReader",
    "Verdict",
    "deadline_alert_verdict",
    "deadline_callback_verdict",
    "fernet_keys_from_text",
    "has_19_digits",
    "kwargs_translation",
    "kwargs_verdict",
    "loads_json",
    "parsed_json",
    "serialized_dag_parsed",
    "serialized_dag_payload",
    "serialized_dag_verdict",
    "xcom_parsed",
    "xcom_verdict",
]

#: Label used in classname counts for a plain dict where 3.1 expects ``{"__type": "dict"}``.
BARE_DICT = "(bare dict)"

#: Module that only task-sdk 1.2+ has; the bridge aliases it (deadline alerts, callbacks).
CALLBACK_MODULE_PREFIX = "airflow.sdk.definitions.callback."
#: Serialized-DAG features of 3.2 that 3.1.8 cannot load and no read bridge can translate.
SERIALIZED_DAG_UNTRANSLATABLE_TYPES = {
    "airflow.timetables.trigger.CronPartitionTimetable": "3.2-only timetable CronPartitionTimetable",
    "airflow.timetables.simple.PartitionedAssetTimetable": "3.2-only timetable PartitionedAssetTimetable",
    "mapped_argument": "3.2-only __type mapped_argument",
}
_SERIALIZED_DAG_MARKERS = (
    CALLBACK_MODULE_PREFIX,
    # deadline alerts (or their fields, or the whole list) the 0101 downgrade stored as JSON text:
    # see _alerts_as_text
    "deadline_alert",
    '"deadline": "',
    '"deadline":"',
    '"deadline": ["',
    '"deadline":["',
    "AverageRuntimeDeadline",
    "__class_path",
    *SERIALIZED_DAG_UNTRANSLATABLE_TYPES,
)


class Format(str, enum.Enum):
    NULL = "null"
    LEGACY = "legacy"
    SERDE = "serde"
    UNDECODABLE = "undecodable"


class Bridge(str, enum.Enum):
    """What the bridge can do with a 3.2-format row."""

    TRANSLATABLE = "translatable"
    NEEDS_PATCHED_PROCESS = "needs_patched_process"
    UNTRANSLATABLE = "untranslatable"


@dataclass(frozen=True)
class Verdict:
    format: Format
    bridge: Bridge | None = None
    #: 3.2-format kinds found in the row (serde classnames, BARE_DICT, ...).
    classnames: Sequence[str] = ()
    #: Short, value-free explanation for UNDECODABLE / UNTRANSLATABLE / NEEDS_PATCHED_PROCESS.
    reason: str | None = None
    #: Classnames only a patched 3.1 process can decode (NEEDS_PATCHED_PROCESS).
    resolver_classnames: Sequence[str] = field(default=())
    # The scan counts rows per verdict: a dict lookup per row, which would hash all five fields.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.format, self.bridge, self.classnames, self.reason, self.resolver_classnames))
        )

    def __hash__(self) -> int:
        return self._hash


LEGACY = Verdict(Format.LEGACY)
NULL = Verdict(Format.NULL)


def undecodable(reason: str) -> Verdict:
    return Verdict(Format.UNDECODABLE, reason=reason)


def loads_json(text: str | bytes) -> Any:
    """Parse JSON with orjson, falling back to ``json`` for what orjson refuses (NaN, Infinity)."""
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except ValueError:
            pass
    return json.loads(text)


_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")


def has_19_digits(text: str | bytes) -> bool:
    """Whether ``text`` has 19 digits in a row: without, it holds no integer beyond 64 bits,
    the one JSON value :func:`loads_json` reads otherwise than json (orjson: as a float)."""
    # A byte table in C: a regular expression takes six times as long on a typical row.
    raw = text if text.__class__ is bytes else text.encode("utf-8", "surrogatepass")
    return b"0000000000000000000" in raw.translate(_TO_ZERO)


#: One row nested deeper than a JSON reader follows is that row's problem, not the scan's.
TOO_DEEP = "nested deeper than Airflow's JSON readers follow"


def parsed_json(text: Any, *, as_airflow: bool = False) -> tuple[Any, Verdict | None]:
    """Parsed JSON, or the verdict for a value that is none (NULL, not JSON, too deep).

    ``as_airflow``: parsed by ``json.loads``, as Airflow parses it, for a text where
    :func:`has_19_digits` says the fast parse may differ."""
    if text is None:
        return None, NULL
    try:
        return (json.loads(text) if as_airflow else loads_json(text)), None
    except (ValueError, TypeError, UnicodeDecodeError):
        # Only the exception type: the messages of some parsers quote the input.
        return None, undecodable("not valid JSON")
    except RecursionError:
        return None, undecodable(TOO_DEEP)


def _reason(err: UnsupportedPayload) -> str:
    # Paths name user kwargs keys and differ per row; the reason and classname aggregate well.
    if err.classname is not None:
        return f"{err.classname} v{err.version}: {err.reason}"
    return err.reason


# --- task_instance(_history).next_kwargs and trigger.kwargs: read by BaseSerialization --------


def kwargs_verdict(payload: Any, *, enum_keys: bool = False) -> Verdict:
    """Verdict for a value 3.1 hands to ``BaseSerialization.deserialize`` (already parsed).

    ``enum_keys``: the value is trigger kwargs, where 3.2.x wrote ``"Encoding.TYPE"`` envelopes.
    """
    # The scan's hot path: the commonest verdicts without building the pair.
    if payload is None:
        return NULL
    if legacy_throughout(payload):
        return LEGACY
    return _translation(payload, enum_keys)[0]


def kwargs_translation(payload: Any, *, enum_keys: bool = False) -> tuple[Verdict, Any]:
    """:func:`kwargs_verdict`, and the translator's legacy JSON where the verdict is translatable
    (else None): exactly ``to_legacy(payload, enum_keys=enum_keys)``, which ``rewrite`` needs next."""
    if payload is None:
        return NULL, None
    if legacy_throughout(payload):
        return LEGACY, None
    return _translation(payload, enum_keys)


def _translation(payload: Any, enum_keys: bool) -> tuple[Verdict, Any]:
    kinds: dict[str, int] = {}
    resolver_classnames: list[str] = []

    def record_foreign(envelope: dict, path: str) -> Any:
        # Stand-in for the patched process's resolver: the scan only needs to know that one
        # would be needed, and the walk goes on to find anything that would fail outright.
        resolver_classnames.append(str(envelope.get(CLASSNAME)))
        return None

    try:
        legacy = to_legacy(payload, resolve=record_foreign, counts=kinds, enum_keys=enum_keys)
    except UnsupportedPayload as err:
        if kinds or err.classname is not None:
            return Verdict(Format.SERDE, Bridge.UNTRANSLATABLE, _kinds(kinds, err.classname), _reason(err)), None
        return undecodable(_reason(err)), None
    if not kinds:
        return LEGACY, None
    if resolver_classnames:
        names = tuple(dict.fromkeys(resolver_classnames))
        return Verdict(
            Format.SERDE,
            Bridge.NEEDS_PATCHED_PROCESS,
            _kinds(kinds),
            "decoded only inside a patched Airflow 3.1 process: " + ", ".join(names),
            names,
        ), None
    # No resolver call: the stand-in changed nothing, this is to_legacy's own result.
    return _translatable(_kinds(kinds)), legacy


_TRANSLATABLE: dict[tuple[str, ...], Verdict] = {}


def _translatable(names: tuple[str, ...]) -> Verdict:
    # Rows of one deferral share one verdict: built once, not once per row (frozen dataclasses
    # cost a call per field). Bounded: the names come from rows (made safe, but any number).
    verdict = _TRANSLATABLE.get(names)
    if verdict is None:
        verdict = Verdict(Format.SERDE, Bridge.TRANSLATABLE, names)
        if len(_TRANSLATABLE) < 256 and len(names) <= 8:
            _TRANSLATABLE[names] = verdict
    return verdict


def _kinds(kinds: dict[str, int], extra: str | None = None) -> tuple[str, ...]:
    names = [BARE_DICT if k == "dict" else k for k in kinds]
    if extra is not None and extra not in kinds:
        names.append(extra)
    return tuple(names)


def fernet_keys_from_text(text: str) -> list[str]:
    """Split Airflow's ``[core] fernet_key`` (comma-separated, newest first) into keys."""
    return [part.strip() for part in text.split(",") if part.strip()]


class TriggerKwargsReader:
    """Turns ``trigger.kwargs`` column text into JSON, as 3.1's ``Trigger._decrypt_kwargs`` does.

    Text starting with ``{`` is plaintext (3.2 stores deferral kwargs unencrypted); anything
    else is a Fernet token, tried against every key (``MultiFernet``, key rotation).
    Counts what it saw so the scan can tell a wrong key from a few stale rows.
    """

    def __init__(self, keys: Iterable[str]):
        from cryptography.fernet import Fernet, MultiFernet

        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("utf-8")))
            except (ValueError, TypeError):
                # Never echo the key itself.
                raise ValueError(
                    f"Fernet key #{number} is not 32 url-safe base64-encoded bytes"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None
        self.plaintext = 0
        self.encrypted = 0
        self.decrypted = 0

    @property
    def has_keys(self) -> bool:
        return self._fernet is not None

    def text(self, stored: str) -> tuple[str | bytes | None, Verdict | None]:
        if stored.startswith("{"):
            self.plaintext += 1
            return stored, None
        self.encrypted += 1
        if self._fernet is None:
            return None, undecodable("Fernet-encrypted, and no Fernet key was given")
        from cryptography.fernet import InvalidToken

        try:
            clear = self._fernet.decrypt(stored.encode("utf-8"))
        except InvalidToken:
            return None, undecodable("Fernet: no given key decrypts it")
        self.decrypted += 1
        return clear, None


# --- deadline.callback: read by 3.1's core serde -------------------------------------------


def deadline_callback_verdict(payload: Any) -> Verdict:
    """3.1 reads ``deadline.callback`` with its core serde, which reads serde envelopes and
    legacy ``dict`` envelopes but no other legacy type (what the 0094 downgrade nests in
    ``kwargs``), nor ``uuid.UUID`` or ``airflow.sdk.definitions.callback.*`` classnames."""
    if payload is None:
        return NULL
    found: dict[str, None] = {}
    bad: list[str] = []

    def walk(node: Any) -> None:
        if node.__class__ is list:
            for v in node:
                walk(v)
        elif node.__class__ is dict:
            if len(node) == 2 and TYPE in node and VAR in node:
                type_ = node[TYPE]
                if type_ != "dict":
                    found[f"legacy {type_}"] = None
                    if type_ not in LEGACY_TYPES:
                        bad.append(f"unknown legacy __type {type_!r}")
                    return
                walk(node[VAR])
                return
            classname = node.get(CLASSNAME)
            if classname.__class__ is str and (
                classname == "uuid.UUID" or classname.startswith(CALLBACK_MODULE_PREFIX)
            ):
                found[classname] = None
            for v in node.values():
                walk(v)

    if not isinstance(payload, dict):
        return undecodable(f"expected a JSON object, found {type(payload).__name__}")
    walk(payload)
    if not found:
        return LEGACY
    if bad:
        return Verdict(Format.SERDE, Bridge.UNTRANSLATABLE, tuple(found), bad[0])
    return Verdict(Format.SERDE, Bridge.TRANSLATABLE, tuple(found))


def deadline_alert_verdict(payload: Any) -> Verdict:
    """``deadline_alert.callback_def`` (3.2 schemas only): the 0101 downgrade copies it into
    ``serialized_dag.data``, where 3.1 needs the bridge's module alias to import it."""
    if payload is None:
        return NULL
    text = json.dumps(payload) if not isinstance(payload, str) else payload
    if CALLBACK_MODULE_PREFIX in text:
        return Verdict(Format.SERDE, Bridge.TRANSLATABLE, ("airflow.sdk.definitions.callback",))
    return LEGACY


# --- serialized_dag.data ---------------------------------------------------------------------


def serialized_dag_payload(data: Any, data_compressed: Any) -> tuple[Any, Verdict | None]:
    """The JSON text of a serialized DAG (3.1 stores it zlib-compressed when
    ``[core] compress_serialized_dags`` is on)."""
    if data is not None:
        return data, None
    if data_compressed is None:
        return None, NULL
    try:
        return zlib.decompress(bytes(data_compressed)), None
    except zlib.error:
        return None, undecodable("data_compressed is not zlib data")


def serialized_dag_verdict(text: Any) -> Verdict:
    return serialized_dag_parsed(text)[0]


def serialized_dag_parsed(text: Any) -> tuple[Verdict, Any]:
    """Verdict and parsed DAG (None if not parsed) for ``serialized_dag.data`` text.

    Cheap on purpose: serialized DAGs are large, so only rows whose text mentions a 3.2-only
    name are parsed, to confirm that the name is a classname/type and not, say, in doc_md."""
    if text is None:
        return NULL, None
    raw = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray, memoryview)) else text
    if not any(marker in raw for marker in _SERIALIZED_DAG_MARKERS):
        return LEGACY, None
    payload, failed = parsed_json(bytes(text) if isinstance(text, memoryview) else text)
    if failed is not None:
        return failed, None
    found: dict[str, None] = {}
    untranslatable: dict[str, None] = {}

    def walk(node: Any, depth: int) -> None:
        if depth > 1000:
            return
        cls = node.__class__
        if cls is list:
            for v in node:
                walk(v, depth + 1)
        elif cls is dict:
            classname = node.get(CLASSNAME)
            if classname.__class__ is str and classname.startswith(CALLBACK_MODULE_PREFIX):
                found[classname] = None
            type_ = node.get(TYPE)
            if type_.__class__ is str and type_ in SERIALIZED_DAG_UNTRANSLATABLE_TYPES:
                found[type_] = None
                untranslatable[SERIALIZED_DAG_UNTRANSLATABLE_TYPES[type_]] = None
            if node.get("reference_type") == "AverageRuntimeDeadline":
                found["AverageRuntimeDeadline"] = None
                untranslatable["3.2-only deadline reference AverageRuntimeDeadline"] = None
            if "__class_path" in node and "reference_type" in node:
                found["custom deadline reference"] = None
                untranslatable["3.2 custom deadline reference (__class_path)"] = None
            for v in node.values():
                walk(v, depth + 1)
        elif cls is str and node[:1] == "{" and any(m in node for m in _SERIALIZED_DAG_MARKERS):
            # On SQLite/MySQL the 0101 downgrade writes deadline alert parts as JSON strings.
            try:
                walk(loads_json(node), depth + 1)
            except ValueError:
                pass

    walk(payload, 0)
    found.update(_alerts_as_text(payload))
    for name in (DEADLINE_LIST_AS_TEXT, DEADLINE_ALERT_IDS):
        if name in found:
            untranslatable[name + ": neither 3.1 nor the bridge reads it; 3.1's dag-processor writes a new "
                           "DAG version when it re-parses the file"] = None
    if not found:
        return LEGACY, payload
    if untranslatable:
        # What the bridge cannot help with comes first: it is the classname a failure names.
        names = sorted(found, key=lambda n: n.startswith(CALLBACK_MODULE_PREFIX))
        return Verdict(Format.SERDE, Bridge.UNTRANSLATABLE, tuple(names), "; ".join(untranslatable)), payload
    return Verdict(Format.SERDE, Bridge.TRANSLATABLE, tuple(found)), payload


DEADLINE_LIST_AS_TEXT = "DAG deadline list stored as JSON text (MariaDB downgrade)"
#: Seen on MariaDB: the 0101 downgrade leaves 3.2's references to ``deadline_alert`` rows (their ids)
#: in the DAG's deadline list, and drops that table: the alerts are gone.
DEADLINE_ALERT_IDS = "DAG deadline list still holds 3.2 deadline_alert ids (the downgrade dropped the alerts)"


def _alerts_as_text(payload: Any) -> dict[str, None]:
    """Deadline alerts 3.1's ``deserialize_deadline_alert`` cannot take: outside PostgreSQL the 0101
    downgrade copies them through an untyped column, so an alert (MariaDB) or its ``reference`` and
    ``callback`` fields (SQLite) come back as JSON text. Only a bridged 3.1 reads them."""
    dag = payload.get("dag") if payload.__class__ is dict else None
    alerts = dag.get("deadline") if dag.__class__ is dict else None
    found: dict[str, None] = {}
    if alerts.__class__ is str:
        # MariaDB: 0101's downgrade JSON_SETs the list as a string (its CAST(... AS JSON) keeps text);
        # 3.1 iterates it character by character.
        return {DEADLINE_LIST_AS_TEXT: None}
    for alert in alerts if alerts.__class__ is list else [alerts] if alerts is not None else []:
        if alert.__class__ is str:
            found["deadline alert stored as JSON text" if alert[:1] == "{" else DEADLINE_ALERT_IDS] = None
        elif alert.__class__ is dict:
            data = alert.get(VAR, alert)
            if data.__class__ is dict and any(data.get(f).__class__ is str for f in ("reference", "callback")):
                found["deadline alert fields stored as JSON text"] = None
    return found


# --- xcom.value: read by 3.1's core serde --------------------------------------------------

_XCOM_MARKER = "uuid.UUID"


def xcom_verdict(text: Any) -> Verdict:
    return xcom_parsed(text)[0]


def xcom_parsed(text: Any) -> tuple[Verdict, Any]:
    """XCom values use the same serde in both versions; only ``uuid.UUID`` is new in 3.2.
    Values that do not mention it are not parsed (XComs can be large)."""
    if text is None:
        return NULL, None
    raw = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray, memoryview)) else text
    if _XCOM_MARKER not in raw:
        return LEGACY, None
    payload, failed = parsed_json(raw)
    if failed is not None:
        return failed, None
    stack = [payload]
    while stack:
        node = stack.pop()
        if node.__class__ is dict:
            if node.get(CLASSNAME) == _XCOM_MARKER and VERSION in node:
                return Verdict(Format.SERDE, Bridge.TRANSLATABLE, (_XCOM_MARKER,)), payload
            stack.extend(node.values())
        elif node.__class__ is list:
            stack.extend(node)
    return LEGACY, payload
