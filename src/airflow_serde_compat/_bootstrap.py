"""Activation: environment switch, version guard, post-import hooks.

Imported from the ``.pth`` line of every interpreter that has the package installed, so at
module level it imports nothing but ``os``: with the variable unset the cost is one
environment lookup. Nothing here writes to stdout.
"""

from __future__ import annotations

import os

__all__ = ["activate", "activate_from_env", "airflow_core_version", "deactivate", "is_active", "loaded", "supported"]

#: Set once activation from the environment finished (dd-trace's convention; tests read it).
loaded = False
_enabled = False
_strict = False
_announced = False
_skip_logged = False
_value_warned = False

#: The apache-airflow-core lines the patches were written and tested against: the one rule for
#: "is this Airflow one the bridge may patch" (activation, ``scan --verify``, the tests). Read from
#: package metadata, without importing Airflow (OpenTelemetry's instrumentation_dependencies()).
SUPPORTED_AIRFLOW = ((3, 1),)

#: What is patched when Airflow imports it: (module, ``declaring_module:NAME`` of a
#: :class:`~airflow_serde_compat._patching.Patch` or a tuple applied all-or-none). The declaring
#: module is imported only when its target is, so the ``.pth`` loads nothing Airflow has not asked
#: for. One hook per entry: a target that changed shape skips only its own patch.
HOOKS: tuple[tuple[str, str], ...] = (
    ("airflow.serialization.serialized_objects", "airflow_serde_compat.patch:BASE_SERIALIZATION"),
    ("airflow.serialization.serialized_objects", "airflow_serde_compat.patch:SMART_DECODE"),
    ("airflow.serialization.serde", "airflow_serde_compat.patch:SERDE"),
    ("airflow.models.deadline", "airflow_serde_compat.patch:DEADLINE"),
    ("airflow.sdk.definitions.deadline", "airflow_serde_compat.patch:DEADLINE_ALERT"),
    ("airflow.utils.sqlalchemy", "airflow_serde_compat.isolation:EXTENDED_JSON"),
    ("airflow.models.trigger", "airflow_serde_compat.isolation:HANDLE_EVENT_SUBMIT"),
    ("airflow.models.trigger", "airflow_serde_compat.isolation:DECRYPT_KWARGS"),
    ("airflow.models.trigger", "airflow_serde_compat.isolation:SUBMIT_FAILURE"),
    ("airflow.models.dagbag", "airflow_serde_compat.isolation:DAGBAG_READ"),
)
#: The patch whose success is announced (the one every 3.2 payload goes through).
_PRIMARY = HOOKS[0][1]
_registered: set[tuple[str, str]] = set()


def _log():  # type: ignore[no-untyped-def]
    import logging

    return logging.getLogger("airflow_serde_compat")


def activate_from_env(*, from_pth: bool = False) -> bool:
    """Activate if ``AIRFLOW_SERDE_COMPAT`` asks for it. Never raises unless it says ``strict``.

    ``from_pth``: called while ``site`` is still processing ``.pth`` files. A user site (the
    official image's ``pip install --user``) is processed before the interpreter's own
    site-packages, so Airflow or wrapt may not be on ``sys.path`` yet: then this waits, quietly,
    for the ``airflow.policy`` entry point, which ``import airflow`` loads with the full path.
    """
    global loaded
    value = os.environ.get("AIRFLOW_SERDE_COMPAT")
    if not value:
        return False
    if from_pth:
        from importlib.util import find_spec

        if find_spec("airflow") is None or find_spec("wrapt") is None:
            return False
    from airflow_serde_compat._settings import ENV_VAR, Mode, mode_from_value

    mode, warning = mode_from_value(value)
    global _value_warned
    if warning and not _value_warned:  # the .pth and the entry point both ask: say it once
        _value_warned = True
        _log().warning("%s", warning)
    if mode is Mode.OFF:
        return False
    try:
        active = activate(strict=mode is Mode.STRICT)
    except Exception:
        if mode is Mode.STRICT:
            raise
        _log().warning("airflow-serde-compat: activation failed; %s bridge is off", ENV_VAR, exc_info=True)
        return False
    loaded = True
    return active


def airflow_core_version() -> str | None:
    """The installed apache-airflow-core version, read from metadata without importing Airflow."""
    from importlib import metadata

    for dist in ("apache-airflow-core", "apache-airflow"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def supported(version: str) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) in SUPPORTED_AIRFLOW
    except (IndexError, ValueError):
        return False


def activate(*, strict: bool = False) -> bool:
    """Patch Airflow now if it is imported, or the moment it is. Idempotent.

    Returns True when the bridge is (or already was) active, False when the installed
    Airflow is not one it supports (one WARNING, nothing patched; raises when ``strict``).
    """
    global _enabled, _strict
    version = airflow_core_version()
    if version is None or not supported(version):
        message = (
            f"airflow-serde-compat supports apache-airflow-core 3.1.x only; found {version or 'none'}: "
            "not patching (remove AIRFLOW_SERDE_COMPAT or the package)"
        )
        if strict:
            raise RuntimeError(message)
        global _skip_logged
        if not _skip_logged:  # the .pth and the entry point both ask: say it once
            _skip_logged = True
            _log().warning("%s", message)
        return False
    if _enabled:
        return True
    # Enabled only once everything is in place: a failure part way (a broken wrapt, a hook
    # that raises in strict mode) leaves the bridge off and says so, never half on.
    _enabled, _strict = True, strict
    try:
        from airflow_serde_compat import _callback_alias

        _callback_alias.install()
        import sys

        import wrapt

        for entry in HOOKS:
            if entry in _registered:
                # wrapt has no unregister: a hook registered once per process does nothing while
                # the bridge is deactivated, and is run again here for a module already imported.
                module = sys.modules.get(entry[0])
                if module is not None:
                    _hook(entry[1])(module)
            else:
                wrapt.register_post_import_hook(_hook(entry[1]), entry[0])
                _registered.add(entry)
    except BaseException:
        _enabled = False
        _undo()
        raise
    return True


def _declared(where: str):  # type: ignore[no-untyped-def]
    import importlib

    module_name, name = where.split(":")
    found = getattr(importlib.import_module(module_name), name)
    return found if isinstance(found, tuple) else (found,)


def _hook(where: str):  # type: ignore[no-untyped-def]
    def hook(module) -> None:  # type: ignore[no-untyped-def]
        if _enabled:
            apply_guarded(where, module)

    return hook


def apply_guarded(where: str, module) -> bool:  # type: ignore[no-untyped-def]
    """Apply the patches declared at ``where`` to ``module``, as the post-import hook does.

    A post-import hook that raises breaks the import of Airflow's module (wrapt propagates it):
    outside strict mode every failure becomes one WARNING and the module stays as it is.
    """
    try:
        from airflow_serde_compat import _patching

        applied = _patching.apply(_declared(where), module)
    except Exception as err:
        if _strict:
            raise
        from airflow_serde_compat._patching import PatchSkipped

        if isinstance(err, PatchSkipped):
            _log().warning("airflow-serde-compat: not patching %s: %s", module.__name__, err)
        else:
            _log().warning("airflow-serde-compat: patching %s failed", module.__name__, exc_info=True)
        return False
    if applied and where == _PRIMARY:
        _announce()
    return applied


def _announce() -> None:
    global _announced
    if not _announced:
        _announced = True
        _log().info(
            "airflow-serde-compat active (apache-airflow-core %s): BaseSerialization.deserialize reads "
            "Airflow 3.2+ serde payloads; deadline callbacks, uuid XComs and "
            "airflow.sdk.definitions.callback are bridged too",
            airflow_core_version(),
        )


def _undo() -> list[str]:
    from airflow_serde_compat import _callback_alias, _patching

    left = _patching.restore_all()
    _callback_alias.remove()
    return left


def deactivate() -> list[str]:
    """Undo every patch. Returns the attributes that could not be restored (wrapped on top)."""
    global _enabled
    _enabled = False
    left = _undo()
    if left:
        _log().warning("airflow-serde-compat: not unpatching %s: another wrapper is on top", ", ".join(left))
    return left


def is_active() -> bool:
    """True while activated and, once Airflow's serializer is imported, while it is wrapped."""
    if not _enabled:
        return False
    import sys

    module = sys.modules.get(HOOKS[0][0])
    if module is None:
        return True
    from airflow_serde_compat.patch import BASE_SERIALIZATION

    return BASE_SERIALIZATION.is_applied(module)
