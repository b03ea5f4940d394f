"""Pages read one ahead of the caller: in order, one page ahead at most, a failed read raised where its page
would have been, and read on demand where the reads cannot run beside the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sync_pipeline.read_ahead import read_ahead


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
