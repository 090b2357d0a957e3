"""A column's batches converted up to two batches ahead, in a forked process.

With a backup, on PostgreSQL and MySQL, a batch goes through three stages: it is read, converted
(decoded, translated, given 3.1's stored form and the fingerprints of it), then committed. The
commit already runs in a thread (``database._Batches``); the conversion is Python that holds the
GIL and was most of the wall time. Here it runs in a child forked from this process, so it
inherits the imported Airflow, the writer and the keys as they are: only rows go in and only
new values come out, and no key or decrypted value crosses a pipe (a new value is what is
stored: ciphertext where the row is encrypted). The rows stay in the parent too, which makes
their identities and backup lines: an original crosses the pipe once. While the child converts
batches N+1 and N+2, the parent writes batch N's lines and the thread commits it.

The child never touches the database, the backup file or the report. The parent writes each
batch's lines, then hands it to the commit, in the order the batches were read: the rules that
make a kill -9 safe are the single process's. A child that dies (out of memory, killed) is a
one-line error and a rerun resumes; a child whose parent dies exits within a second.
"""

from __future__ import annotations

import collections
import gc
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

from airflow_serde_compat._errors import OperatorError

__all__ = ["Conversions", "forking_pays"]

_convert: Callable[[list], Any] | None = None


def forking_pays(cgroup: str = "/sys/fs/cgroup") -> bool:
    """A second process can run beside this one: fork exists and two CPUs are ours, counting a
    container's CPU limit (a Kubernetes pod with ``limits.cpu: 1`` sees every CPU of its node)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    quota = _cpu_quota(Path(cgroup))
    return min(cpus, quota if quota is not None else cpus) >= 2


def _cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time the cgroup allows (v2 ``cpu.max``, v1 CFS quota), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError, ZeroDivisionError):
        return None


class Conversions:
    """``feed(rows)`` -> the batch to write next, as ``(its rows, their conversion)``, or None.

    Inline, that is ``rows`` and their own conversion (None for no rows). With the child, ``rows``
    go to the child, which holds up to ``AHEAD`` batches, and what comes back is the oldest of them
    once it holds more (``feed([])`` at the end hands back one per call, then None). A batch's
    rows stay here, so that a result need not carry back what the parent holds."""

    #: Batches the child holds: with one, it waited for the next while the parent read it and
    #: waited for a commit (measured: an eighth of the child's time).
    AHEAD = 2

    def __init__(self, convert: Callable[[list], Any], *, in_child: bool, close_in_child: tuple[int, ...] = ()):
        """``close_in_child``: descriptors the child must not hold (the backup file: its lock
        would outlive a killed ``rewrite`` by as long as the child takes to notice)."""
        self._convert = convert
        self._pending: collections.deque[tuple[list, Future]] = collections.deque()
        self._pool: ProcessPoolExecutor | None = None
        self._children: list[Any] = []
        if in_child:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_start_child,
                                             initargs=(convert, os.getpid(), close_in_child))
            try:
                self._fork()
            except BaseException:
                self.__exit__(BaseException)
                raise

    def _fork(self) -> None:
        assert self._pool is not None
        # Frozen, the objects both processes hold are never visited by either's collector, whose
        # writes would copy most of the shared pages. The caller unfreezes (rewrite_database).
        gc.collect()
        gc.freeze()
        # Ctrl-C in the instant between the fork and the child's SIG_IGN would print the child's
        # traceback: the child starts with SIGINT blocked, and ignores it before unblocking it.
        block = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            started = self._pool.submit(_started)
            # The fork happens in submit. Kept: a pool that broke no longer lists its process, whose
            # exit code says what happened, and a run that stops kills it.
            self._children = list((getattr(self._pool, "_processes", None) or {}).values())
            started.result()
        except BrokenProcessPool:
            raise OperatorError("the conversion process did not start (--no-conversion-process converts in this "
                                "process)") from None
        finally:
            if block:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def feed(self, rows: list) -> tuple[list, Any] | None:
        if self._pool is None:
            return (rows, self._convert(rows)) if rows else None
        try:
            # A child that died is found here (the next submit) or in the result it owed.
            if rows:
                self._pending.append((rows, self._pool.submit(_run, rows)))
            if not self._pending or (rows and len(self._pending) <= self.AHEAD):
                return None
            held, future = self._pending.popleft()
            return held, future.result()
        except BrokenProcessPool:
            raise OperatorError(
                f"the conversion process stopped ({self._how_it_stopped()}): nothing of the batches it held "
                "was written; a rerun resumes (--no-conversion-process converts in this process)"
            ) from None

    def _how_it_stopped(self) -> str:
        for process in self._children:
            process.join(1)
            code = process.exitcode
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                return f"killed by {name}" + (": out of memory, or by hand?" if -code == signal.SIGKILL else "")
            if code is not None:
                return f"exit code {code}"
        return "killed, or out of memory?"

    def __enter__(self) -> "Conversions":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._pool is None:
            return
        if exc_type is not None:
            # The run stops (Ctrl-C, an error): the batches in the child are never written, so the
            # child is not waited for (a batch already handed over cannot be cancelled).
            for process in self._children:
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _start_child(convert: Callable[[list], Any], parent: int, close: tuple[int, ...]) -> None:
    global _convert
    _convert = convert
    # Ctrl-C reaches the whole process group: the parent stops the run and kills the child,
    # which must not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    for fd in close:
        # Its file object here is never flushed or closed: the child ends with os._exit.
        os.close(fd)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="serde-compat-orphan").start()


def _exit_with(parent: int) -> None:
    # A parent killed with -9 leaves the child waiting on a queue whose other end it holds too.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _started() -> None:
    pass


def _run(rows: list) -> Any:
    assert _convert is not None
    return _convert(rows)
