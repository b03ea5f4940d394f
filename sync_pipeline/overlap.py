"""This process's work overlapped with a server's, on a thread each: pages read one ahead (while the caller
processes a page, the next is read) and writes done behind (while a batch's write goes to one server, the
caller goes on with the next batch). One page ahead and one write behind at most, so memory stays bounded
by the page size, and writes land in the order they were handed over."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Self, TypeVar

Page = TypeVar("Page")


def read_ahead(pages: Iterator[Page], ahead: bool = True) -> Iterator[Page]:
    """The pages in order (none of them None), each read while the caller processes the one before; without
    `ahead`, each read when asked (reads that share the caller's one connection cannot run beside it)."""
    if not ahead:
        yield from pages
        return
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as reader:
        following = reader.submit(next, pages, None)
        while (page := following.result()) is not None:
            following = reader.submit(next, pages, None)
            yield page


class WriteBehind:
    """Writes run one at a time, in the order given, each on a thread while the caller goes on; without
    `behind`, each at once on the caller's thread. A failed write is raised by the next `submit` or `wait`
    (or the block's end), and nothing handed over after it runs."""

    def __init__(self, behind: bool, name: str = "write-behind") -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=name) if behind else None
        self._writing: Future[object] | None = None

    def submit(self, write: Callable[[], object]) -> None:
        """Run `write` once the write before it has finished."""
        self.wait()
        if self._thread is None:
            write()
        else:
            self._writing = self._thread.submit(write)

    def wait(self) -> None:
        """Until the write handed over last has finished; raises what failed it."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, failed: type[BaseException] | None, *details: object) -> None:
        try:
            if failed is None:
                self.wait()  # the last write finishes before the block ends; what failed it is raised
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)  # a write under way ends, whatever stopped the caller
