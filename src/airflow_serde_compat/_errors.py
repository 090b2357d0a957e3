"""What the bridge may say about a failure: the one policy every message follows.

A stored value is untrusted and may be secret (decrypted trigger kwargs, event payloads), and
the messages of the code that fails on it (a tz database, a decoder's ``KeyError``, a driver)
may quote it. So a message about a row carries only:

* the bridge's own texts: :class:`~airflow_serde_compat.translate.UnsupportedPayload` is built
  from a fixed reason, a class-name-shaped classname, an int version and a path of identifier
  keys;
* exception *types*;
* for an ``ImportError``, the quoted names shaped like module or class paths (:func:`code_names`):
  what could not be imported is code, not data.

Problems of the setup (a database URL, a missing driver, a wrong key) are about no row:
:class:`OperatorError` texts are ours and are shown as they are, and a driver's own error keeps
its first line (:func:`first_line`), never a traceback unless asked (``--debug``).
"""

from __future__ import annotations

import re

from airflow_serde_compat.translate import UnsupportedPayload, safe_name

__all__ = ["OperatorError", "cause_chain", "code_names", "first_line", "one_line", "row_error", "value_free"]

_QUOTED = re.compile(r"['\"]([^'\"]{1,200})['\"]")


class OperatorError(RuntimeError):
    """A problem the operator must fix (connection, key, wrong database): one line, ours, no trace."""


def code_names(err: BaseException) -> list[str]:
    """The quoted names in an ImportError's message that are shaped like module or class paths."""
    return list(dict.fromkeys(n for n in _QUOTED.findall(str(err)) if safe_name(n) == n))


def value_free(err: BaseException) -> str:
    """``err`` without anything a row may have put in it."""
    if isinstance(err, UnsupportedPayload):
        return f"{type(err).__name__}: {err}"
    if isinstance(err, ImportError):
        names = code_names(err)
        if names:
            return f"{type(err).__name__} naming {', '.join(names)}"
    return type(err).__name__


def cause_chain(err: BaseException, limit: int = 4) -> str:
    """:func:`value_free` of ``err`` and its explicit causes (Airflow wraps the telling error:
    DeserializationError from an ImportError). An implicit ``__context__`` is whatever was being
    handled at the time, not a cause, so it is not followed."""
    chain: list[str] = []
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen and len(chain) < limit:
        seen.add(id(cause))
        chain.append(value_free(cause))
        cause = cause.__cause__
    return " <- ".join(chain)


def row_error(err: BaseException) -> str:
    """One sentence for a task log or a component's log about a value that did not decode."""
    if isinstance(err, UnsupportedPayload):
        return str(err)
    return (
        f"{type(err).__name__} while decoding: the stored value is neither Airflow 3.1 data nor an "
        "Airflow 3.2 payload the bridge can translate"
    )


def first_line(err: BaseException) -> str:
    """The first line of an operator-side error (a driver's, a configuration's), or its type."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def one_line(err: BaseException) -> str:
    """What the CLI prints for an error: ours as is, anyone else's as ``Type: first line``."""
    if isinstance(err, OperatorError):
        return first_line(err)
    return f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__
