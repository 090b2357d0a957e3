"""The scan's read-ahead thread: same batches in the same order, errors where the scan sees them,
at most two batches ahead, and no thread left behind however the scan ends. No database."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_serde_compat.scan.database import _prefetched


class Result:
    """Stands in for the driver's batches (``_named_cursor_partitions``, ``result.partitions()``)."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.fetched = 0
        self.threads: set[str] = set()

    def partitions(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise RuntimeError("server closed the connection")
            self.threads.add(threading.current_thread().name)
            self.fetched += 1
            yield [i]


def fetchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("airflow-serde-compat")]


def test_every_batch_in_order_fetched_on_another_thread():
    result = Result(50)
    assert [b[0] for b in _prefetched(result.partitions())] == list(range(50))
    assert result.threads and threading.current_thread().name not in result.threads
    assert fetchers() == []


def test_a_fetch_error_is_raised_in_the_scanning_thread_after_the_batches_before_it():
    result = Result(10, fail_at=4)
    seen = []
    with pytest.raises(RuntimeError, match="server closed"):
        for batch in _prefetched(result.partitions()):
            seen.append(batch[0])
    assert seen == [0, 1, 2, 3]
    assert fetchers() == []


def test_reads_at_most_two_batches_ahead_of_a_slow_scan():
    result = Result(100)
    batches = _prefetched(result.partitions())
    next(batches)
    time.sleep(0.5)  # the fetcher has all the time it wants
    # one handed over, two in the queue, one waiting to be put (the queue is bounded, not the generator)
    assert result.fetched <= 4, result.fetched
    batches.close()
    assert fetchers() == []


def test_a_scan_that_stops_early_stops_the_fetcher_before_returning():
    result = Result(10_000)
    for batch in _prefetched(result.partitions()):
        if batch[0] == 3:
            break
    # the generator was closed by the loop's end: its fetcher has been joined already
    assert fetchers() == []
    assert result.fetched < 10


def test_an_error_in_the_scan_itself_stops_the_fetcher():
    result = Result(10_000)
    with pytest.raises(ZeroDivisionError):
        for batch in _prefetched(result.partitions()):
            1 / (5 - batch[0])
    assert fetchers() == []
    assert result.fetched < 10
