"""The hub: the `sync` schema that holds golden records and every piece of sync state."""

from sync_pipeline.hub.hub import Hub

__all__ = ["Hub"]
