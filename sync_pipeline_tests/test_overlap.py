"""Pages read one ahead of the caller: in order, one page ahead at most, a failed read raised where its page
would have been, and read on demand where the reads cannot run beside the caller. Writes done behind the
caller: in order, one at a time, a failed write raised to the caller and nothing after it written."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sync_pipeline.overlap import WriteBehind, read_ahead


def _pages(log: list[str], count: int, fail_at: int | None = None) -> Iterator[list[int]]:
    for n in range(count):
        if n == fail_at:
            raise RuntimeError(f"page {n} could not be read")
        log.append(f"read {n} on {threading.current_thread().name}")
        yield [n]


def test_the_next_page_is_read_on_a_thread_while_the_caller_processes_one_and_no_further() -> None:
    log: list[str] = []
    pages = read_ahead(_pages(log, 4))
    assert next(pages) == [0]
    # The caller holds page 0: page 1 is read meanwhile (waited for here, with room for a loaded machine), page
    # 2 is not.
    deadline = time.monotonic() + 60
    while len(log) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # room for a wrong third read to show
    assert [entry.split(" on ")[0] for entry in log] == ["read 0", "read 1"]
    assert all("read-ahead" in entry for entry in log)
    assert list(pages) == [[1], [2], [3]]
    assert len(log) == 4


def test_a_failed_read_is_raised_after_the_pages_before_it() -> None:
    got = []
    with pytest.raises(RuntimeError, match="page 2 could not be read"):
        for page in read_ahead(_pages([], 5, fail_at=2)):
            got.append(page)
    assert got == [[0], [1]]


def test_without_reading_ahead_each_page_is_read_when_asked_on_the_callers_thread() -> None:
    log: list[str] = []
    pages = read_ahead(_pages(log, 3), ahead=False)
    assert next(pages) == [0]
    assert log == [f"read 0 on {threading.current_thread().name}"]
    assert list(pages) == [[1], [2]]


def test_writes_run_behind_the_caller_one_at_a_time_in_order() -> None:
    log: list[str] = []
    first_may_end = threading.Event()

    def first() -> None:
        assert first_may_end.wait(60)
        log.append(f"first on {threading.current_thread().name}")

    with WriteBehind(True) as writes:
        writes.submit(first)
        log.append("caller goes on")  # while the first write is still under way
        first_may_end.set()
        writes.submit(lambda: log.append("second"))  # waits for the first to finish
        assert log[:2] == ["caller goes on", "first on write-behind_0"]
    assert log == ["caller goes on", "first on write-behind_0", "second"]


def test_a_failed_write_is_raised_to_the_caller_and_nothing_after_it_is_written() -> None:
    written: list[str] = []

    def failing() -> None:
        raise RuntimeError("the hub went away")

    writes = WriteBehind(True)
    with pytest.raises(RuntimeError, match="the hub went away"), writes:
        writes.submit(failing)
        writes.submit(lambda: written.append("after"))
    assert written == []
    with pytest.raises(RuntimeError, match="the hub went away"), WriteBehind(True) as last:
        last.submit(failing)  # the last write's failure is raised when the block ends


def test_without_writing_behind_each_write_runs_at_once_on_the_callers_thread() -> None:
    log: list[str] = []
    with WriteBehind(False) as writes:
        writes.submit(lambda: log.append(threading.current_thread().name))
        assert log == [threading.current_thread().name]
