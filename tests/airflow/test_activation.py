"""Activation in fresh interpreters: the env switch, every patch/import/unpatch order, guards.

Each test runs its scenario in a new interpreter of the test venv, where the package is
installed from a wheel (its ``.pth`` included), as in a user's image.
"""

from __future__ import annotations

import os
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The 3.1.x this run reads with (`make test` runs this file under every tested reader).
CORE = metadata.version("apache-airflow-core")

#: `import airflow`, then the bridge must be active and the serializer wrapped.
IMPORT_AIRFLOW_AND_CHECK_PATCHED = """\
import airflow
import airflow_serde_compat
from airflow.serialization.serialized_objects import BaseSerialization
assert airflow_serde_compat.is_active()
assert hasattr(vars(BaseSerialization)["deserialize"].__func__, "__wrapped__")
print("ok")
"""

PROBE = """
import sys
from airflow.serialization.serialized_objects import BaseSerialization, SerializedDAG
raw = vars(BaseSerialization)["deserialize"]
wrapped = getattr(raw.__func__, "__wrapped__", None)
assert wrapped is None or getattr(wrapped, "__wrapped__", None) is None, "wrapped twice"
state = "patched" if wrapped is not None else "original"
"""


def test_unset_variable_imports_nothing_and_patches_nothing(run_python):
    proc = run_python(
        PROBE
        + """
assert state == "original", state
# 3.1.x's `import airflow` loads the airflow.policy entry point: only the switch is imported.
ours = sorted(m for m in sys.modules if m.startswith("airflow_serde_compat") or m == "wrapt")
print(ours)
"""
    )
    assert proc.stdout == "['airflow_serde_compat', 'airflow_serde_compat._bootstrap', 'airflow_serde_compat._policy']\n"


def test_variable_set_patches_once_on_import_and_writes_nothing_to_stdout(run_python):
    proc = run_python(
        PROBE
        + """
import airflow_serde_compat, airflow_serde_compat._bootstrap as b
assert state == "patched" and airflow_serde_compat.is_active() and b.loaded
assert raw.__func__.__wrapped__.__module__ == "airflow.serialization.serialized_objects"
# Subclasses still bind the classmethod to themselves.
assert SerializedDAG.deserialize.__self__ is SerializedDAG
""",
        env={"AIRFLOW_SERDE_COMPAT": "1"},
    )
    assert proc.stdout == ""
    assert f"airflow-serde-compat active (apache-airflow-core {CORE})" in proc.stderr


def test_unrecognised_value_warns_and_stays_off(run_python):
    proc = run_python(PROBE + "assert state == 'original'", env={"AIRFLOW_SERDE_COMPAT": "maybe"})
    assert "is not one of 1/true/strict/0/false" in proc.stderr
    assert proc.stdout == ""


ORDERS = {
    "activate, import": ("A", "I"),
    "import, activate": ("I", "A"),
    "activate, activate, import": ("A", "A", "I"),
    "activate, import, activate": ("A", "I", "A"),
    "deactivate, activate, import": ("D", "A", "I"),
    "import, activate, deactivate, deactivate": ("I", "A", "D", "D"),
    "activate, import, deactivate, activate": ("A", "I", "D", "A"),
    "import, activate, deactivate, activate, deactivate": ("I", "A", "D", "A", "D"),
}


def test_every_patch_import_unpatch_order_ends_in_the_expected_state(run_python):
    script = """
import sys
import airflow_serde_compat as bridge
steps, original = sys.argv_steps, None

def current():
    from airflow.serialization.serialized_objects import BaseSerialization
    return vars(BaseSerialization)["deserialize"]

imported = False
for step in steps:
    if step == "I":
        from airflow.serialization.serialized_objects import BaseSerialization
        imported = True
    elif step == "A":
        assert bridge.activate() is True
    elif step == "D":
        assert bridge.deactivate() == []
    if imported and original is None:
        raw = current()
        original = getattr(raw.__func__, "__wrapped__", raw.__func__)
active = steps[-1] == "A" or (steps[-1] == "I" and "A" in steps and steps[-2] != "D")
assert bridge.is_active() is active, (steps, bridge.is_active())
raw = current()
if active:
    assert raw.__func__.__wrapped__ is original and not hasattr(original, "__wrapped__")
else:
    assert raw.__func__ is original, "not restored to the very same function"
    assert isinstance(raw, classmethod)
print("ok")
"""
    for name, steps in ORDERS.items():
        proc = run_python(f"import sys; sys.argv_steps = {steps!r}\n" + script)
        assert proc.stdout == "ok\n", name


def test_a_wrapper_on_top_of_ours_is_left_in_place(run_python):
    proc = run_python(
        """
import airflow_serde_compat as bridge
from airflow.serialization.serialized_objects import BaseSerialization
bridge.activate()
ours = vars(BaseSerialization)["deserialize"]
def theirs(cls, encoded_var):
    return ours.__func__(cls, encoded_var)
BaseSerialization.deserialize = classmethod(theirs)
assert bridge.deactivate() == ["BaseSerialization.deserialize"]
assert vars(BaseSerialization)["deserialize"].__func__ is theirs
"""
    )
    assert "another wrapper is on top" in proc.stderr


def _fake_core(tmp_path: Path, version: str) -> str:
    dist = tmp_path / f"apache_airflow_core-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: apache-airflow-core\nVersion: {version}\n")
    return str(tmp_path)


def test_unsupported_airflow_core_warns_once_and_patches_nothing(run_python, tmp_path):
    env = {"AIRFLOW_SERDE_COMPAT": "1", "PYTHONPATH": _fake_core(tmp_path, "3.2.1")}
    proc = run_python(PROBE + "assert state == 'original'", env=env)
    assert proc.stderr.count("supports apache-airflow-core 3.1.x only; found 3.2.1") == 1


def test_strict_mode_fails_the_process_on_an_unsupported_airflow(run_python, tmp_path):
    env = {"AIRFLOW_SERDE_COMPAT": "strict", "PYTHONPATH": _fake_core(tmp_path, "3.2.1")}
    # site.py reports a failing .pth line and carries on; `import airflow` then runs the
    # policy entry point, which raises.
    proc = run_python("import airflow", env=env, check=False)
    assert proc.returncode != 0
    assert "RuntimeError: airflow-serde-compat supports apache-airflow-core 3.1.x only" in proc.stderr


def test_a_target_that_changed_shape_is_not_patched_and_import_still_works(run_python):
    proc = run_python(
        """
import airflow_serde_compat._bootstrap as b, types
assert b.activate()
fake = types.ModuleType("airflow.serialization.serialized_objects")
class BaseSerialization:
    @staticmethod
    def deserialize(encoded_var):
        return encoded_var
fake.BaseSerialization = BaseSerialization
b.apply_guarded(b._PRIMARY, fake)  # what the post-import hook does
assert vars(BaseSerialization)["deserialize"].__func__(1) == 1
print("ok")
"""
    )
    assert proc.stdout == "ok\n"
    assert "not patching airflow.serialization.serialized_objects: BaseSerialization.deserialize is not a classmethod" in proc.stderr


def test_strict_mode_makes_the_same_mismatch_fatal(run_python):
    proc = run_python(
        """
import airflow_serde_compat._bootstrap as b, types
assert b.activate(strict=True)
fake = types.ModuleType("airflow.serialization.serialized_objects")
class BaseSerialization:
    deserialize = None
fake.BaseSerialization = BaseSerialization
b.apply_guarded(b._PRIMARY, fake)
""",
        check=False,
    )
    assert proc.returncode != 0 and "PatchSkipped" in proc.stderr


def test_pth_file_is_installed_at_the_site_packages_root():
    pth = Path(sysconfig.get_paths()["purelib"]) / "airflow_serde_compat.pth"
    line = pth.read_text().strip()
    assert line.startswith("import os; os.environ.get(\"AIRFLOW_SERDE_COMPAT\") and ")
    assert "\n" not in line


def test_airflow_policy_entry_point_activates_from_import_airflow(run_python):
    # The second way in: 3.1.x's `import airflow` loads every airflow.policy entry point. With
    # the .pth not run (-S skips site; we add site-packages by hand), the hook alone activates.
    site = sysconfig.get_paths()["purelib"]
    proc = run_python(
        f"""
import sys; sys.path.append({site!r})
{IMPORT_AIRFLOW_AND_CHECK_PATCHED}""",
        env={"AIRFLOW_SERDE_COMPAT": "1"},
        python_args=["-S"],
    )
    assert proc.stdout == "ok\n"


def test_pth_in_a_site_processed_before_airflow_waits_quietly_for_the_entry_point(run_python, tmp_path):
    # A user site (pip install --user) is processed before the interpreter's own site-packages:
    # there the .pth runs while neither Airflow nor wrapt can be imported yet.
    early = tmp_path / "user-site"
    early.mkdir()
    site = sysconfig.get_paths()["purelib"]
    (early / "airflow_serde_compat").symlink_to(Path(site) / "airflow_serde_compat")
    (early / "airflow_serde_compat.pth").write_text((Path(site) / "airflow_serde_compat.pth").read_text())
    proc = run_python(
        f"""
import site, sys
site.addsitedir({str(early)!r})  # the .pth runs now, with no Airflow and no wrapt on sys.path
import airflow_serde_compat._bootstrap as b
assert not b.loaded and not b._enabled, "activated without Airflow"
assert "wrapt" not in sys.modules
site.addsitedir({site!r})  # then the interpreter's own site-packages
{IMPORT_AIRFLOW_AND_CHECK_PATCHED}""",
        env={"AIRFLOW_SERDE_COMPAT": "1"},
        python_args=["-S"],
    )
    assert proc.stdout == "ok\n"
    # The one INFO line of an active bridge, and no warning (such as "activation failed").
    ours = [line for line in proc.stderr.splitlines() if "airflow-serde-compat" in line]
    assert len(ours) == 1 and "airflow-serde-compat active" in ours[0], proc.stderr


def test_with_the_variable_set_the_pth_loads_no_patch_before_airflow_asks(run_python):
    # Activation registers hooks only: the patch declarations (and the translator) load when
    # Airflow imports a module they patch.
    proc = run_python(
        """
import sys
import airflow_serde_compat
assert airflow_serde_compat.is_active()
ours = sorted(m for m in sys.modules if m.startswith("airflow_serde_compat."))
print(ours)
""",
        env={"AIRFLOW_SERDE_COMPAT": "1"},
    )
    assert proc.stdout == "['airflow_serde_compat._bootstrap', 'airflow_serde_compat._callback_alias', 'airflow_serde_compat._settings']\n"


def test_sitecustomize_directory_activates_and_chains_to_the_next_one(run_python, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os; os.environ['CHAINED'] = 'yes'\n")
    site = sysconfig.get_paths()["purelib"]
    proc = run_python(
        f"""
import os, sys
sys.path.append({site!r})
import sitecustomize
assert os.environ.get("CHAINED") == "yes", "the image's own sitecustomize did not run"
import airflow_serde_compat
assert airflow_serde_compat.is_active()
print("ok")
""",
        env={
            "AIRFLOW_SERDE_COMPAT": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "sitecustomize"), str(other)]),
        },
        python_args=["-S"],
    )
    assert proc.stdout == "ok\n"


def test_airflow_cli_output_is_unchanged_by_the_bridge(run_python):
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    off = subprocess.run([airflow, "version"], env=base, capture_output=True, text=True, timeout=120)
    on = subprocess.run(
        [airflow, "version"], env={**base, "AIRFLOW_SERDE_COMPAT": "1"}, capture_output=True, text=True, timeout=120
    )
    assert off.returncode == on.returncode == 0
    assert on.stdout == off.stdout == f"{CORE}\n"


def test_the_wrapper_runs_3_1_8_container_branches_itself():
    # Speed only (benchmarks/): if 3.1.8's source stopped matching, reads stay correct but slower.
    from airflow.serialization.serialized_objects import BaseSerialization

    from airflow_serde_compat.patch import _branches_inlinable

    raw = vars(BaseSerialization)["deserialize"].__func__
    assert _branches_inlinable(getattr(raw, "__wrapped__", raw))


def _broken_wrapt(tmp_path) -> str:
    (tmp_path / "wrapt.py").write_text("raise ImportError('wrapt is broken in this image')\n")
    return str(tmp_path)


def test_strict_mode_with_a_broken_dependency_fails_the_process(run_python, tmp_path):
    # Activation fails part way (the hooks cannot be registered): strict must not fail open.
    env = {"AIRFLOW_SERDE_COMPAT": "strict", "PYTHONPATH": _broken_wrapt(tmp_path)}
    proc = run_python(PROBE + "print(state)", env=env, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "wrapt is broken in this image" in proc.stderr


def test_a_broken_dependency_leaves_the_bridge_off_and_says_so(run_python, tmp_path):
    env = {"AIRFLOW_SERDE_COMPAT": "1", "PYTHONPATH": _broken_wrapt(tmp_path)}
    proc = run_python(
        PROBE
        + """
import airflow_serde_compat
assert state == "original", state
assert not airflow_serde_compat.is_active()
""",
        env=env,
    )
    assert "activation failed" in proc.stderr
    doctor = run_python(
        "from airflow_serde_compat.cli import main; raise SystemExit(main(['doctor']))", env=env, check=False
    )
    assert doctor.returncode == 2, doctor.stdout
    assert "bridge active in this process: no" in doctor.stdout


def test_an_unrecognised_value_warns_once_per_process(run_python):
    proc = run_python(
        PROBE + "import airflow_serde_compat._bootstrap as b; b.activate_from_env()",
        env={"AIRFLOW_SERDE_COMPAT": "maybe"},
    )
    assert proc.stderr.count("is not one of 1/true/strict/0/false") == 1, proc.stderr
