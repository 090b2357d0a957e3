"""Activation: environment switch, version guard, post-import hooks.

Imported from the ``.pth`` line of every interpreter that has the package installed, so at
module level it imports nothing but ``os``: with the variable unset the cost is one
environment lookup. Nothing here writes to stdout.
"""

from __future__ import annotations

import os

__all__ = ["activate", "activate_from_env", "deactivate", "is_active", "loaded"]

#: Set once activation from the environment finished (dd-trace's convention; tests read it).
loaded = False
_enabled = False
_strict = False
_hooks_registered = False
_announced = False
_skip_logged = False
_value_warned = False

#: airflow-core (major, minor) lines whose code the patches were written and tested against.
SUPPORTED_AIRFLOW = ((3, 1),)


def _log():  # type: ignore[no-untyped-def]
    import logging

    return logging.getLogger("airflow_serde_compat")


def activate_from_env() -> bool:
    """Activate if ``AIRFLOW_SERDE_COMPAT`` asks for it. Never raises unless it says ``strict``."""
    global loaded
    value = os.environ.get("AIRFLOW_SERDE_COMPAT")
    if not value:
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


def _supported(version: str) -> bool:
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
    global _enabled, _strict, _hooks_registered
    version = airflow_core_version()
    if version is None or not _supported(version):
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
        from airflow_serde_compat import patch

        patch.install_callback_alias()
        if not _hooks_registered:
            # wrapt has no unregister: hooks are registered once per process and do nothing
            # while the bridge is deactivated.
            import wrapt

            for name, hook in _hooks():
                wrapt.register_post_import_hook(hook, name)
            _hooks_registered = True
        else:
            import sys

            for name, hook in _hooks():
                if name in sys.modules:
                    hook(sys.modules[name])
    except BaseException:
        _enabled = False
        from airflow_serde_compat import patch

        patch.restore_all()
        raise
    return True


def _hooks():  # type: ignore[no-untyped-def]
    """(module name, post-import hook) pairs: what gets patched when it is imported."""
    from airflow_serde_compat import isolation, patch

    return [
        (patch.SERIALIZED_OBJECTS, _on_serialized_objects),
        (patch.SERIALIZED_OBJECTS, _guarded(patch.apply_smart_decode)),
        (patch.SERDE, _on_serde),
        (patch.DEADLINE, _on_deadline),
        (patch.SDK_DEADLINE, _on_sdk_deadline),
        # One hook per patch: a target that changed shape skips only its own patch.
        (isolation.SQLALCHEMY_UTILS, _guarded(isolation.apply_extended_json)),
        (isolation.TRIGGER, _guarded(isolation.apply_handle_event_submit)),
        (isolation.TRIGGER, _guarded(isolation.apply_decrypt_kwargs)),
        (isolation.TRIGGER, _guarded(isolation.apply_submit_failure)),
        (isolation.DAGBAG, _guarded(isolation.apply_dagbag)),
    ]


def deactivate() -> list[str]:
    """Undo every patch. Returns the attributes that could not be restored (wrapped on top)."""
    global _enabled
    _enabled = False
    from airflow_serde_compat import patch

    left = patch.restore_all()
    if left:
        _log().warning("airflow-serde-compat: not unpatching %s: another wrapper is on top", ", ".join(left))
    return left


def is_active() -> bool:
    """True while activated and, once Airflow's serializer is imported, while it is wrapped."""
    if not _enabled:
        return False
    import sys

    from airflow_serde_compat import patch

    module = sys.modules.get(patch.SERIALIZED_OBJECTS)
    return module is None or patch.is_patched(module.BaseSerialization, "deserialize")


def _guarded(apply):  # type: ignore[no-untyped-def]
    # A post-import hook that raises breaks the import of Airflow's module (wrapt propagates
    # it): outside strict mode every failure becomes one WARNING and the module stays as is.
    def hook(module) -> None:  # type: ignore[no-untyped-def]
        if not _enabled:
            return
        try:
            apply(module)
        except Exception as err:
            if _strict:
                raise
            from airflow_serde_compat.patch import PatchSkipped

            if isinstance(err, PatchSkipped):
                _log().warning("airflow-serde-compat: not patching %s: %s", module.__name__, err)
            else:
                _log().warning("airflow-serde-compat: patching %s failed", module.__name__, exc_info=True)

    return hook


@_guarded
def _on_serialized_objects(module) -> None:  # type: ignore[no-untyped-def]
    from airflow_serde_compat import patch

    global _announced
    if patch.apply_base_serialization(module) and not _announced:
        _announced = True
        _log().info(
            "airflow-serde-compat active (apache-airflow-core %s): BaseSerialization.deserialize reads "
            "Airflow 3.2+ serde payloads; deadline callbacks, uuid XComs and "
            "airflow.sdk.definitions.callback are bridged too",
            airflow_core_version(),
        )


@_guarded
def _on_serde(module) -> None:  # type: ignore[no-untyped-def]
    from airflow_serde_compat import patch

    patch.apply_serde(module)


@_guarded
def _on_deadline(module) -> None:  # type: ignore[no-untyped-def]
    from airflow_serde_compat import patch

    patch.apply_deadline(module)


@_guarded
def _on_sdk_deadline(module) -> None:  # type: ignore[no-untyped-def]
    from airflow_serde_compat import patch

    patch.apply_deadline_alert(module)
