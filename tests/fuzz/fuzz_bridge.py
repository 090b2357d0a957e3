"""Coverage-guided fuzz target (atheris) for the translator and the BaseSerialization wrapper.

    python tests/fuzz/fuzz_bridge.py -max_total_time=60 CORPUS_DIR [tests/fuzz/corpus]

Each input is turned into a JSON value built from the vocabulary an attacker would use on the
bridge (the envelope keys, every legacy ``__type``, serde classnames known and foreign, the
gadget module, huge and non-finite numbers), placed where outside data sits in a 3.2 row
(``{"event": value}``). Invariants, checked on every input in a real Airflow 3.1.8 with the
bridge active:

* only the bridge's own error (``UnsupportedPayload``) escapes ``to_legacy`` and the wrapped
  ``BaseSerialization.deserialize``; the trigger-kwargs reader raises its TypeError only;
* the translator's output holds nothing but ``OUTPUT_TYPES`` envelopes;
* no package outside Airflow's allow-list (``airflow.*``) enters ``sys.modules`` after warm-up,
  the gadget module never does, and no gadget leaves a file;
* ``scan``'s classifier never raises.

A failing input is written by atheris as ``crash-*``; keep it in tests/fuzz/corpus once fixed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "fixtures" / "gadgets")]
FLAGS = tempfile.mkdtemp(prefix="serde-compat-fuzz-flags-")
os.environ["SERDE_COMPAT_GADGET_DIR"] = FLAGS
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="serde-compat-fuzz-home-"))

with atheris.instrument_imports(include=["airflow_serde_compat"]):
    import airflow_serde_compat
    from airflow_serde_compat import isolation, translate
    from airflow_serde_compat.scan.classify import kwargs_verdict
    from airflow_serde_compat.translate import OUTPUT_TYPES, UnsupportedPayload, check_output, to_legacy

import gadgets  # noqa: E402

from airflow.models.trigger import Trigger  # noqa: E402
from airflow.serialization.serialized_objects import BaseSerialization  # noqa: E402

assert airflow_serde_compat.activate(strict=True) and airflow_serde_compat.is_active()
# One ERROR line per refused classname is the product's behaviour; here it would only be noise.
logging.getLogger("airflow_serde_compat").setLevel(logging.CRITICAL)

KEYS = ["__type", "__var", "__classname__", "__version__", "__data__", "Encoding.TYPE", "Encoding.VAR",
        "timestamp", "tz", "exc_cls_name", "args", "kwargs", "__class", "command", "event", "k"]
TYPES = sorted(translate.LEGACY_TYPES) + ["frozenset", "foo", ""]
CLASSNAMES = sorted(translate.SERDE_VERSIONS) + [
    "pandas.DataFrame", "builtins.exec", "os.system", "uuid.UUID", f"{gadgets.GADGET_MODULE}.Boom",
    f"{gadgets.GADGET_MODULE}.boom", "airflow.sdk.definitions.deadline.AsyncCallback", "subprocess.Popen",
]
STRINGS = TYPES + CLASSNAMES + ["UTC", "Europe/Paris", "Not/AZone", f"import {gadgets.GADGET_MODULE}",
                                f"touch {FLAGS}/called", "", "x" * 300]
NUMBERS = [0, 1, -1, 2, 99, 2**63, -(2**70), 1.5, 1e300, -1e300, float("nan"), float("inf"), 1893456000.0]


def build(fdp: atheris.FuzzedDataProvider, depth: int = 0):
    choice = fdp.ConsumeIntInRange(0, 9 if depth < 12 else 4)
    if choice == 0:
        return None
    if choice == 1:
        return fdp.ConsumeBool()
    if choice == 2:
        return fdp.PickValueInList(NUMBERS) if fdp.ConsumeBool() else fdp.ConsumeInt(8)
    if choice == 3:
        return fdp.PickValueInList(STRINGS)
    if choice == 4:
        return fdp.ConsumeUnicodeNoSurrogates(8)
    if choice == 5:
        return [build(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if choice == 6:  # a legacy envelope
        key_type, key_var = ("Encoding.TYPE", "Encoding.VAR") if fdp.ConsumeBool() and fdp.ConsumeBool() else (
            "__type", "__var")
        return {key_type: fdp.PickValueInList(TYPES), key_var: build(fdp, depth + 1)}
    if choice == 7:  # a serde envelope
        node = {"__classname__": fdp.PickValueInList(CLASSNAMES), "__version__": fdp.ConsumeIntInRange(0, 3)}
        if fdp.ConsumeBool():
            node["__data__"] = build(fdp, depth + 1)
        return node
    if choice == 8:  # a gadget, whole
        return fdp.PickValueInList(list(gadgets.legacy_gadgets(FLAGS).values()) + [gadgets.double_decode_gadget(FLAGS)])
    return {fdp.PickValueInList(KEYS) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(4): build(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 4))}


def warm_up() -> set[str]:
    """Decode the golden corpus and every vocabulary classname once, so the libraries that
    3.1's registered serde decoders import lazily (pandas, pyarrow, numpy...) are already in:
    after this, a new module can only be one the data chose."""
    for classname in CLASSNAMES:
        for data in (None, {}, [], "x", 1, 1.5):
            try:
                BaseSerialization.deserialize({"v": {"__classname__": classname, "__version__": 1, "__data__": data}})
            except UnsupportedPayload:
                pass
    for case in json.loads((HERE.parent / "fixtures" / "corpus" / "sdk-1.2.1.json").read_text())["cases"]:
        if "serde_json" in case:
            try:
                BaseSerialization.deserialize(json.loads(case["serde_json"]))
            except UnsupportedPayload:
                pass
    return set(sys.modules)


warm_up()
#: Taken at the first input, once libFuzzer's own modules are in.
BASELINE: set[str] = set()
BASELINE_PACKAGES: set[str] = set()


def check_side_effects() -> None:
    if not BASELINE:
        BASELINE.update(sys.modules)
        BASELINE_PACKAGES.update(m.partition(".")[0] for m in BASELINE)
        BASELINE_PACKAGES.add("airflow")  # the default allow-list
    assert gadgets.GADGET_MODULE not in sys.modules, "the gadget module was imported"
    assert not os.listdir(FLAGS), f"a gadget ran: {os.listdir(FLAGS)}"
    # A submodule of a package already in (pyarrow's parquet reader...) is that library's
    # business; a package that was not is one the data chose.
    new = [m for m in set(sys.modules) - BASELINE if m.partition(".")[0] not in BASELINE_PACKAGES]
    assert not new, f"modules outside the allow-list were imported: {sorted(new)[:5]}"


def test_one_input(data: bytes) -> None:
    check_side_effects()
    fdp = atheris.FuzzedDataProvider(data)
    row = {"event": build(fdp)}
    for enum_keys in (False, True):
        try:
            legacy = to_legacy(row, enum_keys=enum_keys)
        except UnsupportedPayload:
            pass
        else:
            check_output(legacy)  # raises UnsupportedPayload -> the invariant is broken
    try:
        BaseSerialization.deserialize(row)
    except UnsupportedPayload:
        pass
    try:
        Trigger._decrypt_kwargs(json.dumps(row))
    except isolation.UndecodableTriggerKwargs:
        pass
    kwargs_verdict(row)
    kwargs_verdict(row, enum_keys=True)
    check_side_effects()


def main() -> None:
    assert OUTPUT_TYPES  # imported for the docstring's claim
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
