"""Row data never becomes code: a gadget suite per read path, on the real Airflow 3.1.8.

Every gadget (tests/gadgets.py) is first shown to run when 3.1.8 decodes it as its own data,
so a pass below means the bridge stopped it, not that the gadget was broken. Inside a 3.2
payload, on each read path that meets 3.2 rows, it must be refused: no import of the marker
module, no call, no file, and the error names the type and path.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

import gadgets

READ_PATHS = ("next_kwargs", "event_payload", "list_item", "tuple_item", "nested_dict")


@pytest.fixture
def flag_dir(tmp_path, monkeypatch):
    d = tmp_path / "flags"
    d.mkdir()
    monkeypatch.setenv("SERDE_COMPAT_GADGET_DIR", str(d))
    monkeypatch.syspath_prepend(gadgets.GADGET_PATH)
    sys.modules.pop(gadgets.GADGET_MODULE, None)
    yield str(d)
    sys.modules.pop(gadgets.GADGET_MODULE, None)


def _in_32_position(where: str, gadget: dict) -> dict:
    """The gadget where outside data sits in a 3.2 row (a trigger event's payload...)."""
    return {
        "next_kwargs": {"g": gadget},
        "event_payload": {"event": {"body": {"items": [gadget]}}, "budget": 1},
        "list_item": {"xs": [1, gadget]},
        "tuple_item": {"t": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [gadget]}},
        "nested_dict": {"outer": {"__type": "dict", "__var": {"inner": gadget}}},
    }[where]


@pytest.mark.parametrize("name", gadgets.FIRING)
def test_each_gadget_really_runs_when_3_1_decodes_it_as_its_own_data(flag_dir, name):
    from airflow.serialization.serialized_objects import BaseSerialization

    with contextlib.suppress(Exception):  # some fail after the damage is done
        BaseSerialization.deserialize(gadgets.legacy_gadgets(flag_dir)[name])
    assert gadgets.effects(flag_dir), "the gadget is broken: the suite would prove nothing"


@pytest.mark.parametrize("where", READ_PATHS)
@pytest.mark.parametrize("name", sorted(gadgets.legacy_gadgets("/x")))
def test_base_serialization_refuses_gadgets_in_3_2_positions(bridge, flag_dir, name, where):
    # The worker's resume path and every ORM load go through this class-level wrapper.
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    gadget = gadgets.legacy_gadgets(flag_dir)[name]
    with pytest.raises(UnsupportedPayload, match=f"legacy '{gadget['__type']}' envelope inside an Airflow 3.2"):
        BaseSerialization.deserialize(_in_32_position(where, gadget))
    assert gadgets.effects(flag_dir) == []


@pytest.mark.parametrize("name", gadgets.FIRING)
def test_encoding_key_gadgets_are_user_data_in_next_kwargs_and_refused_in_trigger_kwargs(bridge, flag_dir, name):
    from airflow.models.trigger import Trigger
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.isolation import UndecodableTriggerKwargs

    legacy = gadgets.legacy_gadgets(flag_dir)[name]
    enum_gadget = {"Encoding.TYPE": legacy["__type"], "Encoding.VAR": legacy["__var"]}
    # In next_kwargs such a dict is user data, as 3.1.8 and 3.2.1 read it.
    decoded = BaseSerialization.deserialize({"g": enum_gadget})
    assert decoded["g"]["Encoding.TYPE"] == legacy["__type"]
    # In trigger kwargs (the only place 3.2.x wrote these keys) only plain types are repaired.
    with pytest.raises(UndecodableTriggerKwargs, match="Encoding.TYPE' envelope of type"):
        Trigger._decrypt_kwargs(json.dumps({"g": enum_gadget}))
    assert gadgets.effects(flag_dir) == []


def _fernet():
    from airflow.models.crypto import get_fernet

    return get_fernet()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "fernet"])
@pytest.mark.parametrize("name", gadgets.FIRING)
def test_trigger_kwargs_gadgets_fail_the_trigger_without_running(bridge, flag_dir, monkeypatch, name, encrypted):
    from cryptography.fernet import Fernet

    from airflow.models.trigger import Trigger

    from airflow_serde_compat.isolation import UndecodableTriggerKwargs

    from airflow.models import crypto

    # A real key, as a deployment has; get_fernet() builds it from [core] fernet_key.
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    monkeypatch.setattr(crypto, "_fernet", None)
    text = json.dumps({"moment": 1, "body": gadgets.legacy_gadgets(flag_dir)[name]})
    stored = _fernet().encrypt(text.encode()).decode() if encrypted else text
    with pytest.raises(UndecodableTriggerKwargs, match="inside an Airflow 3.2 payload"):
        Trigger._decrypt_kwargs(stored)
    assert gadgets.effects(flag_dir) == []


def test_the_trigger_runners_second_decode_cannot_be_used_to_call(bridge, flag_dir):
    # What 3.1.8's TriggerRunner.create_triggers does with each kwarg after _decrypt_kwargs.
    from airflow.models.trigger import Trigger
    from airflow.serialization import serialized_objects

    row = json.dumps({"moment": 1, "k": gadgets.double_decode_gadget(flag_dir)})
    kwargs = Trigger._decrypt_kwargs(row)
    decoded = {k: serialized_objects.smart_decode_trigger_kwargs(v) for k, v in kwargs.items()}
    assert decoded["k"]["__type"] == "base_trigger"  # left as the dict it is
    assert gadgets.effects(flag_dir) == []
    # Proof that the patch is what stops it: the translator alone would let it run.
    serialized_objects.smart_decode_trigger_kwargs.__wrapped__(kwargs["k"])
    assert gadgets.effects(flag_dir) == ["called"]


def test_orm_loads_of_gadget_rows_become_the_rows_failure(bridge, flag_dir, tmp_path):
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from airflow.models import import_all_models
    from airflow.models.base import Base
    from airflow.models.taskinstance import TaskInstance

    from airflow_serde_compat import isolation

    import_all_models()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    Base.metadata.create_all(engine)
    ids = {}
    with Session(engine) as session:
        session.execute(sa.text(
            "INSERT INTO dag_run (id, dag_id, run_id, run_type, run_after, clear_number, log_template_id, "
            "state) VALUES (1, 'd', 'r', 'manual', '2026-01-01 00:00:00', 0, NULL, 'running')"))
        for i, name in enumerate(gadgets.FIRING):
            ids[name] = f"0190a0a0-0000-7000-8000-{i:012d}"
            session.execute(sa.text(
                "INSERT INTO task_instance (id, dag_id, task_id, run_id, map_index, try_number, max_tries, pool, "
                "pool_slots, queue, priority_weight, state, next_method, next_kwargs, dag_version_id, "
                "custom_operator_name, hostname, unixname) VALUES (:id, 'd', :t, 'r', -1, 1, 0, 'default_pool', 1, "
                "'default', 1, 'deferred', 'resume', :nk, :dv, '', '', '')"),
                {"id": ids[name], "t": name, "dv": ids[name],
                 "nk": json.dumps({"event": {"payload": gadgets.legacy_gadgets(flag_dir)[name]}})})
        session.commit()
        for name, ti_id in ids.items():
            ti = session.get(TaskInstance, ti_id)
            assert isinstance(ti.next_kwargs, isolation.marker_class()), name
    engine.dispose()
    assert gadgets.effects(flag_dir) == []


@pytest.mark.parametrize("name", gadgets.FIRING)
def test_deadline_callbacks_decode_only_plain_kwargs(bridge, flag_dir, name):
    from airflow.models import deadline

    from airflow_serde_compat import UnsupportedPayload

    gadget = gadgets.legacy_gadgets(flag_dir)[name]
    callback = "airflow.sdk.definitions.deadline.AsyncCallback"
    cases = [
        # In the kwargs the downgrade rebuilt as legacy JSON: checked before anything is decoded.
        {"__classname__": callback, "__version__": 0,
         "__data__": {"path": "m.f", "kwargs": {"__type": "dict", "__var": {"x": gadget}}}},
        # Elsewhere in the callback: left to 3.1's serde, which refuses it under its allow-list.
        {"__classname__": callback, "__version__": 0,
         "__data__": {"path": "m.f", "kwargs": {"__type": "dict", "__var": {}}, "extra": gadget}},
        # Under a classname that is no callback: the pre-walk does not even look inside.
        {"__classname__": f"{gadgets.GADGET_MODULE}.Boom", "__version__": 0,
         "__data__": {"kwargs": {"__type": "dict", "__var": {"x": gadget}}}},
    ]
    for payload in cases:
        with pytest.raises((UnsupportedPayload, ImportError)):
            deadline.deserialize(payload)
    assert gadgets.effects(flag_dir) == []


@pytest.mark.parametrize("name", gadgets.FIRING)
def test_serialized_dags_with_gadgets_in_3_2_positions_do_not_load(bridge, flag_dir, name):
    import pendulum

    from airflow.sdk import DAG
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.serialization.serialized_objects import SerializedDAG

    with DAG("g", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args={"retries": 1}) as dag:
        EmptyOperator(task_id="t")
    data = SerializedDAG.to_dict(dag)
    SerializedDAG.from_dict(data)  # loads as it is
    data["dag"]["default_args"] = {"__type": "dict", "__var": {"x": {"y": gadgets.legacy_gadgets(flag_dir)[name]}}}
    with pytest.raises(Exception) as info:
        SerializedDAG.from_dict(data)
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert any("envelope inside an Airflow 3.2 payload" in text for text in chain), chain
    assert gadgets.effects(flag_dir) == []


@pytest.mark.parametrize(
    "value",
    [
        {"__classname__": f"{gadgets.GADGET_MODULE}.Boom", "__version__": 1, "__data__": {}},
        {"__classname__": "builtins.exec", "__version__": 1, "__data__": f"import {gadgets.GADGET_MODULE}"},
        {"a": {"__type": "base_trigger", "__var": [f"{gadgets.GADGET_MODULE}.boom", {}]}},
        {"__classname__": "uuid.UUID", "__version__": 1, "__data__": {"__classname__": f"{gadgets.GADGET_MODULE}.Boom"}},
    ],
    ids=["classname", "builtins", "legacy-in-dict", "uuid-data"],
)
def test_xcom_values_with_gadgets_are_refused(bridge, flag_dir, value):
    from airflow.serialization import serde

    with pytest.raises((ImportError, ValueError, TypeError)):
        serde.deserialize(value)
    assert gadgets.effects(flag_dir) == []


def test_scan_verify_reports_gadget_rows_and_never_runs_them(tmp_path):
    """The operator's machine: `scan --verify` in a fresh interpreter, on a 3.1.8 SQLite DB."""
    flag_dir = tmp_path / "flags"
    flag_dir.mkdir()
    db = tmp_path / "airflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
        "SERDE_COMPAT_GADGET_DIR": str(flag_dir),
        "PYTHONPATH": gadgets.GADGET_PATH,
    })
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=600)
    import sqlite3

    con = sqlite3.connect(db)
    for i, name in enumerate(gadgets.FIRING):
        row = json.dumps({"event": {"payload": gadgets.legacy_gadgets(str(flag_dir))[name]}})
        con.execute(
            "INSERT INTO task_instance (id, dag_id, task_id, run_id, map_index, try_number, max_tries, pool, "
            "pool_slots, queue, priority_weight, state, next_method, next_kwargs, dag_version_id, "
            "custom_operator_name, hostname, unixname) VALUES (?, 'd', ?, 'r', -1, 1, 0, 'default_pool', 1, "
            "'default', 1, 'deferred', 'resume', ?, ?, '', '', '')",
            (f"0190a0a0-0000-7000-8000-{i:012d}", name, row, f"0190a0a0-0000-7000-8000-{i:012d}"))
        con.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('x.Y', ?, '2026-01-01')",
                    (json.dumps({"body": gadgets.legacy_gadgets(str(flag_dir))[name]}),))
    con.commit()
    con.close()
    p = subprocess.run([sys.executable, "-m", "airflow_serde_compat", "scan", "--verify", "--output", "json",
                        "--fernet-key="], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    report = {s["source"]: s for s in json.loads(p.stdout)["sources"]}
    for source in ("task_instance.next_kwargs", "trigger.kwargs"):
        s = report[source]
        assert s["serde_untranslatable"] == len(gadgets.FIRING), s
        assert s["verify"]["failures"] == len(gadgets.FIRING), s
        assert all("inside an Airflow 3.2 payload" in r["reason"] for r in s["verify"]["failed_rows"]), s
    assert sorted(p.name for p in flag_dir.iterdir()) == []


# --- found by attacking the rules above (issue #9 review) ---------------------------------------


@pytest.mark.parametrize(
    "envelope",
    [
        # Callback.deserialize imports its "path" before anything can check the result.
        {"__classname__": "airflow.sdk.definitions.deadline.AsyncCallback", "__version__": 0,
         "__data__": {"path": f"{gadgets.GADGET_MODULE}.boom", "kwargs": {}}},
        {"__classname__": "airflow.sdk.definitions.callback.SyncCallback", "__version__": 0,
         "__data__": {"path": f"{gadgets.GADGET_MODULE}.boom", "kwargs": {}}},
        # str(ParamsDict) validates a Param against a row-chosen regex: exponential backtracking.
        {"__classname__": "airflow.sdk.definitions.param.ParamsDict", "__version__": 1, "__data__": {
            "p": {"__classname__": "airflow.sdk.definitions.param.Param", "__version__": 1, "__data__": {
                "value": "a" * 40 + "!", "description": None, "schema": {"type": "string", "pattern": "^(a+)+$"}}}}},
    ],
    ids=["async-callback-path", "sync-callback-alias", "param-regex"],
)
def test_airflow_classes_in_3_2_payloads_are_not_decoded(bridge, flag_dir, envelope):
    import time

    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    started = time.monotonic()
    with pytest.raises(UnsupportedPayload, match="an Airflow class inside an Airflow 3.2 payload"):
        BaseSerialization.deserialize({"event": envelope})
    assert time.monotonic() - started < 5
    assert gadgets.effects(flag_dir) == []


@pytest.mark.parametrize("zone", ["America", "Nope/Zone", "../../../etc/passwd"])
def test_the_runners_second_decode_fails_with_the_type_error_it_survives(bridge, zone):
    from airflow.models.trigger import Trigger
    from airflow.serialization import serialized_objects

    from airflow_serde_compat.isolation import UndecodableTriggerKwargs

    kwargs = Trigger._decrypt_kwargs(json.dumps({"k": {"__type": "dict", "__var": {"__type": "timezone", "__var": zone}}}))
    with pytest.raises(UndecodableTriggerKwargs) as info:
        serialized_objects.smart_decode_trigger_kwargs(kwargs["k"])
    assert zone not in str(info.value) and "site-packages" not in str(info.value)


def test_counters_stay_bounded_on_the_plain_dict_fallback(bridge):
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload, patch, translate

    for i in range(translate.MAX_COUNTED_KINDS + 50):
        row = {"__type": "dict", "__var": {"k": {"__type": "not_legacy", "__var": {
            "__classname__": f"made.up{i}" + "x" * 1000, "__version__": 1, "__data__": 1}}}}
        with contextlib.suppress(UnsupportedPayload):
            BaseSerialization.deserialize(row)
    assert len(patch.counts) <= translate.MAX_COUNTED_KINDS + 1


def test_a_parquet_bomb_is_refused_before_it_inflates(bridge):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    buf = io.BytesIO()
    # 20 M identical int64s: a few hundred KB compressed, 160 MB in memory.
    pq.write_table(pa.table({"x": pa.repeat(pa.scalar(1, pa.int64()), 20_000_000)}), buf, compression="zstd")
    envelope = {"__classname__": "pandas.DataFrame", "__version__": 1, "__data__": buf.getvalue().hex()}
    with pytest.raises(UnsupportedPayload, match="cells and .* bytes uncompressed, over the bridge's"):
        BaseSerialization.deserialize({"event": envelope})


def test_pod_timestamps_long_enough_to_stall_the_parser_are_refused(bridge):
    import time

    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat import UnsupportedPayload

    pod = {"__classname__": "kubernetes.client.models.v1_pod.V1Pod", "__version__": 1,
           "__data__": {"metadata": {"creationTimestamp": "1" * 300_000}}}
    started = time.monotonic()
    with pytest.raises(UnsupportedPayload, match="serialized pod"):
        BaseSerialization.deserialize({"event": pod})
    assert time.monotonic() - started < 5
