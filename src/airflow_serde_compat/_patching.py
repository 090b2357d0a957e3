"""How the bridge replaces a piece of Airflow and puts it back: one :class:`Patch` record each.

:mod:`airflow_serde_compat.patch` and :mod:`airflow_serde_compat.isolation` only declare their
patches (where, what shape the target must have, what replaces it); finding the target, checking
it, wrapping it and undoing it happen here, the same way for all of them (OpenTelemetry's
``BaseInstrumentor`` pairs instrument/uninstrument the same way). A target that does not have the
shape a patch was written against raises :class:`PatchSkipped`; the hook turns that into one
WARNING (an ERROR-free import) unless the bridge is strict.

Each patch saves the raw attribute it replaces (from ``vars()``, so a classmethod is restored as the
same descriptor) and is undone only while it is still the one in place: a wrapper someone put on
top of ours is never torn off.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

__all__ = ["Patch", "PatchSkipped", "apply", "count", "counts", "is_patched", "lock", "original_of", "restore_all"]

log = logging.getLogger("airflow_serde_compat")

#: Guards the patch table and what is built lazily under it (the isolation marker class).
lock = threading.RLock()

#: Events per kind in this process (serde classname, "dict", "failed", "undecodable", ...).
#: Read by the tests and benchmarks; Airflow's Stats gets the same events (:func:`count`).
counts: dict[str, int] = {}


class PatchSkipped(RuntimeError):
    """The target does not look like the Airflow 3.1 code this bridge was built against."""


@dataclass(eq=False)
class Patch:
    """One attribute of Airflow replaced by the bridge.

    ``path`` is the attribute inside ``module`` (``"BaseSerialization.deserialize"``); it must be
    defined there, not inherited. ``descriptor`` is ``classmethod``, ``staticmethod`` or None for a
    plain function; ``params`` the exact parameter names it must take (``prefix``: at least those,
    first). ``check(module, func)`` may raise :class:`PatchSkipped` for anything else the
    replacement relies on; ``build(module, func)`` returns the replacement function.
    """

    module: str
    path: str
    build: Callable[[Any, Any], Callable[..., Any]]
    why: str
    descriptor: type | None = None
    params: Sequence[str] | None = None
    prefix: bool = False
    check: Callable[[Any, Any], None] | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def owner_in(self, module: Any) -> Any:
        owner = module
        for part in self.path.split(".")[:-1]:
            owner = getattr(owner, part, None)
            if owner is None:
                raise PatchSkipped(f"{self.module} has no {part}")
        return owner

    def _target(self, module: Any) -> tuple[Any, Any, Callable[..., Any]]:
        owner = self.owner_in(module)
        name = self.name
        raw = vars(owner).get(name) if hasattr(owner, "__dict__") else None
        if raw is None:
            # Patched where it is defined, never on a subclass that merely inherits it.
            inherited = next((b for b in getattr(owner, "__mro__", ())[1:] if name in vars(b)), None)
            where = f" (inherited from {inherited.__qualname__})" if inherited is not None else ""
            raise PatchSkipped(f"{self.path} is not defined in {self.module}{where}")
        if self.descriptor is not None:
            if not isinstance(raw, self.descriptor):
                raise PatchSkipped(f"{self.path} is not a {self.descriptor.__name__}")
            func = raw.__func__
        else:
            func = raw
            if not callable(func) or isinstance(func, (classmethod, staticmethod, type)):
                raise PatchSkipped(f"{self.path} is not a function")
        if self.params is not None:
            try:
                found = list(inspect.signature(func).parameters)
            except (TypeError, ValueError):
                raise PatchSkipped(f"{self.path} has no readable signature") from None
            expected = list(self.params)
            if (found[: len(expected)] if self.prefix else found) != expected:
                raise PatchSkipped(f"{self.path} has parameters {found}, not ({', '.join(expected)})")
        return owner, raw, func

    def is_applied(self, module: Any) -> bool:
        try:
            return is_patched(self.owner_in(module), self.name)
        except PatchSkipped:
            return False

    def prepare(self, module: Any) -> Callable[[], None] | None:
        """Check the target and build the replacement; the commit step, or None if in place."""
        if self.is_applied(module):
            return None
        owner, raw, func = self._target(module)
        if self.check is not None:
            self.check(module, func)
        replacement = self.build(module, func)
        functools.update_wrapper(replacement, func)
        ours = self.descriptor(replacement) if self.descriptor is not None else replacement

        def commit() -> None:
            _table[(id(owner), self.name)] = _Entry(self, owner, self.name, raw, ours)
            setattr(owner, self.name, ours)

        return commit


@dataclass(frozen=True)
class _Entry:
    patch: Patch
    owner: Any
    name: str
    original: Any  # the raw attribute replaced (descriptor included)
    ours: Any

    def in_place(self) -> bool:
        return vars(self.owner).get(self.name) is self.ours


#: (id(owner), name) -> what is in place there, in the order the patches went in.
_table: dict[tuple[int, str], _Entry] = {}


def apply(patches: Iterable[Patch], module: Any) -> bool:
    """Apply ``patches`` to ``module``, all or none: every target is checked before any is replaced.

    Returns False when all of them were already in place.
    """
    with lock:
        commits = [c for c in [p.prepare(module) for p in patches] if c is not None]
        for commit in commits:
            commit()
        return bool(commits)


def is_patched(owner: Any, name: str) -> bool:
    entry = _table.get((id(owner), name))
    return entry is not None and entry.in_place()


def original_of(owner: Any, name: str, *, raw: bool = False) -> Any:
    """What ``owner.name`` was before the bridge (the current attribute if not patched): the
    function, or with ``raw`` the attribute as stored (a classmethod stays a classmethod)."""
    entry = _table.get((id(owner), name))
    found = entry.original if entry is not None else vars(owner)[name]
    if raw:
        return found
    return found.__func__ if isinstance(found, (classmethod, staticmethod)) else found


def restore_all() -> list[str]:
    """Undo every patch still in place; return what could not be undone (someone wrapped on top)."""
    left = []
    with lock:
        for key, entry in reversed(list(_table.items())):
            if entry.in_place():
                setattr(entry.owner, entry.name, entry.original)
                del _table[key]
            else:
                left.append(f"{getattr(entry.owner, '__name__', entry.owner)}.{entry.name}")
    return left


# --- counters and metrics -----------------------------------------------------------------------

_stats: Any = None
_no_stats: Any = None


def count(kind: str) -> None:
    """One more ``kind`` in :data:`counts`, and ``serde_compat.<kind>`` to Airflow's Stats."""
    counts[kind] = counts.get(kind, 0) + 1
    stat(kind)


def stat(name: str) -> None:
    # Airflow's Stats is a no-op unless statsd/otel is configured; never let it fail a read.
    global _stats, _no_stats
    try:
        if _stats is None:
            from airflow.metrics.base_stats_logger import NoStatsLogger
            from airflow.stats import Stats

            _stats, _no_stats = Stats, NoStatsLogger
        # With metrics off (the default) the factory is NoStatsLogger, whose incr does nothing;
        # Stats' metaclass __getattr__ would take about 1 µs per translated payload to get there.
        # Read per call, so a factory set later is still honoured.
        if getattr(type(_stats), "factory", None) is _no_stats:
            return
        _stats.incr(f"serde_compat.{name}")
    except Exception:  # pragma: no cover - metrics must not break deserialization
        log.debug("could not emit serde_compat.%s", name, exc_info=True)
