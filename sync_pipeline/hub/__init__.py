"""The hub: the `sync` schema that holds golden records and every piece of sync state."""
