"""Where each walk of Twenty's poll starts (§10.5): the window behind its watermark, and the sweep that
re-reads the whole overlap once per overlap. Pure: the store does the reading."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sync_pipeline.model.canonical import parse_timestamp

# The sweep's state in the capture cursor: when it last ran, and where the next one starts.
SWEEP_KEYS = ("swept_at", "sweep_from")
# How far a poll between sweeps re-reads behind its watermark: writes committed this late are read at once,
# later ones (up to the overlap) by the next sweep. A Twenty write is one request's transaction.
SETTLE = timedelta(seconds=2)


def iso_ms(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def due(done_at: str | None, interval: timedelta) -> bool:
    """Whether something last done at `done_at` (never: None) is due again after `interval`."""
    return done_at is None or datetime.now(timezone.utc) - parse_timestamp(done_at) >= interval


@dataclass(frozen=True)
class PollWindow:
    """`updatedAt` is the writing transaction's start, so a write can commit after later-stamped ones were
    read. A poll re-reads `settle` behind the watermark: a write committed a moment late. Once per
    `overlap` a sweep re-reads from `overlap` behind Twenty's clock when the previous sweep started:
    whatever committed after that sweep read past it, within `overlap` of its stamp, is stamped after that.
    So a write committed up to `overlap` late is still read, within `overlap` plus a poll, while a burst of
    writes (a first sync's, say) is read by the walk after it and at most once more, not by every poll for
    `overlap` (a request per 60 records each time)."""

    overlap: timedelta
    settle: timedelta

    def start(self, cursor: dict[str, Any]) -> tuple[str, bool]:
        """Where a new walk starts, and whether it is a sweep: one is due, or the walk starts where a sweep
        would anyway (the first one, say)."""
        watermark = parse_timestamp(cursor["watermark"])
        # A cursor from before sweeps (or a first walk) has no sweep_from: the whole overlap, as before.
        sweep_from = parse_timestamp(cursor.get("sweep_from") or iso_ms(watermark - self.overlap))
        start = watermark - self.settle
        if due(cursor.get("swept_at"), self.overlap):
            start = min(start, sweep_from)
        return iso_ms(start), start <= sweep_from

    def sweep_state(self, watermark: str, started_at: str, served_at: datetime | None) -> dict[str, Any]:
        """The cursor's record of a sweep that started at `started_at` and whose first page Twenty served at
        `served_at` (its `Date` header, less `settle`: the page was read a moment before, and the database's
        clock, which stamps `updatedAt`, may lag the web server's; the watermark without one)."""
        began = parse_timestamp(watermark)
        if served_at is not None:
            began = max(began, served_at - self.settle)
        return {"swept_at": started_at, "sweep_from": iso_ms(began - self.overlap)}
