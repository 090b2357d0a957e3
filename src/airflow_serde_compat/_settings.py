"""The one switch: the ``AIRFLOW_SERDE_COMPAT`` environment variable."""

from __future__ import annotations

import enum

__all__ = ["ENV_VAR", "Mode", "mode_from_value"]

#: Single underscores on purpose: ``AIRFLOW__X__Y`` names belong to Airflow's config layer.
ENV_VAR = "AIRFLOW_SERDE_COMPAT"


class Mode(enum.Enum):
    OFF = "off"
    ON = "on"
    #: Like ON, but activation problems raise instead of being logged and skipped.
    STRICT = "strict"


_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


def mode_from_value(value: str | None) -> tuple[Mode, str | None]:
    """Return the mode for an env value and, for an unrecognised value, a warning text."""
    if value is None:
        return Mode.OFF, None
    v = value.strip().lower()
    if v in _OFF:
        return Mode.OFF, None
    if v in _ON:
        return Mode.ON, None
    if v == "strict":
        return Mode.STRICT, None
    return Mode.OFF, f"{ENV_VAR}={value!r} is not one of 1/true/strict/0/false; the bridge stays off"
