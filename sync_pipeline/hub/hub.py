"""The hub: queries over the `sync` schema. Everything that must survive a crash is written here, in the
same transaction as the change it describes. `Hub` is assembled from one part per concern."""

from __future__ import annotations

from sync_pipeline.hub.check_windows import CheckWindows
from sync_pipeline.hub.echoes import Echoes
from sync_pipeline.hub.evidence import Evidence
from sync_pipeline.hub.golden import GoldenRecords
from sync_pipeline.hub.id_maps import IdMaps
from sync_pipeline.hub.inbox import Inbox
from sync_pipeline.hub.resolve import Resolver
from sync_pipeline.hub.runs import RunLog



class Hub(RunLog, Inbox, GoldenRecords, IdMaps, Resolver, Evidence, CheckWindows, Echoes):
    """The hub database. Connections are short-lived: one per unit of work."""
