"""The window each safety check looks at: the latest runs, less those the check has already passed over.

A check that evaluated a run clean once the run had finished need not read it again: its data can only
change through later runs, which are in the later windows, or behind the sync's back, which the nightly
sweep reads. So a sync's checks cost what changed since they last passed, and a bulk first sync is read
once, not by the next ten syncs. A run that failed a check stays in that check's window.
"""

from __future__ import annotations

from collections.abc import Sequence

from sync_pipeline.hub.connection import HubConnection

_LATEST_RUNS = "select run_id from sync.runs order by started_at desc limit %(limit)s"


class CheckWindows(HubConnection):
    """Which runs each check has passed over (`sync.check_clearances`)."""

    def window_run_ids(self, check: str, limit: int) -> list[str]:
        """The latest `limit` runs, newest first, less those `check` has passed over."""
        with self.connect() as conn:
            return [r["run_id"] for r in conn.execute(
                f"""select r.run_id from ({_LATEST_RUNS}) r
                    where not exists (select from sync.check_clearances c
                                      where c.check_key = %(check)s and c.run_id = r.run_id)""",
                {"check": check, "limit": limit}).fetchall()]

    def pass_over(self, check: str, run_ids: Sequence[str], limit: int) -> None:
        """`check` found these runs clean after they finished; what it passed over of runs that have left the
        latest `limit` is forgotten (no window reaches them any more)."""
        with self.connect() as conn:
            if run_ids:
                conn.execute("""insert into sync.check_clearances (check_key, run_id)
                                select %s, unnest(%b::text[]) on conflict do nothing""", (check, list(run_ids)))
            conn.execute(f"""delete from sync.check_clearances
                             where check_key = %(check)s and run_id not in ({_LATEST_RUNS})""",
                         {"check": check, "limit": limit})
