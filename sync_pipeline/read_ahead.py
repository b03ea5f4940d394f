"""Pages read one ahead: while the caller processes a page (validates it, writes it to the hub or a store: this
process's work and another server's), the next is read on a thread (the source's work). Two pages are held
at most, so memory stays bounded by the page size."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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
